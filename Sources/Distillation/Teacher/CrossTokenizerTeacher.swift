import DistillModels
import DistillNN
import DistillTensor
import Foundation

/// A teacher's soft targets for student logits rows when the two tokenizers differ (see
/// `CrossTokenizerLoss`): sorted distributions at aligned rows (ULD), or span log-probabilities.
public struct CrossTokenizerTargets {
    public var loss: CrossTokenizerLoss
    /// ULD: student rows, the teacher's sorted probabilities there (top-k) and the rest mass.
    public var rows: [Int] = []
    public var sorted: [[Float]] = []
    public var rest: [Float] = []
    /// align: the student tokens of each span and the teacher's log-probability of its text.
    public var spans: [SpanTokens] = []
    public var teacherLogProbs: [Float] = []

    public init(loss: CrossTokenizerLoss) { self.loss = loss }

    /// Units compared (aligned rows or spans).
    public var count: Int { loss == .uld ? rows.count : spans.count }

    /// The loss on student logits `[N, V_s]` at temperature τ.
    public func value(logits: Tensor, temperature: Float) throws -> Tensor {
        switch loss {
        case .uld:
            return try DistillationLoss.universalLogitDistance(logits: logits, rows: rows, teacherSorted: sorted, teacherRest: rest,
                                                               temperature: temperature)
        case .align:
            return try DistillationLoss.spanLikelihood(logits: logits, spans: spans, teacherLogProbs: teacherLogProbs,
                                                       temperature: temperature)
        }
    }
}

/// Where a cross-tokenizer teacher's targets come from.
public enum CrossTokenizerSource {
    /// A model and its tokenizer: each student sequence is decoded to text, tokenized by the
    /// teacher (`TokenAlignment.retokenize`) and run through the model (one sequence at a time, no
    /// gradients).
    case model(TransformerLM, tokenizer: Tokenizer)
    /// A server's sampled tokens of each sequence's completion (`distill traces --logprobs`),
    /// keyed by the student's token ids of the sequence: its top-k at each sampled token
    /// (temperature 1). Server token j, read after the text before it, is the teacher's row
    /// there; only the completion has teacher rows.
    case server([[Int]: ServerTokenSpans])
}

/// A teacher whose tokenizer differs from the student's: a model, or a server's sampled tokens
/// (`CrossTokenizerSource`). Targets are kept per sequence and temperature, so later epochs do
/// not run the teacher again (memory: aligned rows × `topK` floats for ULD, one float per span
/// for `align`).
///
/// Rows or spans that do not align (text the teacher's tokens cannot match, a student row with no
/// teacher row ending at the same byte, a span cut by a packed row or holding uncounted tokens)
/// leave the soft term; `alignedShare` tells how much was kept.
public final class CrossTokenizerTeacher: Teacher {
    public let source: CrossTokenizerSource
    public let studentTokenizer: Tokenizer
    public let loss: CrossTokenizerLoss
    /// ULD keeps the teacher's `topK` largest probabilities per row and their rest mass (nil: all).
    public let topK: Int?
    /// The width of the student ids it is asked about.
    public let vocabularySize: Int

    private struct Prepared {
        var uld: [Int: (sorted: [Float], rest: Float)] = [:]         // student position → teacher row
        var spans: [(positions: [Int], tokens: [Int], logProb: Float)] = []
    }
    private struct Key: Hashable {
        var ids: [Int]
        var temperature: Float
    }
    private var memo: [Key: Prepared] = [:]
    /// Counted rows (ULD) or spans (align) offered and kept so far, for the share that aligned.
    public private(set) var offered = 0
    public private(set) var kept = 0

    public init(source: CrossTokenizerSource, studentTokenizer: Tokenizer, studentVocabularySize: Int,
                loss: CrossTokenizerLoss, topK: Int? = nil) throws {
        if let topK, topK < 1 { throw TeacherError.invalidRequest("cross-tokenizer top-k \(topK) must be at least 1") }
        self.source = source
        self.studentTokenizer = studentTokenizer
        self.vocabularySize = studentVocabularySize
        self.loss = loss
        self.topK = topK
    }

    /// A model in memory.
    public convenience init(lm: TransformerLM, teacherTokenizer: Tokenizer, studentTokenizer: Tokenizer, studentVocabularySize: Int,
                            loss: CrossTokenizerLoss, topK: Int? = nil) throws {
        try self.init(source: .model(lm, tokenizer: teacherTokenizer), studentTokenizer: studentTokenizer,
                      studentVocabularySize: studentVocabularySize, loss: loss, topK: topK)
    }

    /// A server's tokens of each sequence's completion: `spans[i]` belongs to `sequences[i]`
    /// (the student's tokens of the exported record, as the trainer tokenizes it).
    public convenience init(serverSpans spans: [ServerTokenSpans], sequences: [[Int]], studentTokenizer: Tokenizer,
                            studentVocabularySize: Int, loss: CrossTokenizerLoss, topK: Int? = nil) throws {
        guard spans.count == sequences.count else {
            throw TeacherError.invalidRequest("\(spans.count) server token records for \(sequences.count) training examples")
        }
        var bySequence: [[Int]: ServerTokenSpans] = [:]
        for (ids, s) in zip(sequences, spans) { bySequence[ids] = s }
        try self.init(source: .server(bySequence), studentTokenizer: studentTokenizer, studentVocabularySize: studentVocabularySize,
                      loss: loss, topK: topK)
    }

    public var tokenizerFingerprint: String? { studentTokenizer.fingerprint }
    /// A server's log-probabilities were taken at temperature 1.
    public var logprobTemperature: Float? {
        if case .server = source { return 1 }
        return nil
    }
    public var tokenizerVocabularySize: Int? { studentTokenizer.vocabSize }
    public var scoresAnySequence: Bool { true }
    public var crossTokenizerLoss: CrossTokenizerLoss? { loss }
    /// Counted units that aligned, of those offered (1 before any).
    public var alignedShare: Double { offered == 0 ? 1 : Double(kept) / Double(offered) }

    /// Not defined across vocabularies: the teacher's rows are over its own tokens.
    public func view(of sequences: [[Int]], positions: [[Int]]?) throws -> TeacherView {
        throw TeacherError.invalidRequest("a teacher with another tokenizer gives no rows over the student's vocabulary (use a cross-tokenizer loss)")
    }

    public func outputs(for batch: Batch, request: TeacherBatchRequest) throws -> TeacherBatchOutput {
        guard !request.hiddenStates && !request.attentions else {
            throw TeacherError.invalidRequest("feature and attention terms need a teacher with the student's tokenizer")
        }
        guard request.soft else { return TeacherBatchOutput(soft: nil) }
        // Batch row of each (sequence, position).
        var rowOf: [[Int: Int]] = Array(repeating: [:], count: batch.sequences.count)
        for r in 0..<batch.rowSequence.count where batch.rowSequence[r] >= 0 { rowOf[batch.rowSequence[r]][batch.rowPosition[r]] = r }
        let counted = Set(request.mask.rows)
        var targets = CrossTokenizerTargets(loss: loss)
        for (s, ids) in batch.sequences.enumerated() {
            let prepared = try prepare(ids, temperature: request.temperature)
            switch loss {
            case .uld:
                for (position, r) in rowOf[s].sorted(by: { $0.value < $1.value }) where counted.contains(r) {
                    offered += 1
                    guard let t = prepared.uld[position] else { continue }
                    kept += 1
                    targets.rows.append(r)
                    targets.sorted.append(t.sorted)
                    targets.rest.append(t.rest)
                }
            case .align:
                for span in prepared.spans {
                    let rows = span.positions.compactMap { rowOf[s][$0] }
                    guard rows.count == span.positions.count else { continue }   // cut by a packed row
                    guard rows.contains(where: counted.contains) else { continue }
                    offered += 1
                    guard rows.allSatisfy(counted.contains) else { continue }
                    kept += 1
                    targets.spans.append(SpanTokens(rows: rows, tokens: span.tokens))
                    targets.teacherLogProbs.append(span.logProb)
                }
            }
        }
        return TeacherBatchOutput(soft: .crossTokenizer(targets))
    }

    /// Targets from an alignment: `sorted(j)` is teacher row j's sorted top-k and rest mass (ULD;
    /// nil: that row has none),
    /// `logProb(j)` the teacher's log-probability of its token j (j ≥ 1, the span loss).
    private func collect(_ alignment: TokenAlignment, studentIds ids: [Int], sorted: (Int) -> ([Float], Float)?,
                         logProb: (Int) -> Double) -> Prepared {
        var p = Prepared()
        switch loss {
        case .uld:
            for (i, j) in zip(alignment.studentRows, alignment.teacherRows) {
                if let (top, rest) = sorted(j) { p.uld[i] = (top, rest) }
            }
        case .align:
            for span in alignment.spans {
                let lp = span.teacher.reduce(0.0) { $0 + logProb($1) }
                p.spans.append((span.student.map { $0 - 1 }, span.student.map { ids[$0] }, Float(Swift.min(0, lp))))
            }
        }
        return p
    }

    /// The `k` largest values, descending (one pass with a sorted buffer when k is small).
    static func largest(_ k: Int, of values: [Double]) -> [Double] {
        if k * 8 >= values.count { return Array(values.sorted(by: >).prefix(k)) }
        var top: [Double] = []                 // descending
        top.reserveCapacity(k + 1)
        for x in values where top.count < k || x > top[k - 1] {
            var lo = 0, hi = top.count
            while lo < hi { let mid = (lo + hi) / 2; if top[mid] >= x { lo = mid + 1 } else { hi = mid } }
            top.insert(x, at: lo)
            if top.count > k { top.removeLast() }
        }
        return top
    }

    /// The teacher's targets for one student sequence at temperature τ.
    private func prepare(_ ids: [Int], temperature tau: Float) throws -> Prepared {
        let key = Key(ids: ids, temperature: tau)
        if let p = memo[key] { return p }
        var p = Prepared()
        switch source {
        case .model(let lm, let teacherTokenizer):
            let (teacherIds, alignment) = TokenAlignment.retokenize(studentIds: ids, student: studentTokenizer, teacher: teacherTokenizer)
            guard !teacherIds.isEmpty else { break }
            if let bad = teacherIds.first(where: { $0 < 0 || $0 >= lm.config.vocabSize }) {
                throw TeacherError.invalidRequest("the teacher's tokenizer gives token \(bad), outside its model's vocabulary 0..<\(lm.config.vocabSize)")
            }
            let logits = withoutGradients { lm.forward(teacherIds, batch: 1, length: teacherIds.count).logits }
            let v = lm.config.vocabSize, z = logits.storage.pointer, invTau = 1 / Double(tau)
            var probs = [Double](repeating: 0, count: v)
            p = collect(alignment, studentIds: ids, sorted: { j in
                DistillationLoss.softmaxRow(z + j * v, count: v, invTau: invTau, into: &probs)
                let k = Swift.min(self.topK ?? v, v)
                let top = Self.largest(k, of: probs)
                return (top.map { Float($0) }, Float(k < v ? Swift.max(0, 1 - top.reduce(0, +)) : 0))
            }, logProb: { j in
                DistillationLoss.logSoftmaxAt(z + (j - 1) * v, count: v, invTau: invTau, index: teacherIds[j])
            })
        case .server(let records):
            guard let record = records[ids] else {
                throw TeacherError.invalidRequest("a sequence of \(ids.count) tokens has no server tokens (the tokens file belongs to another data file, or it was tokenized differently)")
            }
            guard tau == 1 else {
                throw TeacherError.invalidRequest("server log-probabilities were taken at temperature 1, not \(tau)")
            }
            // The completion's place in the student's text; server token j is the teacher's row
            // j + 1 of a sequence whose token 0 ends where the completion starts.
            let (text, studentEnds) = TokenAlignment.studentText(ids, tokenizer: studentTokenizer)
            let completion = Array(record.completion.utf8)
            guard let c0 = ServerTargets.find(completion, in: text, last: true) else { break }
            let ends = [c0] + record.ends.map { $0 >= 0 ? c0 + $0 : -1 }
            let alignment = TokenAlignment(studentEnds: studentEnds, teacherEnds: ends,
                                           limit: c0 + completion.count)
            p = collect(alignment, studentIds: ids, sorted: { j in
                guard j < record.top.count else { return nil }      // after the last sampled token
                let top = Array(record.top[j].prefix(self.topK ?? Int.max))
                let sorted = top.isEmpty ? [Foundation.exp(record.logprobs[j])] : top
                return (sorted, Swift.max(0, 1 - sorted.reduce(0, +)))
            }, logProb: { j in Double(record.logprobs[j - 1]) })
        }
        memo[key] = p
        return p
    }
}
