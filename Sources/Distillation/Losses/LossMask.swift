import DistillTensor

/// The positions (rows) of a batch that count toward a loss — assistant tokens only, say.
///
/// Logit losses take student logits as rows `[N, V]` (or `[B, T, V]`, flattened to `N = B·T` rows in
/// row-major order, so row `b·T + t` is position t of sequence b); the mask names the counted rows
/// among those N. Every loss reduces as "sum over the vocabulary (or features), mean over counted
/// rows"; with no counted row the loss is 0 (not NaN) and so is its gradient.
public struct LossMask: Equatable, Sendable {
    /// Number of rows the mask is for (N).
    public let rowCount: Int
    /// Counted rows, ascending, without repeats.
    public let rows: [Int]

    /// A mask counting `rows` among `total` rows. Throws when a row is out of range or repeated.
    public init(rows: [Int], total: Int) throws {
        guard total >= 0 else {
            throw DistillationLossError.invalidArgument(loss: "LossMask", reason: "negative row count \(total)")
        }
        let sorted = rows.sorted()
        for (i, r) in sorted.enumerated() {
            guard r >= 0 && r < total else {
                throw DistillationLossError.indexOutOfRange(loss: "LossMask", what: "row", index: r, size: total)
            }
            if i > 0 && sorted[i - 1] == r {
                throw DistillationLossError.invalidArgument(loss: "LossMask", reason: "row \(r) listed twice")
            }
        }
        self.rowCount = total
        self.rows = sorted
    }

    /// One flag per row: true counts.
    public init(_ flags: [Bool]) {
        rowCount = flags.count
        rows = flags.indices.filter { flags[$0] }
    }

    /// The rows whose label is not `ignoreIndex` (PyTorch's and TRL's `labels != -100`).
    public init(labels: [Int], ignoreIndex: Int = -100) {
        rowCount = labels.count
        rows = labels.indices.filter { labels[$0] != ignoreIndex }
    }

    /// Every one of `n` rows counts.
    public static func all(_ n: Int) -> LossMask { LossMask(Array(repeating: true, count: n)) }

    /// Number of counted rows.
    public var count: Int { rows.count }

    /// True when every row counts (no selection needed).
    public var coversAll: Bool { rows.count == rowCount }

    /// One flag per row.
    public var flags: [Bool] {
        var f = [Bool](repeating: false, count: rowCount)
        for r in rows { f[r] = true }
        return f
    }
}

/// Errors in the arguments of a distillation loss. Each names the loss and the shapes or values
/// involved. Loss functions trap with this message on misuse (as engine ops do); the public
/// `validate…` functions and the constructors of user-supplied data (`LossMask`,
/// `SparseTeacherTargets`, `LayerMap`) throw it.
public enum DistillationLossError: Error, Equatable, CustomStringConvertible {
    case shapeMismatch(loss: String, shapes: [[Int]], reason: String)
    case maskMismatch(loss: String, maskRows: Int, rows: Int)
    case indexOutOfRange(loss: String, what: String, index: Int, size: Int)
    case invalidArgument(loss: String, reason: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(loss, shapes, reason):
            return "\(loss): shapes \(shapes.map { "\($0)" }.joined(separator: " and ")): \(reason)"
        case let .maskMismatch(loss, maskRows, rows):
            return "\(loss): the mask is for \(maskRows) rows but the logits have \(rows) rows"
        case let .indexOutOfRange(loss, what, index, size):
            return "\(loss): \(what) \(index) out of range 0..<\(size)"
        case let .invalidArgument(loss, reason):
            return "\(loss): \(reason)"
        }
    }
}

/// Runs a validation and traps with the error's message if it fails.
@inline(__always)
func lossValidated<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch { preconditionFailure("\(error)") }
}

extension DistillationLoss {
    /// Checks student and teacher logits of one loss: same shape, rank ≥ 2 (`[N, V]` or
    /// `[B, T, V]`), and a mask (if any) for exactly N rows. Returns (rows N, vocabulary V).
    @discardableResult
    public static func validateLogits(loss: String, student: [Int], teacher: [Int], mask: LossMask?) throws -> (rows: Int, vocab: Int) {
        guard student.count >= 2 else {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [student],
                                                      reason: "student logits must be [N, V] or [B, T, V]")
        }
        guard student == teacher else {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [student, teacher],
                                                      reason: "student and teacher logits differ")
        }
        let v = student[student.count - 1], n = student.dropLast().reduce(1, *)
        guard v > 0 else {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [student], reason: "empty vocabulary")
        }
        try validateMask(loss: loss, mask: mask, rows: n)
        return (n, v)
    }

    /// Checks that a mask (if any) is for `rows` rows.
    public static func validateMask(loss: String, mask: LossMask?, rows: Int) throws {
        if let mask, mask.rowCount != rows {
            throw DistillationLossError.maskMismatch(loss: loss, maskRows: mask.rowCount, rows: rows)
        }
    }

    /// Checks a temperature: finite and positive.
    public static func validateTemperature(loss: String, _ tau: Float) throws {
        guard tau > 0, tau.isFinite else {
            throw DistillationLossError.invalidArgument(loss: loss, reason: "temperature \(tau) must be positive and finite")
        }
    }

    /// The counted rows of `x` viewed as `[N, last]`: a `[count, last]` tensor (differentiable).
    static func countedRows(_ x: Tensor, mask: LossMask?) -> Tensor {
        let last = x.shape.last ?? 1
        let flat = x.reshaped([-1, last])                 // (N, last)
        guard let mask, !mask.coversAll else { return flat }
        return flat.indexSelect(mask.rows, axis: 0)       // (count, last)
    }

    /// Number of counted rows among `rows`.
    static func countedCount(_ mask: LossMask?, rows: Int) -> Int { mask?.count ?? rows }
}
