import DistillModels
import DistillNN
import DistillTensor
import Foundation

/// What a teacher says about a batch of positions: full logits `[N, V]` (a local model) or its
/// top-k log-probabilities plus the rest mass (a logit cache, an OpenAI-compatible server).
public enum TeacherView {
    /// Raw logits `[N, V]` (not tempered; the loss applies τ).
    case full(Tensor)
    /// Top-k log-probabilities captured at the teacher's `temperature`.
    case sparse(SparseTeacherTargets)

    /// Number of rows (positions).
    public var rows: Int {
        switch self {
        case .full(let t): return t.shape.dropLast().reduce(1, *)
        case .sparse(let s): return s.rows
        }
    }

    /// Vocabulary width of the rows.
    public var vocabularySize: Int {
        switch self {
        case .full(let t): return t.shape.last ?? 0
        case .sparse(let s): return s.vocabularySize
        }
    }
}

/// A teacher: given token sequences, its view of their positions.
///
/// Rows are laid out sequence after sequence; within a sequence, all of its positions in order,
/// or only those listed in `positions[i]` (ascending or not, as given). Row r of sequence s at
/// position t is the teacher's distribution of the token *after* t (next-token prediction), as
/// the student's logits row for the same position.
///
/// Kinds: `LocalTeacher` (a model in memory, full logits, hidden states and attentions),
/// `CachedTeacher` (a logit cache file — also what a server's top-k log-probabilities become,
/// see ServerTargets.swift), `AlignedTeacher` (vocabulary padding alignment around either),
/// `MemoizedTeacher`, and `CrossTokenizerTeacher` (a model with another tokenizer). The trainer
/// holds one `Teacher` and asks it `outputs(for:request:)` per batch.
public protocol Teacher: AnyObject {
    /// Width of the teacher's logits (the model's vocabulary, padding rows included).
    var vocabularySize: Int { get }
    /// The `Tokenizer.fingerprint` the sequences must be tokenized with, when known.
    var tokenizerFingerprint: String? { get }
    /// Number of ids the tokenizer really uses (≤ `vocabularySize`), when known.
    var tokenizerVocabularySize: Int? { get }
    /// The teacher's view of the given positions of `sequences` (nil: all positions).
    func view(of sequences: [[Int]], positions: [[Int]]?) throws -> TeacherView
    /// The temperature its `.sparse` log-probabilities were taken at (nil: it gives full logits,
    /// which any temperature can be applied to). A sparse loss must run at this temperature.
    var logprobTemperature: Float? { get }
    /// What the trainer needs about one batch: soft targets, hidden states, attentions
    /// (TeacherBatch.swift: by default from `view(of:positions:)`; a model runs on the batch).
    func outputs(for batch: Batch, request: TeacherBatchRequest) throws -> TeacherBatchOutput
    /// Whether it gives hidden states and attentions (a model in memory).
    var hasHiddenStates: Bool { get }
    /// Whether it can score any sequence, not only those it was prepared for (a model can; a
    /// logit cache cannot) — on-policy distillation needs it.
    var scoresAnySequence: Bool { get }
    /// The loss its soft targets are compared with when its tokenizer is not the student's (nil:
    /// same vocabulary, the configured divergence).
    var crossTokenizerLoss: CrossTokenizerLoss? { get }
}

extension Teacher {
    public var logprobTemperature: Float? { nil }

    public func view(of sequences: [[Int]]) throws -> TeacherView { try view(of: sequences, positions: nil) }

    /// This teacher with its vocabulary aligned to a student's (see `AlignedTeacher`).
    public func aligned(toVocabularySize studentVocabularySize: Int, studentFingerprint: String?,
                        studentTokenizerVocabularySize: Int? = nil) throws -> Teacher {
        if studentVocabularySize == vocabularySize {
            try VocabularyAlignment.checkFingerprints(teacher: tokenizerFingerprint, student: studentFingerprint)
            return self
        }
        return try AlignedTeacher(self, studentVocabularySize: studentVocabularySize, studentFingerprint: studentFingerprint,
                                  studentTokenizerVocabularySize: studentTokenizerVocabularySize)
    }
}

/// Errors of teachers, logit caches and training data files. Each names the file (and line or
/// header field), what was expected and what was found.
public enum TeacherError: Error, Equatable, CustomStringConvertible {
    /// A data file line that cannot be used (bad JSON, missing "text", …); line is 1-based, 0 for the whole file.
    case data(file: String, line: Int, reason: String)
    /// A logit cache header field that differs from what the caller needs.
    case cacheMismatch(file: String, field: String, expected: String, found: String)
    /// A logit cache that is damaged or not a cache.
    case cacheDamaged(file: String, reason: String)
    /// Teacher and student tokenize differently.
    case tokenizerMismatch(teacher: String, student: String)
    /// Vocabulary sizes that cannot be aligned.
    case vocabularyMismatch(reason: String)
    /// A sequence, position or argument the teacher cannot serve.
    case invalidRequest(String)
    /// A file that cannot be read or written.
    case io(file: String, reason: String)

    public var description: String {
        switch self {
        case let .data(file, line, reason): return line > 0 ? "\(file): line \(line): \(reason)" : "\(file): \(reason)"
        case let .cacheMismatch(file, field, expected, found):
            return "\(file): logit cache \(field) mismatch: expected \(expected), found \(found)"
        case let .cacheDamaged(file, reason): return "\(file): damaged logit cache: \(reason)"
        case let .tokenizerMismatch(t, s):
            return "teacher and student tokenizers differ (fingerprint \(t) vs \(s)); distillation over logits needs the same tokenizer"
        case let .vocabularyMismatch(reason): return "vocabulary mismatch: \(reason)"
        case let .invalidRequest(reason): return reason
        case let .io(file, reason): return "\(file): \(reason)"
        }
    }
}

// MARK: - Local teacher

/// A teacher model in memory: full logits `[N, V]`, and hidden states and attentions on request.
/// Runs without recording gradients; outputs are detached constants. By default sequences run
/// one at a time (batch 1, no padding), so rows never depend on batch composition (a logit cache
/// is then byte-identical however it is resumed); with `batchSize` > 1, up to that many run as one
/// right-padded batch (faster; rows equal to float rounding).
public final class LocalTeacher: Teacher {
    public let lm: TransformerLM
    public let tokenizer: Tokenizer?
    public let chatTemplate: ChatTemplate?
    public let batchSize: Int

    public init(lm: TransformerLM, tokenizer: Tokenizer? = nil, chatTemplate: ChatTemplate? = nil, batchSize: Int = 1) {
        self.lm = lm
        self.tokenizer = tokenizer
        self.chatTemplate = chatTemplate
        self.batchSize = max(1, batchSize)
    }

    public convenience init(model: PretrainedModel) {
        self.init(lm: model.lm, tokenizer: model.tokenizer, chatTemplate: model.chatTemplate)
    }

    public var vocabularySize: Int { lm.config.vocabSize }
    public var tokenizerFingerprint: String? { tokenizer?.fingerprint }
    public var tokenizerVocabularySize: Int? { tokenizer?.vocabSize }

    /// One sequence's forward pass: logits [1, T, V], hidden states and attentions when asked.
    public func forward(_ sequence: [Int], hiddenStates: Bool = false, attentions: Bool = false) throws -> LMOutput {
        try checkIds(sequence)
        return withoutGradients {
            var out = lm.forward(sequence, batch: 1, length: sequence.count,
                                 outputHiddenStates: hiddenStates, outputAttentions: attentions)
            out.logits = out.logits.detached()
            out.hiddenStates = out.hiddenStates.map { $0.detached() }
            out.attentions = out.attentions.map { $0.detached() }
            return out
        }
    }

    public func view(of sequences: [[Int]], positions: [[Int]]?) throws -> TeacherView {
        try checkPositions(sequences, positions)
        let v = vocabularySize
        var data: [Float] = []
        for start in stride(from: 0, to: sequences.count, by: batchSize) {
            let group = Array(sequences[start..<min(sequences.count, start + batchSize)])
            for seq in group { try checkIds(seq) }
            // Right padding: causal attention keeps every real position's logits unchanged.
            let length = group.map(\.count).max()!
            let ids = group.flatMap { $0 + [Int](repeating: 0, count: length - $0.count) }
            let logits = withoutGradients { lm.forward(ids, batch: group.count, length: length).logits }   // (B, T, V)
            let p = logits.storage.pointer
            for (b, seq) in group.enumerated() {
                let rows = positions?[start + b] ?? Array(0..<seq.count)
                data.reserveCapacity(data.count + rows.count * v)
                for t in rows { data.append(contentsOf: UnsafeBufferPointer(start: p + (b * length + t) * v, count: v)) }
            }
        }
        return .full(Tensor(data, shape: [data.count / max(v, 1), v]))   // (N, V)
    }

    func checkIds(_ sequence: [Int]) throws {
        guard !sequence.isEmpty else { throw TeacherError.invalidRequest("teacher: empty sequence") }
        for id in sequence where id < 0 || id >= vocabularySize {
            throw TeacherError.invalidRequest("teacher: token id \(id) outside 0..<\(vocabularySize)")
        }
    }
}

/// Checks a positions list against its sequences.
func checkPositions(_ sequences: [[Int]], _ positions: [[Int]]?) throws {
    guard let positions else { return }
    guard positions.count == sequences.count else {
        throw TeacherError.invalidRequest("teacher: \(positions.count) position lists for \(sequences.count) sequences")
    }
    for (s, list) in positions.enumerated() {
        for t in list where t < 0 || t >= sequences[s].count {
            throw TeacherError.invalidRequest("teacher: position \(t) outside sequence \(s) of length \(sequences[s].count)")
        }
    }
}

// MARK: - Vocabulary alignment

/// Aligning teacher and student vocabularies that differ only by padding rows.
///
/// Models often have more logits than tokens (Qwen2.5-7B: 152,064 logits, Qwen2.5-0.5B: 151,936,
/// both over the same 151,665-token tokenizer). When both tokenizers have the same `fingerprint`
/// and every real token id fits in both widths, the columns past the smaller width are padding:
///
/// - teacher wider than student: full logits are cut to the student's first V_s columns, so that
///   softmax renormalises over them (p'_i = p_i / Σ_{j<V_s} p_j); sparse rows drop ids ≥ V_s, the
///   rest is renormalised the same way (log p' = log p − log(1 − m), m the dropped top-k mass; the
///   rest mass is divided by 1 − m too), and each dropped slot is filled with the lowest id not in
///   the row at log-probability −∞ (probability 0), since every row must keep k distinct ids;
/// - student wider than teacher: full logits get −∞ columns (probability 0); sparse rows are kept,
///   only their vocabulary size grows.
///
/// A different fingerprint is a real tokenizer mismatch and an error.
public enum VocabularyAlignment {
    public static func checkFingerprints(teacher: String?, student: String?) throws {
        if let teacher, let student, teacher != student {
            throw TeacherError.tokenizerMismatch(teacher: teacher, student: student)
        }
    }

    /// Full logits [N, V_t] as [N, V_s] (cut, or padded with −∞).
    public static func align(logits: Tensor, to studentV: Int) -> Tensor {
        let vt = logits.shape.last!, n = logits.count / max(vt, 1)
        if vt == studentV { return logits }
        var out = [Float](repeating: -Float.infinity, count: n * studentV)
        let p = logits.storage.pointer, w = min(vt, studentV)
        for r in 0..<n { for c in 0..<w { out[r * studentV + c] = p[r * vt + c] } }
        return Tensor(out, shape: [n, studentV])                            // (N, V_s)
    }

    /// Sparse rows over V_t as rows over V_s (see the type's notes).
    public static func align(sparse s: SparseTeacherTargets, to studentV: Int) throws -> SparseTeacherTargets {
        if studentV >= s.vocabularySize {
            return try SparseTeacherTargets(ids: s.ids, logprobs: s.logprobs, k: s.k, vocabularySize: studentV, restMass: s.restMass,
                                            known: s.known)
        }
        guard s.k <= studentV else {
            throw TeacherError.vocabularyMismatch(reason: "k = \(s.k) exceeds the student's vocabulary of \(studentV)")
        }
        var ids = s.ids, lps = s.logprobs, rest = s.restMass
        let k = s.k
        for r in 0..<s.rows where s.isKnown(r) {
            let range = (r * k)..<(r * k + k)
            var dropped = 0.0
            for i in range where ids[i] >= studentV { dropped += Foundation.exp(Double(lps[i])) }
            if dropped == 0 { continue }
            let keep = Swift.max(1 - dropped, 1e-30), shift = Float(Foundation.log(keep))
            var used = Set(ids[range].filter { $0 < studentV })
            var filler = 0
            for i in range {
                if ids[i] >= studentV {
                    while used.contains(filler) { filler += 1 }
                    ids[i] = filler; used.insert(filler)
                    lps[i] = -Float.infinity
                } else {
                    lps[i] = Swift.min(0, lps[i] - shift)
                }
            }
            rest[r] = Swift.min(1, Float(Double(rest[r]) / keep))
        }
        return try SparseTeacherTargets(ids: ids, logprobs: lps, k: k, vocabularySize: studentV, restMass: rest, known: s.known)
    }
}

/// A teacher whose views are aligned to a student's vocabulary width (see `VocabularyAlignment`).
public final class AlignedTeacher: Teacher {
    public let base: Teacher
    public let vocabularySize: Int
    public var tokenizerFingerprint: String? { base.tokenizerFingerprint }
    public var tokenizerVocabularySize: Int? { base.tokenizerVocabularySize }
    public var logprobTemperature: Float? { base.logprobTemperature }

    public init(_ base: Teacher, studentVocabularySize: Int, studentFingerprint: String?,
                studentTokenizerVocabularySize: Int? = nil) throws {
        try VocabularyAlignment.checkFingerprints(teacher: base.tokenizerFingerprint, student: studentFingerprint)
        if let used = base.tokenizerVocabularySize ?? studentTokenizerVocabularySize {
            guard used <= studentVocabularySize, used <= base.vocabularySize else {
                throw TeacherError.vocabularyMismatch(
                    reason: "the tokenizer uses \(used) ids but the teacher has \(base.vocabularySize) logits and the student \(studentVocabularySize)")
            }
        } else if base.tokenizerFingerprint == nil || studentFingerprint == nil {
            throw TeacherError.vocabularyMismatch(
                reason: "teacher has \(base.vocabularySize) logits, student \(studentVocabularySize), and without both tokenizers they cannot be aligned")
        }
        self.base = base
        self.vocabularySize = studentVocabularySize
    }

    public func view(of sequences: [[Int]], positions: [[Int]]?) throws -> TeacherView {
        switch try base.view(of: sequences, positions: positions) {
        case .full(let t): return .full(VocabularyAlignment.align(logits: t, to: vocabularySize))
        case .sparse(let s): return .sparse(try VocabularyAlignment.align(sparse: s, to: vocabularySize))
        }
    }
}
