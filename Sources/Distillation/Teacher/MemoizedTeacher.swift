import DistillTensor
import Foundation

/// A teacher that remembers what its base teacher said about each sequence, so that a training
/// run over several epochs asks the base once per distinct sequence instead of once per step.
///
/// The memo is keyed by the sequence's token ids and the positions asked for; a sequence asked
/// about at other positions is computed again (and remembered under those). Views are returned
/// exactly as the base gave them: full logits rows stay F32, sparse rows keep their ids, log
/// probabilities and rest mass. Memory grows with the distinct (sequence, positions) pairs seen:
/// for full views, rows × vocabulary × 4 bytes (`memoBytes` says how much so far).
public final class MemoizedTeacher: Teacher {
    public let base: Teacher
    private struct Key: Hashable {
        var ids: [Int]
        var positions: [Int]?
    }
    private var memo: [Key: TeacherView] = [:]
    /// Sequences the base was asked about (misses) and answered from the memo (hits).
    public private(set) var misses = 0
    public private(set) var hits = 0
    public private(set) var memoBytes = 0

    public init(_ base: Teacher) { self.base = base }

    public var vocabularySize: Int { base.vocabularySize }
    public var tokenizerFingerprint: String? { base.tokenizerFingerprint }
    public var tokenizerVocabularySize: Int? { base.tokenizerVocabularySize }
    public var logprobTemperature: Float? { base.logprobTemperature }

    public func view(of sequences: [[Int]], positions: [[Int]]?) throws -> TeacherView {
        try checkPositions(sequences, positions)
        let keys = sequences.indices.map { Key(ids: sequences[$0], positions: positions?[$0]) }
        // Ask the base once about every sequence not yet remembered (each distinct one once).
        var missing: [Int] = []
        var seen = Set<Key>()
        for (i, k) in keys.enumerated() where memo[k] == nil && seen.insert(k).inserted { missing.append(i) }
        if !missing.isEmpty {
            let asked = try base.view(of: missing.map { sequences[$0] }, positions: positions.map { p in missing.map { p[$0] } })
            var offset = 0
            for i in missing {
                let n = positions?[i].count ?? sequences[i].count
                let rows = Array(offset..<(offset + n))
                offset += n
                let part: TeacherView
                switch asked {
                case .full(let t):
                    part = .full(withoutGradients { t.indexSelect(rows) })
                    memoBytes += n * t.shape.last! * MemoryLayout<Float>.size
                case .sparse(let s):
                    part = .sparse(try s.selecting(rows: rows))
                    memoBytes += n * s.k * (MemoryLayout<Int>.size + MemoryLayout<Float>.size) + n * MemoryLayout<Float>.size
                }
                memo[keys[i]] = part
            }
            guard offset == asked.rows else {
                throw TeacherError.invalidRequest("teacher: \(asked.rows) rows for \(offset) positions")
            }
            misses += missing.count
        }
        hits += sequences.count - missing.count
        let parts = keys.map { memo[$0]! }
        if parts.count == 1 { return parts[0] }
        switch parts[0] {
        case .full:
            let tensors = parts.map { p -> Tensor in
                guard case .full(let t) = p else { fatalError("MemoizedTeacher: base gave full and sparse views") }
                return t
            }
            return .full(withoutGradients { concat(tensors, axis: 0) })
        case .sparse:
            let views = try parts.map { p -> SparseTeacherTargets in
                guard case .sparse(let s) = p else { throw TeacherError.invalidRequest("teacher: base gave full and sparse views") }
                return s
            }
            return .sparse(try SparseTeacherTargets.concatenating(views))
        }
    }
}
