import XCTest
@testable import DistillTensor

final class IndexTests: XCTestCase {
    /// [[0,1,2],[3,4,5],[6,7,8],[9,10,11]]
    private let table = Tensor((0..<12).map(Float.init), shape: [4, 3])

    // MARK: values

    func testIndexSelectValues() {
        // rows 2, 0, 2 of the table (an embedding lookup with a repeated id)
        assertValues(table.indexSelect([2, 0, 2]), [6, 7, 8, 0, 1, 2, 6, 7, 8], shape: [3, 3])
        // columns 2 and 0
        assertValues(table.indexSelect([2, 0], axis: 1), [2, 0, 5, 3, 8, 6, 11, 9], shape: [4, 2])
        // middle axis of [2,3,2]: x[:, [1], :]
        let x = Tensor((0..<12).map(Float.init), shape: [2, 3, 2])
        assertValues(x.indexSelect([1], axis: 1), [2, 3, 8, 9], shape: [2, 1, 2])
        // no indices: an empty axis
        XCTAssertEqual(table.indexSelect([]).shape, [0, 3])
    }

    func testIndexSelectGradientAccumulatesRepeatedIndices() {
        // y = Σ table[[2,0,2]]  =>  dy/dtable = counts of each row: row 2 twice, row 0 once
        let g = gradient(at: table) { $0.indexSelect([2, 0, 2]).sum() }
        assertValues(g, [1, 1, 1, 0, 0, 0, 2, 2, 2, 0, 0, 0])
    }

    func testGatherValues() {
        // out[r, j] = x[r, index[r, j]]: row 0 picks [2, 0], row 1 picks [1, 1]
        let x = Tensor([10, 11, 12, 20, 21, 22], shape: [2, 3])
        assertValues(x.gather(lastAxis: [2, 0, 1, 1], k: 2), [12, 10, 21, 21], shape: [2, 2])
        // rank 3: [2,1,3] with k = 1
        let y = x.reshaped([2, 1, 3])
        assertValues(y.gather(lastAxis: [1, 2], k: 1), [11, 22], shape: [2, 1, 1])
    }

    func testWhereValues() {
        // where(c, a, b) picks a where c ≠ 0
        let a = Tensor([1, 2, 3, 4]), b = Tensor([10, 20, 30, 40]), c = Tensor([1, 0, 0, 1])
        assertValues(a.where(c, else: b), [1, 20, 30, 4])
        // broadcasting: scalar else, column condition
        let m = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        assertValues(m.where(Tensor([0, 1], shape: [2, 1]), else: Tensor(scalar: -1)), [-1, -1, -1, 4, 5, 6], shape: [2, 3])
        assertValues(Tensor(scalar: 9).where(Tensor([1, 0, 1]), else: Tensor([7, 8, 9])), [9, 8, 9])
    }

    func testMaskedFillValues() {
        // fill where mask ≠ 0; the mask [1,3] broadcasts over rows
        let m = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        assertValues(m.maskedFill(Tensor([0, 1, 0], shape: [1, 3]), value: -5), [1, -5, 3, 4, -5, 6], shape: [2, 3])
        let f = m.maskedFill(Tensor([1, 0, 0, 0, 0, 1], shape: [2, 3]), value: -.infinity)
        XCTAssertEqual(f.scalars, [-.infinity, 2, 3, 4, 5, -.infinity])
    }

    func testCausalMaskContents() {
        // T = S = 3: lower triangle visible.
        //   [0 -∞ -∞]
        //   [0  0 -∞]
        //   [0  0  0]
        let ninf = -Float.infinity
        XCTAssertEqual(Tensor.causalMask(queries: 3, keys: 3).scalars, [0, ninf, ninf, 0, 0, ninf, 0, 0, 0])
        // T = 2 queries, S = 4 keys (KV cache): the queries are positions 2 and 3, so query i sees
        // keys j ≤ i + 2:
        //   [0 0 0 -∞]
        //   [0 0 0  0]
        let m = Tensor.causalMask(queries: 2, keys: 4)
        XCTAssertEqual(m.shape, [2, 4])
        XCTAssertEqual(m.scalars, [0, 0, 0, ninf, 0, 0, 0, 0])
    }

    func testPaddingMaskContents() {
        // lengths [2, 3, 0] over 3 keys -> [b,1,1,s]:
        //   seq 0: [0 0 -∞], seq 1: [0 0 0], seq 2: [-∞ -∞ -∞]
        let ninf = -Float.infinity
        let m = Tensor.paddingMask(lengths: [2, 3, 0], maxLength: 3)
        XCTAssertEqual(m.shape, [3, 1, 1, 3])
        XCTAssertEqual(m.scalars, [0, 0, ninf, 0, 0, 0, ninf, ninf, ninf])
    }

    func testValidateIndices() throws {
        XCTAssertNoThrow(try validateIndices([0, 3, 1], size: 4, op: "indexSelect"))
        XCTAssertNoThrow(try validateIndices([], size: 0, op: "indexSelect"))
        XCTAssertThrowsError(try validateIndices([0, 4], size: 4, op: "indexSelect")) { error in
            XCTAssertEqual(error as? TensorError, .indexOutOfRange(op: "indexSelect", index: 4, size: 4))
            XCTAssertEqual("\(error)", "indexSelect: index 4 out of range for size 4")
        }
        XCTAssertThrowsError(try validateIndices([-1], size: 4, op: "gather")) { error in
            XCTAssertEqual(error as? TensorError, .indexOutOfRange(op: "gather", index: -1, size: 4))
            XCTAssertTrue("\(error)".contains("gather") && "\(error)".contains("-1") && "\(error)".contains("4"))
        }
    }

    // MARK: gradients

    func testIndexSelectGradientAxis0() {
        // repeated indices: their gradients add up
        checkGradients(inputs: [uniform([4, 3], seed: 51)]) { $0[0].indexSelect([3, 1, 3, 0, 3]) }
    }

    func testIndexSelectGradientAxis1() {
        checkGradients(inputs: [uniform([2, 4, 3], seed: 52)]) { $0[0].indexSelect([2, 0, 2], axis: 1) }
        checkGradients(inputs: [uniform([3, 4], seed: 53)]) { $0[0].indexSelect([1, 1, 3], axis: 1) }
    }

    func testGatherGradient() {
        // rows 2, k 3, a repeated index in row 1
        checkGradients(inputs: [uniform([2, 5], seed: 54)]) { $0[0].gather(lastAxis: [4, 0, 2, 1, 1, 3], k: 3) }
        checkGradients(inputs: [uniform([2, 2, 4], seed: 55)]) { $0[0].gather(lastAxis: [3, 0, 1, 2], k: 1) }
    }

    func testWhereGradient() {
        // d where(c, a, b)/da = c ≠ 0, /db = c = 0, summed over broadcast axes
        let c = Tensor([1, 0, 0, 1, 1, 0], shape: [2, 3])
        checkGradients(inputs: [uniform([2, 3], seed: 56), uniform([2, 3], seed: 57)]) { $0[0].where(c, else: $0[1]) }
        // a [3] and b scalar broadcast against c [2,3]
        checkGradients(inputs: [uniform([3], seed: 58), Tensor(scalar: 0.3)]) { $0[0].where(c, else: $0[1]) }
        // condition broadcast: [2,1]
        checkGradients(inputs: [uniform([2, 3], seed: 59), uniform([1, 3], seed: 60)]) {
            $0[0].where(Tensor([1, 0], shape: [2, 1]), else: $0[1])
        }
    }

    func testMaskedFillGradient() {
        // gradient passes where mask = 0 and is 0 where filled
        checkGradients(inputs: [uniform([2, 3], seed: 61)]) { $0[0].maskedFill(Tensor([0, 1, 1], shape: [3]), value: 2) }
        checkGradients(inputs: [uniform([2, 3], seed: 62)]) {
            $0[0].maskedFill(Tensor([1, 0, 0, 0, 0, 1], shape: [2, 3]), value: 0)
        }
    }
}
