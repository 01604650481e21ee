/// Errors found while checking the arguments of an op. Public validation functions throw them;
/// ops trap with their description, so a misuse names the op and the shapes involved.
public enum TensorError: Error, Equatable, CustomStringConvertible {
    case shapeMismatch(op: String, shapes: [[Int]], reason: String)
    case rankMismatch(op: String, expected: String, shape: [Int])
    case indexOutOfRange(op: String, index: Int, size: Int)
    case invalidArgument(op: String, reason: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, shapes, reason):
            return "\(op): incompatible shapes \(shapes.map { "\($0)" }.joined(separator: " and ")): \(reason)"
        case let .rankMismatch(op, expected, shape):
            return "\(op): expected \(expected), got shape \(shape)"
        case let .indexOutOfRange(op, index, size):
            return "\(op): index \(index) out of range for size \(size)"
        case let .invalidArgument(op, reason):
            return "\(op): \(reason)"
        }
    }
}

/// Runs a validation and traps with the error's message if it fails.
@inline(__always)
func validated<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch { preconditionFailure("\(error)") }
}
