import XCTest
@testable import DistillTensor

/// TensorError messages name the op and the shapes (the validation functions themselves are tested
/// beside their ops: broadcastShapes in BinaryTests, matmulShape in MatmulTests, resolveReshape in
/// ShapeTests, validateIndices in IndexTests, AttentionShape in AttentionTests).
final class ErrorTests: XCTestCase {
    func testDescriptions() {
        XCTAssertEqual("\(TensorError.shapeMismatch(op: "add", shapes: [[2, 3], [4]], reason: "axis 1 has sizes 3 and 4"))",
                       "add: incompatible shapes [2, 3] and [4]: axis 1 has sizes 3 and 4")
        XCTAssertEqual("\(TensorError.rankMismatch(op: "rotaryEmbedding", expected: "rank 4", shape: [2, 3]))",
                       "rotaryEmbedding: expected rank 4, got shape [2, 3]")
        XCTAssertEqual("\(TensorError.indexOutOfRange(op: "gather", index: 9, size: 5))",
                       "gather: index 9 out of range for size 5")
        XCTAssertEqual("\(TensorError.invalidArgument(op: "slice", reason: "range 2..<5 out of bounds"))",
                       "slice: range 2..<5 out of bounds")
    }

    func testErrorsFromEachValidatorNameTheirOp() {
        let cases: [(String, () throws -> Void)] = [
            ("broadcast", { _ = try broadcastShapes([2], [3]) }),
            ("matmul", { _ = try matmulShape([2, 3], [2, 3], transA: false, transB: false) }),
            ("reshape", { _ = try resolveReshape([5], [2, 2]) }),
            ("embedding", { try validateIndices([5], size: 5, op: "embedding") }),
            ("attention", { _ = try AttentionShape(query: [1, 1, 2, 4], key: [1, 1, 2, 4], value: [1, 1, 3, 4], mask: nil) }),
        ]
        for (op, body) in cases {
            XCTAssertThrowsError(try body(), op) { error in
                XCTAssertTrue(error is TensorError, "\(op): \(error)")
                XCTAssertTrue("\(error)".hasPrefix("\(op):"), "\(op): \(error)")
            }
        }
    }
}
