import DistillModels
import DistillNN
import DistillTensor
import XCTest
@testable import DistillModels

/// Quantized matrices: blocks expand to exactly the loader's dequantized values (Q4_0, Q4_1,
/// Q8_0, including half-precision scales that are subnormal, negative or zero), and the product
/// equals the Float32 product with the dequantized matrix up to rounding, with the AVX2 and the
/// portable kernels, one or several input rows; on SmolLM2, decoding through the file's blocks
/// gives the logits of the Float32 weights.
final class QuantizedMatrixTests: XCTestCase {
    /// Random blocks of `format`: scales are half floats drawn from a list with edge cases.
    func randomBlocks(_ format: QuantizedMatrix.Format, rows: Int, cols: Int, seed: UInt64) -> [UInt8] {
        var rng = TestRNG(seed: seed)
        let scales: [UInt16] = [0x2E66, 0x1400, 0x0001, 0x03FF, 0xAE66, 0x0000, 0x3C00, 0x2A00]   // 0.1, 2^-10, subnormals, −0.1, 0, 1, …
        var out: [UInt8] = []
        for _ in 0..<(rows * cols / 32) {
            for _ in 0..<(format == .q4_1 ? 2 : 1) {
                let h = scales[Int(rng.next() % UInt64(scales.count))]
                out += [UInt8(h & 0xFF), UInt8(h >> 8)]
            }
            let payload = format == .q8_0 ? 32 : 16
            for _ in 0..<payload { out.append(UInt8(truncatingIfNeeded: rng.next())) }
        }
        return out
    }

    func testBlocksExpandToTheLoadersValuesAndMultiply() throws {
        for (format, type) in [(QuantizedMatrix.Format.q4_0, GGMLType.q4_0), (.q4_1, .q4_1), (.q8_0, .q8_0)] {
            let rows = 37, cols = 96
            let bytes = randomBlocks(format, rows: rows, cols: cols, seed: UInt64(format.rawValue))
            let q = try QuantizedMatrix(format: format, rows: rows, cols: cols, blocks: bytes)
            let loader = try GGUFQuantization.dequantize(bytes, type: type, count: rows * cols)
            let w = q.dequantized()
            XCTAssertEqual(w.scalars.map(\.bitPattern), loader.map(\.bitPattern), "\(format)")
            for m in [1, 3, 9] {
                var rng = TestRNG(seed: 77)
                let x = Tensor((0..<(m * cols)).map { _ in rng.normal() }, shape: [m, cols])
                let want = x.matmul(Tensor(loader, shape: [rows, cols]), transB: true).scalars
                // Another order of the additions: within a few float roundings of Σ|w·x|.
                let scale = Tensor(x.scalars.map(abs), shape: [m, cols])
                    .matmul(Tensor(loader.map(abs), shape: [rows, cols]), transB: true).scalars
                for portable in [false, true] {
                    let got = q.multiply(x, portable: portable)
                    XCTAssertEqual(got.shape, [m, rows])
                    for ((a, b), s) in zip(zip(got.scalars, want), scale) {
                        XCTAssertEqual(a, b, accuracy: 4e-7 * Float(cols).squareRoot() * max(s, 1e-3), "\(format) m \(m) portable \(portable)")
                    }
                }
            }
        }
        XCTAssertThrowsError(try QuantizedMatrix(format: .q4_1, rows: 2, cols: 48, blocks: []))
        XCTAssertThrowsError(try QuantizedMatrix(format: .q4_1, rows: 2, cols: 64, blocks: [1, 2, 3]))
    }

    /// Many rows: the GEMM packs its panels straight from the blocks. Same kernel and blocking as
    /// the built-in GEMM on the dequantized matrix, so the same values bit for bit (rows not a
    /// multiple of the micro-kernel, K past one 256-deep panel); embedding lookups dequantize rows.
    func testBatchedProductPacksPanelsFromTheBlocks() throws {
        for format in [QuantizedMatrix.Format.q4_0, .q4_1, .q8_0] {
            let rows = 45, cols = 320
            let q = try QuantizedMatrix(format: format, rows: rows, cols: cols, blocks: randomBlocks(format, rows: rows, cols: cols, seed: 9))
            let w = q.dequantized()
            for m in [17, 40, 130] {
                var rng = TestRNG(seed: UInt64(m))
                let x = Tensor((0..<(m * cols)).map { _ in rng.normal() }, shape: [m, cols])
                let want = Tensor(uninitializedShape: [m, rows])
                Gemm.sgemm(transA: false, transB: true, m: m, n: rows, k: cols, a: x.storage.pointer, lda: cols,
                           b: w.storage.pointer, ldb: cols, c: want.storage.pointer, ldc: rows, backend: .builtin, threaded: false)
                let got = q.matmul(x)
                XCTAssertEqual(got.shape, [m, rows])
                XCTAssertEqual(got.scalars.map(\.bitPattern), want.scalars.map(\.bitPattern), "\(format) m \(m)")
            }
            let ids = [44, 0, 7, 7, 30]
            XCTAssertEqual(q.dequantizedRows(ids).scalars, w.indexSelect(ids, axis: 0).scalars, "\(format)")
        }
    }

    /// K-quant, Q5_0 and Q5_1 matrices (as a Q4_K_M teacher holds them) stay in their blocks
    /// too: they expand to the loader's values bit for bit; many rows go through the GEMM packing
    /// from the blocks, a few through the portable matrix-vector code.
    func testKQuantMatricesMultiplyFromTheirBlocks() throws {
        for (format, type) in [(QuantizedMatrix.Format.q4_K, GGMLType.q4_K), (.q5_K, .q5_K), (.q6_K, .q6_K),
                               (.q5_0, .q5_0), (.q5_1, .q5_1)] {
            let rows = 21, cols = 512
            var rng = TestRNG(seed: 3)
            let values = (0..<(rows * cols)).map { _ in rng.normal() }
            let bytes = values.withUnsafeBufferPointer { GGUFQuantizer.quantize($0.baseAddress!, count: values.count, type: type) }
            let q = try QuantizedMatrix(format: format, rows: rows, cols: cols, blocks: bytes)
            let loader = try GGUFQuantization.dequantize(bytes, type: type, count: rows * cols)
            let w = q.dequantized()
            XCTAssertEqual(w.scalars.map(\.bitPattern), loader.map(\.bitPattern), "\(format)")
            for m in [1, 5, 40] {
                let x = Tensor((0..<(m * cols)).map { _ in rng.normal() }, shape: [m, cols])
                let want = Tensor(uninitializedShape: [m, rows])
                Gemm.sgemm(transA: false, transB: true, m: m, n: rows, k: cols, a: x.storage.pointer, lda: cols,
                           b: w.storage.pointer, ldb: cols, c: want.storage.pointer, ldc: rows, backend: .builtin, threaded: false)
                XCTAssertEqual(q.matmul(x).scalars.map(\.bitPattern), want.scalars.map(\.bitPattern), "\(format) m \(m)")
                // A few rows (decoding): expand a block, multiply (another order of the additions).
                let scale = Tensor(x.scalars.map(abs), shape: [m, cols]).matmul(Tensor(loader.map(abs), shape: [rows, cols]), transB: true).scalars
                for ((a, b), s) in zip(zip(q.multiply(x).scalars, want.scalars), scale) {
                    XCTAssertEqual(a, b, accuracy: 4e-7 * Float(cols).squareRoot() * max(s, 1e-3), "\(format) m \(m)")
                }
            }
            XCTAssertThrowsError(try QuantizedMatrix(format: format, rows: 2, cols: format.blockValues / 2, blocks: []))
        }
    }

    /// A GGUF model keeps its Q4_1/Q8_0 weights as blocks: scoring, prompt processing and decoding
    /// never make them Float32 (the parameters stay lazy), and give the Float32 path's log-probs;
    /// `dequantizeWeights` (and training) make them.
    func testSmolLM2ScoresFromItsBlocks() throws {
        let m = try PretrainedModel.loadGGUF(try smolLM2Path())
        let lazy = { m.lm.namedParameters().filter { $0.parameter.isLazy }.count }
        XCTAssertEqual(lazy(), 211)   // 210 Q4_1 matrices and the Q8_0 embedding
        let text = "The keeper wrote the hour, the flag and the wind in his notebook; over forty years it filled eleven volumes."
        let a = try m.score(text: text)
        _ = try m.generate(TextGenerationRequest(prompt: text, options: GenerationOptions(maxTokens: 3, sampling: SamplingParameters(temperature: 0))))
        XCTAssertEqual(lazy(), 211)
        m.dequantizeWeights()
        XCTAssertEqual(lazy(), 0)
        let b = try m.score(text: text)
        XCTAssertLessThan(zip(a.tokenLogprobs, b.tokenLogprobs).map { abs($0 - $1) }.max()!, 1e-4)
    }

    /// The fast option: activations rounded to int8 per block of 32 (d = max|x|/127), integer dot
    /// products per block; checked against the same arithmetic done here in Double, and close to
    /// the exact product (within the activation rounding).
    func testInt8ActivationsFollowTheBlockArithmetic() throws {
        for (format, type) in [(QuantizedMatrix.Format.q4_0, GGMLType.q4_0), (.q4_1, .q4_1), (.q8_0, .q8_0)] {
            let rows = 21, cols = 128
            let bytes = randomBlocks(format, rows: rows, cols: cols, seed: 40 + UInt64(format.rawValue))
            let q = try QuantizedMatrix(format: format, rows: rows, cols: cols, blocks: bytes)
            let w = try GGUFQuantization.dequantize(bytes, type: type, count: rows * cols)
            for m in [1, 4, 10] {
                var rng = TestRNG(seed: 91)
                let xs = (0..<(m * cols)).map { _ in rng.normal() }
                // int8 activations as the kernel makes them.
                var xq = [Double](repeating: 0, count: m * cols)
                for blk in 0..<(m * cols / 32) {
                    let part = xs[(blk * 32)..<(blk * 32 + 32)]
                    let amax = part.map(abs).max()!
                    let d = amax / 127, inv: Float = amax > 0 ? 127 / amax : 0
                    for (j, x) in part.enumerated() {
                        let v = x * inv
                        let r = max(-127, min(127, Int(v < 0 ? v - 0.5 : v + 0.5)))
                        xq[blk * 32 + j] = Double(r) * Double(d)
                    }
                }
                let x = Tensor(xs, shape: [m, cols])
                for portable in [false, true] {
                    let got = q.multiply(x, int8Activations: true, portable: portable).scalars
                    for i in 0..<m {
                        for r in 0..<rows {
                            var want = 0.0, scale = 0.0, exact = 0.0
                            for c in 0..<cols {
                                want += Double(w[r * cols + c]) * xq[i * cols + c]
                                scale += abs(Double(w[r * cols + c]) * xq[i * cols + c])
                                exact += Double(w[r * cols + c]) * Double(xs[i * cols + c])
                            }
                            let g = Double(got[i * rows + r])
                            XCTAssertEqual(g, want, accuracy: 1e-5 * max(scale, 1e-3), "\(format) m \(m) portable \(portable)")
                            // Rounding each activation by at most d/2 moves the sum by at most Σ|w|·d/2.
                            XCTAssertEqual(g, exact, accuracy: 0.01 * max(scale, 1e-3) + 1e-4)
                        }
                    }
                }
            }
        }
    }

    /// Row selection keeps whole rows of blocks.
    func testSelectingRows() throws {
        let bytes = randomBlocks(.q8_0, rows: 4, cols: 64, seed: 3)
        let q = try QuantizedMatrix(format: .q8_0, rows: 4, cols: 64, blocks: bytes)
        let s = try q.selectingRows([2, 0, 3, 1])
        let a = q.dequantized().scalars, b = s.dequantized().scalars
        for (i, r) in [2, 0, 3, 1].enumerated() { XCTAssertEqual(Array(b[(i * 64)..<((i + 1) * 64)]), Array(a[(r * 64)..<((r + 1) * 64)])) }
    }

    /// SmolLM2 (Q4_1 layers, Q8_0 tied embedding): the loaded model keeps the blocks (the llama
    /// q/k rows un-permuted like the Float32 tensors), and a decoding step through them gives the
    /// logits of the Float32 weights; a forward with gradients drops them.
    func testSmolLM2DecodesThroughItsBlocks() throws {
        let model = try PretrainedModel.load(try smolLM2Path())
        let lm = model.lm
        let layer = lm.model.layers[0].selfAttn
        let q = try XCTUnwrap(layer.qProj.quantizedWeight)
        XCTAssertEqual(q.format, .q4_1)
        XCTAssertEqual(q.dequantized().scalars, layer.qProj.weight.value.scalars)
        XCTAssertEqual(lm.model.embedTokens.quantizedWeight?.format, .q8_0)
        let ids = [1, 504, 3458, 314, 260, 3575, 282, 4649, 47]
        func lastLogits() -> [Float] {
            withoutGradients {
                let cache = lm.makeCache()
                _ = lm.forward(Array(ids.dropLast()), batch: 1, length: ids.count - 1, cache: cache)
                return lm.forward([ids.last!], batch: 1, length: 1, positions: [[ids.count - 1]], cache: cache).logits.scalars
            }
        }
        let fast = lastLogits()
        let modules = lm.namedModules().map(\.module)
        for m in modules { (m as? Linear)?.quantizedWeight = nil; (m as? Embedding)?.quantizedWeight = nil }
        let exact = lastLogits()
        var worst: Float = 0
        for (a, b) in zip(fast, exact) { worst = max(worst, abs(a - b)) }
        XCTAssertLessThan(worst, 2e-3, "largest logit difference")
        XCTAssertEqual(fast.indices.max { fast[$0] < fast[$1] }, exact.indices.max { exact[$0] < exact[$1] })
        // Running with gradients drops the blocks (the weights may be trained).
        let reloaded = try PretrainedModel.load(try smolLM2Path())
        _ = reloaded.lm.forward([1, 2], batch: 1, length: 2)
        XCTAssertNil(reloaded.lm.model.layers[0].selfAttn.qProj.quantizedWeight)
    }
}
