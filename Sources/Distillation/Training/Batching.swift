import DistillTensor

/// One training example: token ids and which tokens are predicted targets.
///
/// `lossMask[i]` says whether token i counts as a target (it is predicted from tokens `0..<i`), so
/// an assistant-only mask is true on the assistant's tokens. Nil means every token after the first.
public struct TokenSequence: Codable, Equatable, Sendable {
    public var ids: [Int]
    public var lossMask: [Bool]?

    public init(_ ids: [Int], lossMask: [Bool]? = nil) {
        precondition(lossMask == nil || lossMask!.count == ids.count,
                     "TokenSequence: \(lossMask!.count) mask flags for \(ids.count) tokens")
        self.ids = ids
        self.lossMask = lossMask
    }

    /// Whether token `i` is a target.
    @inlinable public func counts(_ i: Int) -> Bool { lossMask?[i] ?? true }
}

/// How sequences become the rows of a batch.
public enum BatchLayout: Codable, Equatable, Sendable {
    /// One sequence per row, right-padded with `padId` to the longest sequence of the batch.
    case padToLongest(padId: Int)
    /// Sequences laid end to end into rows of `rowLength` tokens (a sequence that does not fit in
    /// the rest of a row starts a new row; longer ones are cut). Each sequence gets its own
    /// positions (from 0) and attends only to itself; no target crosses a sequence boundary.
    case packed(rowLength: Int, padId: Int)
}

/// A batch ready for `TransformerLM.forward`: `batch` rows of `length` tokens and one next-token
/// target per position (`-100` where nothing is predicted: padding, masked tokens, the last token
/// of every sequence).
public struct Batch {
    public var ids: [Int]
    public var batch: Int
    public var length: Int
    /// Next-token targets, one per position (row-major), `-100` = not counted.
    public var targets: [Int]
    /// Per-row position ids (packed rows only; nil = 0..<length).
    public var positions: [[Int]]?
    /// Additive attention mask `[B, 1, T, T]` that keeps packed sequences apart (packed rows only).
    public var attentionMask: Tensor?
    /// Token ids of the batch's sequences, whole (before any cut to a packed row), in batch order.
    public var sequences: [[Int]] = []
    /// For each of the `batch · length` positions: the index into `sequences` it comes from
    /// (-1 for padding) and its position in that sequence — what a `Teacher` is asked about.
    public var rowSequence: [Int] = []
    public var rowPosition: [Int] = []

    /// Number of counted target positions.
    public var targetCount: Int { targets.reduce(0) { $0 + ($1 == -100 ? 0 : 1) } }
    /// The counted rows as a loss mask over the `batch · length` positions.
    public var lossMask: LossMask { LossMask(labels: targets) }

    /// Builds a batch from sequences with the given layout. Empty sequences are skipped.
    public static func make(_ sequences: [TokenSequence], layout: BatchLayout) -> Batch {
        let seqs = sequences.filter { !$0.ids.isEmpty }
        precondition(!seqs.isEmpty, "Batch.make: no non-empty sequence")
        switch layout {
        case .padToLongest(let pad):
            let length = seqs.map(\.ids.count).max()!
            var ids = [Int](repeating: pad, count: seqs.count * length)
            var targets = [Int](repeating: -100, count: seqs.count * length)
            var rowSequence = [Int](repeating: -1, count: seqs.count * length), rowPosition = rowSequence
            for (b, s) in seqs.enumerated() {
                for (t, id) in s.ids.enumerated() {
                    ids[b * length + t] = id
                    rowSequence[b * length + t] = b
                    rowPosition[b * length + t] = t
                }
                for t in 0..<(s.ids.count - 1) where s.counts(t + 1) { targets[b * length + t] = s.ids[t + 1] }
            }
            return Batch(ids: ids, batch: seqs.count, length: length, targets: targets, positions: nil, attentionMask: nil,
                         sequences: seqs.map(\.ids), rowSequence: rowSequence, rowPosition: rowPosition)
        case let .packed(rowLength, pad):
            precondition(rowLength > 0, "Batch.make: packed row length must be positive")
            // Greedy packing in order; segments[r] = (sequence index, start column, token count).
            var rows: [[(Int, Int, Int)]] = [[]]
            var used = 0
            for (j, s) in seqs.enumerated() {
                let n = Swift.min(s.ids.count, rowLength)
                if used + n > rowLength { rows.append([]); used = 0 }
                rows[rows.count - 1].append((j, used, n))
                used += n
            }
            let b = rows.count, t = rowLength
            var ids = [Int](repeating: pad, count: b * t)
            var targets = [Int](repeating: -100, count: b * t)
            var positions = [[Int]](repeating: Array(0..<t), count: b)
            var segment = [Int](repeating: -1, count: b * t)        // -1: padding (its own segment)
            var rowSequence = [Int](repeating: -1, count: b * t), rowPosition = rowSequence
            for (r, row) in rows.enumerated() {
                var filled = 0
                for (k, (j, start, n)) in row.enumerated() {
                    let s = seqs[j]
                    for i in 0..<n {
                        ids[r * t + start + i] = s.ids[i]
                        positions[r][start + i] = i
                        segment[r * t + start + i] = k
                        rowSequence[r * t + start + i] = j
                        rowPosition[r * t + start + i] = i
                        if i + 1 < n && s.counts(i + 1) { targets[r * t + start + i] = s.ids[i + 1] }
                    }
                    filled = start + n
                }
                for i in filled..<t { positions[r][i] = i - filled }
            }
            // Additive mask (B, 1, T, T): query q sees key k only within its segment; padding
            // positions see themselves (and other padding) so no softmax row is empty.
            let mask = Tensor(zeros: [b, 1, t, t])
            let p = mask.storage.pointer
            for r in 0..<b {
                for q in 0..<t {
                    for k in 0..<t where segment[r * t + q] != segment[r * t + k] { p[(r * t + q) * t + k] = -1e9 }
                }
            }
            return Batch(ids: ids, batch: b, length: t, targets: targets, positions: positions, attentionMask: mask,
                         sequences: seqs.map(\.ids), rowSequence: rowSequence, rowPosition: rowPosition)
        }
    }
}
