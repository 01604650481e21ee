import DistillNN
import DistillTensor

/// What the trainer asks a teacher about one training batch.
public struct TeacherBatchRequest {
    /// The batch rows the loss counts (the soft term is asked about these only).
    public var mask: LossMask
    /// Soft targets for the counted rows.
    public var soft: Bool
    /// Hidden states / attention maps of every layer (the feature and attention terms).
    public var hiddenStates: Bool
    public var attentions: Bool
    /// The temperature of the soft term (cross-tokenizer targets are made at it).
    public var temperature: Float
    /// Full logits may be produced chunk by chunk from the final hidden states (the fused loss).
    public var fusedProjection: Bool

    public init(mask: LossMask, soft: Bool, hiddenStates: Bool = false, attentions: Bool = false, temperature: Float = 1,
                fusedProjection: Bool = false) {
        self.mask = mask
        self.soft = soft
        self.hiddenStates = hiddenStates
        self.attentions = attentions
        self.temperature = temperature
        self.fusedProjection = fusedProjection
    }
}

/// A teacher's soft targets for a batch.
public enum TeacherSoftTargets {
    /// Over the student's vocabulary, for the batch's `batch · length` rows (full logits produced
    /// on demand, or top-k log-probabilities).
    case sameVocabulary(ChunkedTeacher)
    /// Over another vocabulary, compared through a cross-tokenizer loss.
    case crossTokenizer(CrossTokenizerTargets)
}

/// A teacher's answer about one training batch.
public struct TeacherBatchOutput {
    public var soft: TeacherSoftTargets?
    /// The counted rows the soft term covers, when fewer than the request's mask (a server's
    /// log-probabilities that did not cover some positions); nil: all of them.
    public var softRows: [Int]?
    /// Hidden states (embeddings, then each block's output) and attention maps, when asked.
    public var hiddenStates: [Tensor] = []
    public var attentions: [Tensor] = []

    public init(soft: TeacherSoftTargets?, softRows: [Int]? = nil, hiddenStates: [Tensor] = [], attentions: [Tensor] = []) {
        self.soft = soft
        self.softRows = softRows
        self.hiddenStates = hiddenStates
        self.attentions = attentions
    }
}

extension Teacher {
    public var hasHiddenStates: Bool { false }
    public var scoresAnySequence: Bool { false }
    public var crossTokenizerLoss: CrossTokenizerLoss? { nil }

    /// The default answer, from `view(of:positions:)` about the counted rows only (a logit cache,
    /// a server's targets, any teacher over the student's vocabulary). No hidden states or
    /// attentions: asking for them throws.
    public func outputs(for batch: Batch, request: TeacherBatchRequest) throws -> TeacherBatchOutput {
        guard !request.hiddenStates && !request.attentions else {
            throw TeacherError.invalidRequest("this teacher gives log-probabilities only (no hidden states or attentions): feature and attention terms need a teacher model in memory")
        }
        guard request.soft else { return TeacherBatchOutput(soft: nil) }
        let rows = request.mask.rows
        let view = try batchView(batch, rows: rows)
        var index = [Int](repeating: -1, count: request.mask.rowCount)
        for (i, r) in rows.enumerated() { index[r] = i }
        switch view {
        case .full(let t):
            return TeacherBatchOutput(soft: .sameVocabulary(.logits { asked in t.indexSelect(asked.map { index[$0] }) }))
        case .sparse(let st):
            // Rows the teacher has no view of leave the soft term.
            let known = st.known == nil ? nil : rows.indices.filter { st.isKnown($0) }.map { rows[$0] }
            return TeacherBatchOutput(soft: .sameVocabulary(.sparse(try st.spread(to: index))), softRows: known)
        }
    }

    /// This teacher's view of batch rows `rows` (ascending), one view row per batch row in that order.
    func batchView(_ batch: Batch, rows: [Int]) throws -> TeacherView {
        var positions = [[Int]](repeating: [], count: batch.sequences.count)
        for r in rows { positions[batch.rowSequence[r]].append(batch.rowPosition[r]) }
        let view = try view(of: batch.sequences, positions: positions)
        guard view.rows == rows.count else {
            throw TeacherError.invalidRequest("the teacher gave \(view.rows) rows for \(rows.count) positions")
        }
        // The view lists rows sequence by sequence; put them back in batch-row order.
        var offset = [Int](repeating: 0, count: positions.count)
        for s in 1..<Swift.max(1, positions.count) { offset[s] = offset[s - 1] + positions[s - 1].count }
        var cursor = offset
        let order = rows.map { r -> Int in
            let s = batch.rowSequence[r]
            defer { cursor[s] += 1 }
            return cursor[s]
        }
        if order == Array(0..<order.count) { return view }
        switch view {
        case .full(let t): return .full(t.indexSelect(order))
        case .sparse(let st): return .sparse(try st.selecting(rows: order))
        }
    }
}

extension LocalTeacher {
    public var hasHiddenStates: Bool { true }
    public var scoresAnySequence: Bool { true }

    /// Runs the model on the batch as laid out (padding, packed rows with their positions and
    /// attention mask), without gradients: full logits for every row — or, with
    /// `fusedProjection`, logits made chunk by chunk from the final hidden states — and hidden
    /// states and attentions when asked.
    public func outputs(for batch: Batch, request: TeacherBatchRequest) throws -> TeacherBatchOutput {
        let weight = request.fusedProjection ? lm.outputProjectionWeight : nil
        let t = withoutGradients {
            lm.forward(batch.ids, batch: batch.batch, length: batch.length, positions: batch.positions, mask: batch.attentionMask,
                       outputHiddenStates: request.hiddenStates, outputAttentions: request.attentions,
                       computeLogits: request.soft && weight == nil)
        }
        var soft: TeacherSoftTargets?
        if request.soft {
            let n = batch.batch * batch.length
            if let weight {
                let th = t.finalHidden.reshaped([n, lm.config.hidden])                  // (B·T, H_t)
                soft = .sameVocabulary(.logits { rows in th.indexSelect(rows).matmul(weight, transB: true) })
            } else {
                let tl = t.logits.reshaped([n, t.logits.shape.last!])                   // (B·T, V)
                soft = .sameVocabulary(.logits { rows in tl.indexSelect(rows) })
            }
        }
        return TeacherBatchOutput(soft: soft, hiddenStates: t.hiddenStates, attentions: t.attentions)
    }
}
