import CDistillKernels
import DistillNN
import DistillTensor
import Foundation

/// Micro-benchmarks of the engine (`distill bench ops`). Results are values; the CLI prints them.
public enum OpBenchmarks {
    public struct GemmResult: Codable, Sendable {
        public var size: Int
        /// cblas_sgemm called directly (nil without a BLAS library).
        public var cblasGflops: Double?
        /// `Tensor.matmul` with the default backend (BLAS when present), allocation included.
        public var matmulGflops: Double
        /// Distill's built-in kernel (AVX2+FMA where available), both cores.
        public var builtinGflops: Double
        /// The portable vector kernel, both cores.
        public var portableGflops: Double
    }

    public struct AttentionResult: Codable, Sendable {
        public var shape: String
        public var forwardMs: Double
        public var forwardBackwardMs: Double
        public var unfusedForwardBackwardMs: Double
    }

    public struct TrainStepResult: Codable, Sendable {
        public var config: String
        public var tokensPerStep: Int
        public var stepMs: Double
        public var tokensPerSecond: Double
    }

    /// Median seconds per call of `body` over `reps` timed runs after one warm-up.
    public static func time(reps: Int = 5, _ body: () -> Void) -> Double {
        body()
        var times: [Double] = []
        for _ in 0..<reps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return times.sorted()[times.count / 2]
    }

    public static func gemm(size n: Int) -> GemmResult {
        var rng = RandomGenerator(seed: 1)
        let a = Tensor.randomNormal([n, n], using: &rng), b = Tensor.randomNormal([n, n], using: &rng)
        let c = Tensor(zeros: [n, n])
        let flops = 2 * Double(n) * Double(n) * Double(n)
        let reps = n <= 256 ? 21 : (n <= 1024 ? 9 : 5)
        func raw(_ be: GemmBackend) -> Double {
            let s = time(reps: reps) {
                Gemm.sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a.storage.pointer, lda: n,
                           b: b.storage.pointer, ldb: n, c: c.storage.pointer, ldc: n, backend: be)
            }
            return flops / s / 1e9
        }
        var cblas: Double? = nil
        if Gemm.blasAvailable {
            let s = time(reps: reps) {
                dk_blas_sgemm(0, 0, n, n, n, 1, a.storage.pointer, n, b.storage.pointer, n, 0, c.storage.pointer, n)
            }
            cblas = flops / s / 1e9
        }
        let matmul = flops / time(reps: reps) { _ = withoutGradients { a.matmul(b) } } / 1e9
        return GemmResult(size: n, cblasGflops: cblas, matmulGflops: matmul,
                          builtinGflops: raw(.builtin), portableGflops: raw(.portable))
    }

    public static func attention(batch: Int = 4, heads: Int = 8, kvHeads: Int = 2, length: Int = 256, headDim: Int = 64) -> AttentionResult {
        var rng = RandomGenerator(seed: 2)
        let q = Tensor.randomNormal([batch, heads, length, headDim], using: &rng)
        let k = Tensor.randomNormal([batch, kvHeads, length, headDim], using: &rng)
        let v = Tensor.randomNormal([batch, kvHeads, length, headDim], using: &rng)
        let fwd = time { _ = withoutGradients { scaledDotProductAttention(query: q, key: k, value: v, causal: true) } }
        let fb = time {
            _ = valueAndGradient(at: [q, k, v]) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], causal: true).sum() }
        }
        let unfused = time {
            _ = valueAndGradient(at: [q, k, v]) {
                attentionWithProbabilities(query: $0[0], key: $0[1], value: $0[2], causal: true).output.sum()
            }
        }
        return AttentionResult(shape: "B=\(batch) H=\(heads) KV=\(kvHeads) T=\(length) D=\(headDim), causal",
                               forwardMs: fwd * 1e3, forwardBackwardMs: fb * 1e3, unfusedForwardBackwardMs: unfused * 1e3)
    }

    /// One training step (forward, backward, AdamW) of a small transformer language model.
    public static func trainStep(batch: Int = 8, length: Int = 128) -> TrainStepResult {
        let config = TransformerConfig(vocabSize: 2048, hidden: 256, layers: 4, heads: 4, kvHeads: 2, intermediate: 704)
        let model = TransformerLM(config, seed: 1)
        let opt = AdamW(learningRate: 1e-3)
        var rng = RandomGenerator(seed: 3)
        let ids = (0..<(batch * length)).map { _ in Int(rng.next() % UInt64(config.vocabSize)) }
        let s = time {
            let (_, g) = valueAndGradient(model) { $0.languageModelLoss(ids, batch: batch, length: length) }
            opt.update(model.trainableParameters, gradients: g)
        }
        let desc = "vocab \(config.vocabSize), hidden \(config.hidden), \(config.layers) layers, \(config.heads) heads / \(config.kvHeads) kv, batch \(batch)×\(length)"
        return TrainStepResult(config: desc, tokensPerStep: batch * length, stepMs: s * 1e3,
                               tokensPerSecond: Double(batch * length) / s)
    }
}
