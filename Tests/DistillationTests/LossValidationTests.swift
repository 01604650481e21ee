import DistillTensor
import Distillation
import XCTest

/// Bad input names the loss and the shapes; masks; the weighted total.
final class LossValidationTests: XCTestCase {
    func testLogitShapeMismatch() {
        assertThrowsMessage(try DistillationLoss.validateLogits(loss: "softTargetKL", student: [2, 3, 11], teacher: [2, 3, 12], mask: nil),
                            contains: ["softTargetKL", "[2, 3, 11]", "[2, 3, 12]", "differ"])
        assertThrowsMessage(try DistillationLoss.validateLogits(loss: "reverseKL", student: [11], teacher: [11], mask: nil),
                            contains: ["reverseKL", "[11]", "[N, V]"])
        XCTAssertEqual(try DistillationLoss.validateLogits(loss: "x", student: [2, 3, 11], teacher: [2, 3, 11], mask: .all(6)).rows, 6)
    }

    func testMaskLengthWrong() {
        assertThrowsMessage(try DistillationLoss.validateLogits(loss: "generalizedJSD", student: [2, 3, 11], teacher: [2, 3, 11],
                                                                mask: LossMask([true, false, true])),
                            contains: ["generalizedJSD", "mask is for 3 rows", "6 rows"])
    }

    func testTargetsAndArguments() {
        assertThrowsMessage(try DistillationLoss.validateTargets(loss: "hardCrossEntropy", logits: [6, 11], targets: [1, 2], ignoreIndex: -100),
                            contains: ["hardCrossEntropy", "2 targets for 6 rows", "[6, 11]"])
        assertThrowsMessage(try DistillationLoss.validateTargets(loss: "softAndHard", logits: [1, 11], targets: [-3], ignoreIndex: -100),
                            contains: ["softAndHard", "target -3 out of range 0..<11"])
        XCTAssertNoThrow(try DistillationLoss.validateTargets(loss: "x", logits: [2, 11], targets: [-100, 10], ignoreIndex: -100))
        assertThrowsMessage(try DistillationLoss.validateTemperature(loss: "softTargetKL", 0), contains: ["softTargetKL", "temperature 0.0"])
    }

    func testLossMask() throws {
        let m = try LossMask(rows: [4, 1], total: 6)
        XCTAssertEqual(m.rows, [1, 4])
        XCTAssertEqual(m.flags, [false, true, false, false, true, false])
        XCTAssertEqual(LossMask(labels: [-100, 3, -100, 2]).rows, [1, 3])
        XCTAssertEqual(LossMask([true, false]).count, 1)
        XCTAssertTrue(LossMask.all(3).coversAll)
        assertThrowsMessage(try LossMask(rows: [6], total: 6), contains: ["LossMask", "row 6 out of range 0..<6"])
        assertThrowsMessage(try LossMask(rows: [2, 2], total: 6), contains: ["LossMask", "row 2 listed twice"])
    }
}
