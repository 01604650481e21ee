import DistillTensor
import Foundation
import XCTest
@testable import DistillModels

/// The GGML block encoders: round trips through Distill's decoders (which equal gguf-py's bit for
/// bit), errors no larger than the format allows.
final class GGUFQuantizeTests: XCTestCase {
    /// Gaussian rows with a few large values per row (as real weight rows have).
    func sample(rows: Int = 64, cols: Int = 512, seed: UInt64 = 5) -> [Float] {
        var rng = RandomGenerator(seed: seed)
        var x = (0..<(rows * cols)).map { _ in rng.nextNormal() }
        for r in 0..<rows { for c in 0..<16 { x[r * cols + c] *= 4 } }
        return x
    }

    func roundTripError(_ x: [Float], _ type: GGMLType) throws -> Float {
        let bytes = x.withUnsafeBufferPointer { GGUFQuantizer.quantize($0.baseAddress!, count: x.count, type: type) }
        XCTAssertEqual(bytes.count, x.count / GGUFQuantizer.layout(type).block * GGUFQuantizer.layout(type).bytes)
        let y = try GGUFQuantization.dequantize(bytes, type: type, count: x.count)
        return (zip(x, y).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Float(x.count)).squareRoot()
    }

    /// Root-mean-square error of each type on unit Gaussians: the float types near exact, each
    /// block format within a bound set a little above gguf-py's reference encoders on the same
    /// kind of data (Q4_0 0.115, Q4_1 0.102, Q5_0 0.057, Q5_1 0.049, Q8_0 0.0071), and the
    /// K-quants at least as good as the 32-value formats of the same bits.
    func testRoundTripErrors() throws {
        let x = sample()
        let bounds: [(GGMLType, Float)] = [(.f32, 0), (.f16, 2e-3), (.bf16, 1e-2), (.q8_0, 0.008), (.q4_0, 0.12), (.q4_1, 0.11),
                                           (.q5_0, 0.06), (.q5_1, 0.052), (.q4_K, 0.10), (.q5_K, 0.05), (.q6_K, 0.03)]
        for (type, bound) in bounds {
            let e = try roundTripError(x, type)
            print("GGUF \(type.name): RMSE \(e)")
            XCTAssertLessThanOrEqual(e, bound, type.name)
        }
    }

    /// Constant, zero and tiny blocks decode to themselves (no division by a zero scale).
    func testDegenerateBlocks() throws {
        for type in GGUFQuantizer.writable {
            let n = 256
            for x in [[Float](repeating: 0, count: n), [Float](repeating: 1e-30, count: n)] {
                let bytes = x.withUnsafeBufferPointer { GGUFQuantizer.quantize($0.baseAddress!, count: n, type: type) }
                let y = try GGUFQuantization.dequantize(bytes, type: type, count: n)
                XCTAssertTrue(y.allSatisfy { $0.isFinite && abs($0) <= 1e-29 }, type.name)
            }
        }
    }

    /// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16 and BF16 blocks equal gguf-py's reference encoders byte for
    /// byte (scripts/make_quantize_fixtures.py), ties and degenerate rows included.
    func testBlocksEqualGGUFPyBitForBit() throws {
        let f = try GGUFFile(url: fixtureURL("formats", "quantize_reference.gguf"))
        let source = try f.tensor(named: "source")
        for type in [GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .f16, .bf16] {
            let info = try f.tensorInfo(named: type.name)
            XCTAssertEqual(info.type, type)
            let start = f.dataStart + info.offset
            let want = [UInt8](f.file.bytes(start..<(start + info.byteCount!)))
            let got = GGUFQuantizer.quantize(source.storage.pointer, count: source.count, type: type)
            XCTAssertEqual(got.count, want.count, type.name)
            if let i = zip(got, want).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
                let (_, bytes) = GGUFQuantizer.layout(type)
                XCTFail("\(type.name): first difference in block \(i / bytes) (byte \(i % bytes))")
            }
        }
    }
}
