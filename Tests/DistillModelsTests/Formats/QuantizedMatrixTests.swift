import CDistillKernels
import DistillModels
import DistillNN
import DistillTensor
import XCTest
@testable import DistillModels
@testable import DistillTensor

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

    /// |n·d| + |c| of every weight w = n·d + c: c the block's offset (Q4_1, Q5_1: m; Q4_0: −8d;
    /// Q5_0: −16d; others 0, giving |w|).
    static func factoredMagnitudes(_ format: QuantizedMatrix.Format, bytes: [UInt8], weights: [Float]) -> [Float] {
        let bb = format.blockBytes, bv = format.blockValues
        return weights.indices.map { i in
            let b = i / bv * bb
            func half(_ at: Int) -> Float { Float(Float16(bitPattern: UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8)) }
            let c: Float
            switch format {
            case .q4_1, .q5_1: c = half(b + 2)
            case .q4_0: c = -8 * half(b)
            case .q5_0: c = -16 * half(b)
            default: c = 0
            }
            return abs(weights[i] - c) + abs(c)
        }
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
                // Another order of the additions: within a few float roundings of Σ|w·x| — and
                // for one input row, summed factored per block (d·Σn·x + c·Σx, w = n·d + c), of
                // Σ (|n·d| + |c|)·|x| ≥ Σ|w·x|.
                let scale = Tensor(x.scalars.map(abs), shape: [m, cols])
                    .matmul(Tensor(Self.factoredMagnitudes(format, bytes: bytes, weights: loader), shape: [rows, cols]), transB: true).scalars
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
    /// With each micro-kernel this CPU runs forced in turn: 16-column AVX2 slivers, 32-column
    /// AVX-512 ones packed in two halves (45 rows: a sliver of 13, one of 16 + 13 over two halves),
    /// the portable kernel's 8 columns through the generic packing.
    func testBatchedProductPacksPanelsFromTheBlocks() throws {
        let saved = Gemm.builtinKernelName
        defer { Gemm.useBuiltinKernel(String(saved.prefix { $0 != " " })) }
        for kernel in Gemm.builtinKernels {
          XCTAssertTrue(Gemm.useBuiltinKernel(String(kernel.prefix { $0 != " " })))
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
                XCTAssertEqual(got.scalars.map(\.bitPattern), want.scalars.map(\.bitPattern), "\(kernel) \(format) m \(m)")
            }
            let ids = [44, 0, 7, 7, 30]
            XCTAssertEqual(q.dequantizedRows(ids).scalars, w.indexSelect(ids, axis: 0).scalars, "\(format)")
          }
        }
    }

    /// The chosen micro-kernel may change while a quantized product runs (measuring the kernels
    /// switches it, possibly beside a server's requests): each product keeps the one it started
    /// with — its x packing and its products must agree (AVX2's 6-row panels, AVX-512's 12) —
    /// and gives the same bits whichever it was.
    func testKernelSwitchedDuringQuantizedProductsChangesNothing() throws {
        let fma = Gemm.builtinKernels.dropFirst().map { String($0.prefix { $0 != " " }) }
        try XCTSkipUnless(fma.count > 1, "one FMA kernel here: nothing to switch between")
        let saved = Gemm.builtinKernelName
        defer { Gemm.useBuiltinKernel(String(saved.prefix { $0 != " " })) }
        let rows = 200, cols = 320, m = 40
        let q = try QuantizedMatrix(format: .q4_1, rows: rows, cols: cols, blocks: randomBlocks(.q4_1, rows: rows, cols: cols, seed: 11))
        var rng = TestRNG(seed: 12)
        let x = Tensor((0..<(m * cols)).map { _ in rng.normal() }, shape: [m, cols])
        let want = q.matmul(x).scalars.map(\.bitPattern)
        final class Stop: @unchecked Sendable { let lock = NSLock(); var done = false
            var isDone: Bool { lock.lock(); defer { lock.unlock() }; return done } }
        let stop = Stop(), finished = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            var i = 0
            while !stop.isDone { Gemm.useBuiltinKernel(fma[i % fma.count]); i += 1 }
            finished.signal()
        }
        for round in 0..<200 {
            XCTAssertEqual(q.matmul(x).scalars.map(\.bitPattern), want, "round \(round)")
        }
        stop.lock.lock(); stop.done = true; stop.lock.unlock()
        finished.wait()
    }

    /// bfloat16 matrices (a frozen teacher's, `storeMatricesInBFloat16`): values rounded to
    /// nearest with ties to even and expanded exactly; many rows through the GEMM packing (bit for
    /// bit the built-in GEMM on the rounded matrix), a few through the AVX2 and portable vector code.
    func testBFloat16Matrices() throws {
        let rows = 37, cols = 320
        var rng = TestRNG(seed: 21)
        var values = (0..<(rows * cols)).map { _ in rng.normal() }
        // Ties: 1 + 2⁻⁸ rounds down to 1 (even), 1 + 3·2⁻⁸ up to 1 + 2⁻⁶; a subnormal; −0.
        values[0] = 1 + 0x1p-8
        values[1] = 1 + 3 * 0x1p-8
        values[2] = Float.leastNonzeroMagnitude * 3
        values[3] = -0.0
        let q = try QuantizedMatrix(bfloat16: Tensor(values, shape: [rows, cols]))
        XCTAssertEqual(q.rowBytes, 2 * cols)
        let w = q.dequantized()
        XCTAssertEqual(Array(w.scalars.prefix(4)).map(\.bitPattern), [Float(1), 1 + 0x1p-6, 0, -0.0].map(\.bitPattern))
        XCTAssertEqual(w.scalars.map(\.bitPattern),
                       values.map { HalfPrecision.float(fromBFloat16: HalfPrecision.bfloat16(from: $0)).bitPattern })
        for m in [1, 5, 40, 130] {
            let x = Tensor((0..<(m * cols)).map { _ in rng.normal() }, shape: [m, cols])
            let want = Tensor(uninitializedShape: [m, rows])
            Gemm.sgemm(transA: false, transB: true, m: m, n: rows, k: cols, a: x.storage.pointer, lda: cols,
                       b: w.storage.pointer, ldb: cols, c: want.storage.pointer, ldc: rows, backend: .builtin, threaded: false)
            XCTAssertEqual(q.matmul(x).scalars.map(\.bitPattern), want.scalars.map(\.bitPattern), "m \(m)")
            let scale = Tensor(x.scalars.map(abs), shape: [m, cols]).matmul(Tensor(w.scalars.map(abs), shape: [rows, cols]), transB: true).scalars
            for portable in [false, true] {
                for ((a, b), s) in zip(zip(q.multiply(x, portable: portable).scalars, want.scalars), scale) {
                    XCTAssertEqual(a, b, accuracy: 4e-7 * Float(cols).squareRoot() * max(s, 1e-3), "m \(m) portable \(portable)")
                }
            }
        }
        let ids = [36, 0, 5, 5]
        XCTAssertEqual(q.dequantizedRows(ids).scalars, w.indexSelect(ids, axis: 0).scalars)
        XCTAssertThrowsError(try QuantizedMatrix(bfloat16: Tensor(zeros: [2, 48])))
    }

    /// A model with its matrices in bfloat16: every matrix whose rows fill 32-value blocks is held
    /// as bfloat16 only (the Float32 weight not kept), and its log-probabilities equal (to float
    /// rounding) those of Float32 weights rounded to bfloat16. (This fixture's weights are drawn
    /// with σ = 0.2, ten times a trained model's scale, so rounding moves its log-probs by 5e-2;
    /// the next tests hold models of realistic scale to 1e-2 of Float32.)
    func testBFloat16ModelEqualsItsRoundedWeights() throws {
        let dir = try fixtureURL("architectures", "llama").path
        let model = try PretrainedModel.loadDirectory(dir), rounded = try PretrainedModel.loadDirectory(dir)
        model.lm.freeze()
        for (_, p) in rounded.lm.namedParameters() where p.value.rank == 2 && p.shape[1] % 32 == 0 {
            p.assign(Tensor(p.value.scalars.map { HalfPrecision.float(fromBFloat16: HalfPrecision.bfloat16(from: $0)) }, shape: p.shape))
        }
        var rng = TestRNG(seed: 4)
        let ids = (0..<24).map { _ in Int(rng.next() % UInt64(model.lm.config.vocabSize)) }
        func logprobs(_ m: PretrainedModel) -> [Float] {
            withoutGradients { m.lm.forward(ids, batch: 1, length: ids.count).logits.logSoftmax().scalars }
        }
        let f32 = logprobs(model), onRounded = logprobs(rounded)
        let saved = try model.lm.storeMatricesInBFloat16()
        var converted = 0, kept = 0
        for (name, module) in model.lm.namedModules() {
            if let l = module as? Linear {
                if l.weight.shape[1] % 32 == 0 {
                    XCTAssertEqual(l.quantizedWeight?.format, .bf16, name)
                    XCTAssertTrue(l.weight.isLazy, "\(name): the Float32 weight is still held")
                    converted += 1
                } else {
                    XCTAssertNil(l.quantizedWeight, name)      // down_proj: rows of 48
                    kept += 1
                }
            }
        }
        XCTAssertGreaterThan(converted, 0)
        XCTAssertGreaterThan(kept, 0)
        XCTAssertEqual(model.lm.model.embedTokens.quantizedWeight?.format, .bf16)
        XCTAssertGreaterThan(saved, 0)
        let bf16 = logprobs(model)
        XCTAssertGreaterThan(zip(bf16, f32).map { abs($0 - $1) }.max()!, 0)
        XCTAssertLessThan(zip(bf16, onRounded).map { abs($0 - $1) }.max()!, 1e-5)
        // Scoring more rows than the vector code takes goes through the GEMM packing and agrees too.
        let long = (0..<40).map { _ in Int(rng.next() % UInt64(model.lm.config.vocabSize)) }
        let a = withoutGradients { model.lm.forward(long, batch: 1, length: long.count).logits.scalars }
        let b = withoutGradients { rounded.lm.forward(long, batch: 1, length: long.count).logits.scalars }
        XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-5)
    }

    /// Largest differences between a model and its bfloat16 copy over `ids`: of the log-probs of
    /// the text's tokens (what scoring and the KD targets' weight rest on), of any probability,
    /// and of any log-probability in the whole vocabulary (tail tokens included).
    func bfloat16Differences(_ lm: TransformerLM, _ copy: TransformerLM, ids: [Int], products: Bool = false) throws -> (tokens: Float, probabilities: Float, all: Float) {
        lm.freeze()
        copy.freeze()
        let saved = try copy.storeMatricesInBFloat16(bfloat16Products: products)
        XCTAssertGreaterThan(saved, 0)
        let v = lm.config.vocabSize
        let a = withoutGradients { lm.forward(ids, batch: 1, length: ids.count).logits.logSoftmax().scalars }
        let b = withoutGradients { copy.forward(ids, batch: 1, length: ids.count).logits.logSoftmax().scalars }
        let tokens = (0..<(ids.count - 1)).map { t in abs(a[t * v + ids[t + 1]] - b[t * v + ids[t + 1]]) }.max()!
        let probabilities = zip(a, b).map { abs(expf($0) - expf($1)) }.max()!
        let all = zip(a, b).map { abs($0 - $1) }.max()!
        print("bfloat16: token log-probs \(tokens), probabilities \(probabilities), any log-prob \(all)")
        return (tokens, probabilities, all)
    }

    /// A teacher at PyTorch's initialisation scale (σ = 0.02, as the KD benchmark's): bfloat16
    /// matrices keep its token log-probabilities and probabilities within 1e-2.
    func testBFloat16TeacherWithinOnePercent() throws {
        let c = TransformerConfig(vocabSize: 2048, hidden: 256, layers: 4, heads: 4, kvHeads: 2, intermediate: 704)
        var rng = TestRNG(seed: 8)
        let ids = (0..<96).map { _ in Int(rng.next() % 2048) }
        let d = try bfloat16Differences(TransformerLM(c, seed: 5), TransformerLM(c, seed: 5), ids: ids)
        XCTAssertLessThan(d.tokens, 1e-2)
        XCTAssertLessThan(d.probabilities, 1e-2)
    }

    /// The same teacher with bfloat16 products (activations rounded too, AVX512_BF16): still
    /// within 1e-2 of Float32, and the matrices' products are those of the rounded operands.
    func testBFloat16ProductsTeacherWithinOnePercent() throws {
        guard QuantizedMatrix.bfloat16ProductsAvailable else { throw XCTSkip("this CPU has no AVX512_BF16") }
        let c = TransformerConfig(vocabSize: 2048, hidden: 256, layers: 4, heads: 4, kvHeads: 2, intermediate: 704)
        var rng = TestRNG(seed: 8)
        let ids = (0..<96).map { _ in Int(rng.next() % 2048) }
        let copy = TransformerLM(c, seed: 5)
        let d = try bfloat16Differences(TransformerLM(c, seed: 5), copy, ids: ids, products: true)
        XCTAssertTrue(copy.model.layers[0].mlp.upProj.quantizedWeight?.usesBFloat16Products ?? false)
        XCTAssertGreaterThan(d.all, 0)
        XCTAssertLessThan(d.tokens, 1e-2)
        XCTAssertLessThan(d.probabilities, 1e-2)
    }

    /// bfloat16 products against the exact sum of the rounded operands' products (Double) on
    /// ragged shapes: rows of x around the 12-row slivers, of W around the 32-column slivers, K
    /// across the 256-value blocks. Each element within K·u of Σ|x̂ŵ| (the products of bfloat16
    /// values are exact in Float32; only the additions round).
    func testBFloat16ProductsOnAwkwardShapes() throws {
        guard QuantizedMatrix.bfloat16ProductsAvailable else { throw XCTSkip("this CPU has no AVX512_BF16") }
        var rng = TestRNG(seed: 17)
        func bf(_ v: Float) -> Double { Double(HalfPrecision.float(fromBFloat16: HalfPrecision.bfloat16(from: v))) }
        for (m, rows, cols) in [(1, 31, 32), (11, 33, 288), (12, 32, 256), (13, 70, 544), (100, 65, 96)] {
            let w = (0..<(rows * cols)).map { _ in rng.normal() }, x = (0..<(m * cols)).map { _ in rng.normal() }
            let q = try QuantizedMatrix(bfloat16: Tensor(w, shape: [rows, cols]))
            XCTAssertFalse(q.usesBFloat16Products)
            q.bfloat16Products = true
            XCTAssertTrue(q.usesBFloat16Products)
            let y = q.matmul(Tensor(x, shape: [m, cols])).scalars
            for i in 0..<m { for j in 0..<rows {
                var exact = 0.0, mag = 0.0
                for k in 0..<cols { let t = bf(x[i * cols + k]) * bf(w[j * cols + k]); exact += t; mag += abs(t) }
                let bound = Double(cols + 2) * 0x1p-24 * mag + 1e-30
                XCTAssertLessThanOrEqual(abs(Double(y[i * rows + j]) - exact), bound, "m \(m) rows \(rows) cols \(cols) at \(i),\(j)")
            } }
        }
    }

    /// A real model: SmolLM2-135M-Instruct (its Q4_1 weights expanded, then rounded to bfloat16).
    /// Its probabilities stay within 1e-2; its token log-probs move by up to 0.037 — as they do
    /// in transformers with the same rounding (scripts/check_bf16_teacher.py: token log-probs
    /// 0.03689, probabilities 0.00436, any log-prob 0.13526), which Distill reproduces to 1e-3:
    /// SmolLM2's activations reach the hundreds, where bfloat16's 8 bits of mantissa show.
    func testBFloat16SmolLM2AsInTransformers() throws {
        let path = try smolLM2Path()
        let a = try PretrainedModel.load(path), b = try PretrainedModel.load(path)
        a.dequantizeWeights()
        b.dequantizeWeights()
        let ids = try a.requireTokenizer().encode("Knowledge distillation trains a small student to imitate a large teacher, token by token.")
        let d = try bfloat16Differences(a.lm, b.lm, ids: ids)
        XCTAssertLessThan(d.probabilities, 1e-2)
        XCTAssertEqual(d.tokens, 0.03689, accuracy: 1e-3)
        XCTAssertEqual(d.probabilities, 0.00436, accuracy: 1e-3)
        XCTAssertEqual(d.all, 0.13526, accuracy: 1e-3)
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
                let scale = Tensor(x.scalars.map(abs), shape: [m, cols])
                    .matmul(Tensor(Self.factoredMagnitudes(format, bytes: bytes, weights: loader), shape: [rows, cols]), transB: true).scalars
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
            // 3 blocks a row: the two-block kernels' odd tail too.
            for cols in [128, 96] {
                let rows = 21
                let bytes = randomBlocks(format, rows: rows, cols: cols, seed: 40 + UInt64(format.rawValue) + UInt64(cols))
                let q = try QuantizedMatrix(format: format, rows: rows, cols: cols, blocks: bytes)
                let w = try GGUFQuantization.dequantize(bytes, type: type, count: rows * cols)
                // The kernels' tiles of 8 input rows (AVX2, the VNNI GEMM) and the GEMM's shorter
                // ones; with 21 weight rows, its partial sliver of 5 too.
                for m in [1, 4, 7, 10, 19] {
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
                    for kernel in QuantizedMatrix.Int8Kernel.allCases where kernel.isSupported {
                        let got = q.multiply(x, int8Activations: true, int8Kernel: kernel).scalars
                        for i in 0..<m {
                            for r in 0..<rows {
                                var want = 0.0, scale = 0.0, exact = 0.0
                                for c in 0..<cols {
                                    want += Double(w[r * cols + c]) * xq[i * cols + c]
                                    scale += abs(Double(w[r * cols + c]) * xq[i * cols + c])
                                    exact += Double(w[r * cols + c]) * Double(xs[i * cols + c])
                                }
                                let g = Double(got[i * rows + r])
                                XCTAssertEqual(g, want, accuracy: 1e-5 * max(scale, 1e-3), "\(format) cols \(cols) m \(m) \(kernel)")
                                // Rounding each activation by at most d/2 moves the sum by at most Σ|w|·d/2.
                                XCTAssertEqual(g, exact, accuracy: 0.01 * max(scale, 1e-3) + 1e-4)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Quantizing activations to int8 blocks (the fast option) with AVX2 gives the portable
    /// code's bytes, scales and sums: random blocks, a block of zeros, halves that round away
    /// from zero (x/d = ±k.5 exactly), a NaN (skipped by the maximum), a block with a huge value.
    func testVectorActivationQuantizingGivesThePortableBytes() {
        var rng = TestRNG(seed: 12)
        var x = (0..<(32 * 40)).map { _ in rng.normal() * 3 }
        for j in 0..<32 { x[32 + j] = 0 }
        for j in 0..<32 { x[64 + j] = Float(j % 2 == 0 ? 1 : -1) * (Float(j) + 0.5) }   // amax 31.5·… : ties
        x[96] = 127; x[97] = 2.5; x[98] = -2.5; x[99] = 126.5; x[100] = -0.0
        x[130] = .nan
        x[160] = 3e38
        let cols = x.count, nb = cols / 32
        var q1 = [Int8](repeating: 0, count: cols), q2 = q1
        var d1 = [Float](repeating: 0, count: nb), d2 = d1, s1 = [Int32](repeating: 0, count: nb), s2 = s1
        dk_quantize_q8_blocks(x, cols, &q1, &d1, &s1)
        dk_quantize_q8_blocks_portable(x, cols, &q2, &d2, &s2)
        XCTAssertEqual(q1, q2)
        XCTAssertEqual(d1.map(\.bitPattern), d2.map(\.bitPattern))
        XCTAssertEqual(s1, s2)
        XCTAssertEqual(Array(q2[96..<100]), [127, 3, -3, 127])   // 2.5 → 3, −2.5 → −3 (d = 1)
    }

    /// AVX-VNNI (VPDPBUSD's VEX form in place of AVX2's VPMADDUBSW + VPMADDWD) gives AVX2's bits
    /// for any number of input rows. Checked where the CPU runs it — Intel's AVX2-only cores; none
    /// of the machines we measured on has it (the Zen 4 has AVX-512 VNNI, whose kernel is the GEMM
    /// on packed weights, tested below), so here it is skipped.
    func testAVXVNNIKernelGivesTheAVX2Bits() throws {
        typealias K = QuantizedMatrix.Int8Kernel
        try XCTSkipUnless(K.avx2.isSupported && K.avxVNNI.isSupported, "this CPU does not run AVX-VNNI")
        for format in [QuantizedMatrix.Format.q4_0, .q4_1, .q8_0] {
            for cols in [96, 256] {
                let rows = 19
                let q = try QuantizedMatrix(format: format, rows: rows, cols: cols,
                                            blocks: randomBlocks(format, rows: rows, cols: cols, seed: 60 + UInt64(cols)))
                for m in [1, 3, 8, 11] {
                    var rng = TestRNG(seed: 5 + UInt64(m))
                    let x = Tensor((0..<(m * cols)).map { _ in rng.normal() * 3 }, shape: [m, cols])
                    let want = q.multiply(x, int8Activations: true, int8Kernel: .avx2).scalars
                    let got = q.multiply(x, int8Activations: true, int8Kernel: .avxVNNI).scalars
                    XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(format) cols \(cols) m \(m)")
                }
            }
        }
    }

    /// The vector int8 kernels (a GEMM over weights packed in slivers of 16 rows: AVX-512 VNNI on
    /// 16 lanes, AVX2 and AVX-VNNI on halves of 8) give the same bits, and give each input row the
    /// bits it gets alone, whatever the other rows (tiles of 8 or 4 and shorter) and however the
    /// weight rows are split — ranges starting and ending inside a sliver or a half, matrices of
    /// 21 and 37 rows (partial last slivers) in one loop. Their agreement with the block
    /// arithmetic in Double: `testInt8ActivationsFollowTheBlockArithmetic`.
    func testPackedInt8KernelsAgreeAndRowsDoNotDependOnTheirNeighbours() throws {
        typealias K = QuantizedMatrix.Int8Kernel
        let kernels = [K.avx2, .avx512VNNI, .avxVNNI].filter(\.isSupported)
        try XCTSkipIf(kernels.isEmpty, "no vector int8 kernel on this CPU")
        let cols = 160, m = 19
        var rng = TestRNG(seed: 44)
        for format in [QuantizedMatrix.Format.q4_0, .q4_1, .q8_0] {
            let ws = try [21, 37].map { rows in
                try QuantizedMatrix(format: format, rows: rows, cols: cols, blocks: randomBlocks(format, rows: rows, cols: cols, seed: 80 + UInt64(rows)))
            }
            let x = Tensor((0..<(m * cols)).map { _ in rng.normal() * 2 }, shape: [m, cols])
            // The activations quantized as `multiply` does, for the C kernel called directly below.
            var q = [Int8](repeating: 0, count: m * cols), d = [Float](repeating: 0, count: m * cols / 32)
            var s = [Int32](repeating: 0, count: m * cols / 32)
            let xs = x.scalars, nb = cols / 32
            q.withUnsafeMutableBufferPointer { qp in d.withUnsafeMutableBufferPointer { dp in s.withUnsafeMutableBufferPointer { sp in
                for i in 0..<m { dk_quantize_q8_blocks(Array(xs[(i * cols)..<((i + 1) * cols)]), cols, qp.baseAddress! + i * cols,
                                                       dp.baseAddress! + i * nb, sp.baseAddress! + i * nb) }
            } } }
            let reference = QuantizedMatrix.multiply(ws, x, int8Activations: true, int8Kernel: kernels[0]).map(\.scalars)
            for kernel in kernels {
                let together = QuantizedMatrix.multiply(ws, x, int8Activations: true, int8Kernel: kernel)
                for (j, (w, y)) in zip(ws, together).enumerated() {
                    let all = y.scalars
                    XCTAssertEqual(all.map(\.bitPattern), reference[j].map(\.bitPattern), "\(format) rows \(w.rows): \(kernel.name) against \(kernels[0].name)")
                    for i in [0, 3, 7, 8, 18] {
                        let row = Tensor(Array(xs[(i * cols)..<((i + 1) * cols)]), shape: [1, cols])
                        let alone = w.multiply(row, int8Activations: true, int8Kernel: kernel).scalars
                        XCTAssertEqual(alone.map(\.bitPattern), all[(i * w.rows)..<((i + 1) * w.rows)].map(\.bitPattern),
                                       "\(format) rows \(w.rows) input row \(i) \(kernel.name)")
                    }
                    // Ranges that cut slivers and halves, straight through the C kernel.
                    var parts = [Float](repeating: .nan, count: m * w.rows)
                    let cuts = [0, 3, 11, 16, 19, w.rows]
                    for (lo, hi) in zip(cuts, cuts.dropFirst()) where lo < hi {
                        dk_q8gemm(format.rawValue, w.int8Packed(), cols, q, d, s, m, &parts, w.rows, lo, hi, kernel.rawValue)
                    }
                    XCTAssertEqual(parts.map(\.bitPattern), all.map(\.bitPattern), "\(format) rows \(w.rows): split ranges, \(kernel.name)")
                }
            }
        }
    }

    /// The int8 kernels' packing (slivers of 16 rows) writes the portable code's bytes with AVX2
    /// and with AVX-512, for each block type, a partial last sliver included.
    func testVectorPackingGivesThePortableBytes() throws {
        for format in [QuantizedMatrix.Format.q4_0, .q4_1, .q8_0] {
            let rows = 37, cols = 96
            let blocks = randomBlocks(format, rows: rows, cols: cols, seed: 90 + UInt64(format.rawValue))
            func packed(_ isa: Int32) -> [UInt8] {
                var out = [UInt8](repeating: 0xAA, count: dk_q8_packed_bytes(format.rawValue, rows, cols))
                dk_q8_pack_with(isa, format.rawValue, blocks, rows, cols, &out, 0, (rows + 15) / 16)
                return out
            }
            let portable = packed(0)
            XCTAssertEqual(packed(1), portable, "\(format) AVX2")
            XCTAssertEqual(packed(2), portable, "\(format) AVX-512")
        }
    }

    /// DISTILL_INT8_KERNEL forces a kernel the CPU runs; a typo or a kernel this CPU lacks is
    /// ignored with a reason that says so (printed by `distill bench generate --fast`).
    func testInt8KernelSettingIsObeyedOrRefusedWithAReason() {
        typealias K = QuantizedMatrix.Int8Kernel
        let none = K.choose(environment: [:])
        XCTAssertEqual(none.kernel, .best)
        XCTAssertTrue(none.reason.hasPrefix("\(K.fastest.name), the fastest"), none.reason)
        for k in K.allCases where k != .best {
            let c = K.choose(environment: ["DISTILL_INT8_KERNEL": k.name])
            if k.isSupported {
                XCTAssertEqual(c.kernel, k)
                XCTAssertEqual(c.reason, "\(k.name) (DISTILL_INT8_KERNEL=\(k.name))")
            } else {
                XCTAssertEqual(c.kernel, .best)
                XCTAssertTrue(c.reason.contains("DISTILL_INT8_KERNEL=\(k.name) ignored (this CPU does not run it"), c.reason)
            }
        }
        let typo = K.choose(environment: ["DISTILL_INT8_KERNEL": "avx512vnni"])
        XCTAssertEqual(typo.kernel, .best)
        XCTAssertTrue(typo.reason.contains("DISTILL_INT8_KERNEL=avx512vnni ignored (not a kernel name; this CPU runs portable"), typo.reason)
        XCTAssertTrue(K.portable.isSupported)
    }

    /// Several matrices of one input in one loop (a decoding step's q/k/v, gate/up) give each the
    /// bits it gets alone — Float32 and int8 activations, mixed formats (Q5_0 has no integer
    /// kernel and multiplies in Float32 beside the others), row counts that split the loop's
    /// chunks inside a matrix.
    func testSeveralMatricesInOneLoopGiveEachItsOwnProduct() throws {
        let cols = 96
        var rng = TestRNG(seed: 7)
        // Q5_0: random bytes, each block's scale 0.1 (randomBlocks makes the 4- and 8-bit layouts).
        var q5 = (0..<(150 * cols / 32 * QuantizedMatrix.Format.q5_0.blockBytes)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for b in stride(from: 0, to: q5.count, by: QuantizedMatrix.Format.q5_0.blockBytes) { q5[b] = 0x66; q5[b + 1] = 0x2E }
        let ms = try [QuantizedMatrix(format: .q4_1, rows: 70, cols: cols, blocks: randomBlocks(.q4_1, rows: 70, cols: cols, seed: 70)),
                      QuantizedMatrix(format: .q8_0, rows: 33, cols: cols, blocks: randomBlocks(.q8_0, rows: 33, cols: cols, seed: 71)),
                      QuantizedMatrix(format: .q5_0, rows: 150, cols: cols, blocks: q5),
                      QuantizedMatrix(format: .q4_0, rows: 5, cols: cols, blocks: randomBlocks(.q4_0, rows: 5, cols: cols, seed: 72))]
        for m in [1, 3, 17] {
            let x = Tensor((0..<(m * cols)).map { _ in rng.normal() }, shape: [m, cols])
            for int8 in [false, true] {
                let together = QuantizedMatrix.multiply(ms, x, int8Activations: int8)
                for (w, y) in zip(ms, together) {
                    XCTAssertEqual(y.shape, [m, w.rows])
                    XCTAssertEqual(y.scalars, w.multiply(x, int8Activations: int8).scalars, "\(w.format) m \(m) int8 \(int8)")
                }
            }
        }
    }

    /// Blocks borrowed from a mapped file are given back once the fast products have their packed
    /// copy: the mapping's resident pages drop to the two it shares with the file's other bytes;
    /// the products (fast, and exact ones that read the blocks again from the file) keep their bits.
    func testFileMappedBlocksAreGivenBackOncePacked() throws {
        let rows = 2048, cols = 1024, format = QuantizedMatrix.Format.q8_0
        let bytes = randomBlocks(format, rows: rows, cols: cols, seed: 12)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("distill-mapped-\(getpid()).bin")
        defer { try? FileManager.default.removeItem(at: url) }
        let offset = 1000                      // the blocks start and end inside pages
        try (Data(count: offset) + Data(bytes) + Data(count: 77)).write(to: url)
        let file = try MappedFile(path: url.path)
        let mapped = try QuantizedMatrix(format: format, rows: rows, cols: cols,
                                         borrowing: file.bytes(offset..<(offset + bytes.count)), owner: file, fileMapped: true)
        let held = try QuantizedMatrix(format: format, rows: rows, cols: cols, blocks: bytes)
        var rng = TestRNG(seed: 5)
        let x = Tensor((0..<(3 * cols)).map { _ in rng.normal() }, shape: [3, cols])
        let exact = held.matmul(x).scalars
        XCTAssertEqual(mapped.matmul(x).scalars, exact)         // every block read: resident
        let before = try Self.residentBytes(ofMappingAt: file.base!)
        XCTAssertGreaterThanOrEqual(before ?? .max, bytes.count)
        XCTAssertEqual(mapped.multiply(x, int8Activations: true).scalars, held.multiply(x, int8Activations: true).scalars)
        #if os(Linux)
        if QuantizedMatrix.Int8Kernel.preferred.resolved != .portable, let before {   // the portable kernel packs nothing
            let after = try Self.residentBytes(ofMappingAt: file.base!) ?? .max
            XCTAssertLessThanOrEqual(after, 2 * 4096, "the mapping kept \(after) of \(before) resident bytes")
        }
        #endif
        XCTAssertEqual(mapped.matmul(x).scalars, exact)         // the blocks again, from the file
    }

    /// The resident bytes of the mapping that holds `address` (Linux: /proc/self/smaps), nil elsewhere.
    static func residentBytes(ofMappingAt address: UnsafeMutableRawPointer) throws -> Int? {
        guard let smaps = ProcessMemory.procFile("/proc/self/smaps") else { return nil }
        let a = UInt(bitPattern: address)
        var inside = false
        for line in smaps.split(separator: "\n") {
            // "7f3a…000-7f3a…000 rw-p 00000000 08:01 1234  /path" opens a mapping's entry.
            let range = line.prefix { $0 != " " }.split(separator: "-")
            if range.count == 2, let lo = UInt(range[0], radix: 16), let hi = UInt(range[1], radix: 16) {
                inside = lo <= a && a < hi
            } else if inside, line.hasPrefix("Rss:") {
                return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]).map { $0 * 1024 }
            }
        }
        return nil
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

    /// `body` with `--fast` decoding on or off and the integer kernel `kernel`, both restored after.
    private func withDecoding<T>(fast: Bool, kernel: QuantizedMatrix.Int8Kernel, _ body: () -> T) -> T {
        let saved = QuantizedMatrix.Int8Kernel.preferred
        QuantizedMatrix.fastDecoding = fast
        QuantizedMatrix.Int8Kernel.preferred = kernel
        defer { QuantizedMatrix.fastDecoding = false; QuantizedMatrix.Int8Kernel.preferred = saved }
        return body()
    }

    /// `--fast` against llama.cpp on the same file (scripts/make_smollm2_llamacpp_logprobs.py:
    /// llama-cpp-python 0.3.36's log-probability of each next token of two texts, Float32
    /// key/value cache), with each integer kernel this CPU runs. llama.cpp rounds activations to 8
    /// bits too, but the two roundings do not coincide: a value moved by another summation order
    /// rounds to the next int8 step downstream, so the two int8 paths differ like two independent
    /// roundings. Measured here: |exact − llama.cpp| mean 0.070 (max 0.40) — one rounding's worth;
    /// |fast − llama.cpp| mean 0.10–0.12 (max 0.46–0.64), about √2 times that. The bounds — the
    /// mean within twice one rounding's worth, no position off by 1 — hold two independent
    /// roundings and fail a kernel whose blocks, scales or offsets are wrong (errors of whole nats).
    /// (Rounding the activation scale to float16 as llama.cpp stores it moved the mean to
    /// 0.07–0.08: not enough to match, so the scale stays Float32.)
    func testSmolLM2FastLogProbsFollowLlamaCpp() throws {
        struct Scores: Decodable { struct Item: Decodable { let ids: [Int]; let token_logprobs: [Double] }; let scores: [Item] }
        let ref = try JSONDecoder().decode(Scores.self, from: Data(contentsOf: try fixtureURL("architectures", "smollm2_llamacpp_logprobs.json")))
        let lm = try PretrainedModel.load(try smolLM2Path()).lm
        func tokenLogProbs(_ ids: [Int], fast: Bool, kernel: QuantizedMatrix.Int8Kernel) -> [Double] {
            // Ten tokens: the decoding path's products (at most QuantizedMatrix.decodeRows rows).
            precondition(ids.count <= QuantizedMatrix.decodeRows)
            let v = lm.config.vocabSize
            let lp = withDecoding(fast: fast, kernel: kernel) {
                withoutGradients { lm.forward(ids, batch: 1, length: ids.count).logits.reshaped([ids.count, v]).logSoftmax(axis: -1).scalars }
            }
            return (0..<(ids.count - 1)).map { Double(lp[$0 * v + ids[$0 + 1]]) }
        }
        for kernel in QuantizedMatrix.Int8Kernel.allCases where kernel != .best && kernel.isSupported {
            var fastErr: [Double] = [], exactErr: [Double] = []
            for item in ref.scores {
                let fast = tokenLogProbs(item.ids, fast: true, kernel: kernel), exact = tokenLogProbs(item.ids, fast: false, kernel: kernel)
                fastErr += zip(fast, item.token_logprobs).map { abs($0 - $1) }
                exactErr += zip(exact, item.token_logprobs).map { abs($0 - $1) }
            }
            let meanFast = fastErr.reduce(0, +) / Double(fastErr.count), meanExact = exactErr.reduce(0, +) / Double(exactErr.count)
            print(String(format: "%@: |fast − llama.cpp| mean %.4f max %.4f; |exact − llama.cpp| mean %.4f max %.4f",
                         kernel.name, meanFast, fastErr.max()!, meanExact, exactErr.max()!))
            XCTAssertLessThan(meanFast, 2 * meanExact, "\(kernel.name): mean distance to llama.cpp")
            XCTAssertLessThan(fastErr.max()!, 1, "\(kernel.name): largest distance to llama.cpp")
        }
    }

    /// `--fast` decoding of SmolLM2 (int8 activations), with each integer kernel this CPU runs: one
    /// decoding step of a single row and of three rows gives the greedy token of Float32
    /// activations and log-probs near theirs (the activations' rounding moved the 50 likeliest
    /// tokens' log-probs by up to 0.45 with the portable kernel, 0.31 with AVX2, 0.44 with VNNI
    /// here; with VNNI every product of several rows, prompts included, is the int8 GEMM, whose
    /// mean distance to llama.cpp is the smallest of the three in the test above). The kernels do
    /// not agree more closely with each other than that: they round in
    /// other orders, and a value moved by one rounding can round to the next int8 step downstream.
    func testSmolLM2FastDecodingStaysNearTheExactLogProbs() throws {
        let lm = try PretrainedModel.load(try smolLM2Path()).lm
        let prompts = [[1, 504, 3458, 314, 260, 3575, 282, 4649, 47], [1, 1204, 314, 5516, 1494, 28, 282, 3012, 30],
                       [1, 24077, 43, 216, 33, 1232, 216, 34, 47]]
        func stepLogProbs(_ rows: [[Int]], fast: Bool, kernel: QuantizedMatrix.Int8Kernel = .best) -> [[Float]] {
            withDecoding(fast: fast, kernel: kernel) { withoutGradients {
                let b = rows.count, t = rows[0].count - 1, v = lm.config.vocabSize
                let cache = lm.makeCache()
                _ = lm.forward(rows.flatMap { $0.dropLast() }, batch: b, length: t, cache: cache)
                let logits = lm.forward(rows.map { $0.last! }, batch: b, length: 1, positions: Array(repeating: [t], count: b),
                                        cache: cache).logits.reshaped([b, v])
                let lp = logits.logSoftmax(axis: -1).scalars
                return (0..<b).map { Array(lp[($0 * v)..<(($0 + 1) * v)]) }
            } }
        }
        // One row, three rows, and one row whose 17-token prompt is more than decodeRows rows (with
        // AVX-512 VNNI, prompts of more than 16 rows multiply through the int8 GEMM too).
        for rows in [[prompts[0]], prompts, [prompts[0] + prompts[1]]] {
            let exact = stepLogProbs(rows, fast: false)
            for kernel in QuantizedMatrix.Int8Kernel.allCases where kernel != .best && kernel.isSupported {
                let fast = stepLogProbs(rows, fast: true, kernel: kernel)
                for (f, e) in zip(fast, exact) {
                    let top = e.indices.max { e[$0] < e[$1] }!
                    XCTAssertEqual(f.indices.max { f[$0] < f[$1] }, top, "greedy token, \(rows.count) rows, \(kernel.name)")
                    // Over the 50 most likely tokens (the ones sampling reaches).
                    let worst = e.indices.sorted { e[$0] > e[$1] }.prefix(50).map { abs(f[$0] - e[$0]) }.max()!
                    print("\(kernel.name), \(rows.count) rows: top log-prob \(e[top]), fast \(f[top]); worst of the top 50 \(worst)")
                    XCTAssertLessThan(worst, 0.5, "\(kernel.name), \(rows.count) rows")
                }
            }
        }
    }
}
