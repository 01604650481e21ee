import Distillation
import DistillNN
import DistillTensor
import Foundation

/// `distill bench train`: the reference training workloads of the performance issue, timed step
/// by step (the same workloads as `scripts/bench_pytorch.py`).
///
/// - kd-reference: teacher Qwen2 (hidden 512, 8 layers, 8 heads, 2 KV heads, intermediate 1408),
///   student Qwen2 (256, 4 layers, 4 heads, 2 KV heads, 704), vocabulary 8192, tied embeddings,
///   batch 8 × 256 random ids; teacher forward without gradients; 0.5·KL(τ = 2, τ²-scaled) +
///   0.5·next-token cross-entropy; backward; AdamW.
/// - sft-reference: the student alone, cross-entropy, backward, AdamW.
///
/// FLOPs of a forward pass over T tokens: 2·T·(the blocks' matrix parameters + hidden·vocab for
/// the output projection) + per layer 2·2·(T²/2)·heads·headDim for QKᵀ and PV (causal: half the
/// pairs). Training the student costs 3× its forward, the teacher's forward 1×.
public enum TrainBenchmark {
    public enum Preset: String, CaseIterable, Sendable {
        case kdReference = "kd-reference", sftReference = "sft-reference"
    }

    public static let teacherConfig = TransformerConfig(vocabSize: 8192, hidden: 512, layers: 8, heads: 8, kvHeads: 2,
                                                        intermediate: 1408, tieEmbeddings: true, qkvBias: true)
    public static let studentConfig = TransformerConfig(vocabSize: 8192, hidden: 256, layers: 4, heads: 4, kvHeads: 2,
                                                        intermediate: 704, tieEmbeddings: true, qkvBias: true)
    public static let batch = 8, length = 256

    public struct Result: Codable, Sendable {
        public var preset: String
        public var steps: Int
        /// Median seconds per step (after one warm-up step).
        public var stepSeconds: Double
        public var tokensPerSecond: Double
        public var gflopsPerStep: Double
        public var achievedGflops: Double
        /// This machine's measured single-precision GEMM rate (square 1024, the best backend; under
        /// mpirun the sum of the processes' rates, measured together).
        public var gemmPeakGflops: Double
        public var shareOfPeak: Double
        public var threads: Int
        /// Processes of the MPI job that shared each step (1: a single process).
        public var processes: Int = 1
        /// Peak resident memory of this process (getrusage), bytes.
        public var peakResidentBytes: Int
        /// Seconds per timed step (mean) spent in Float32 matrix products outside attention
        /// (`Gemm.tally`), and their rate: how far the products themselves are from the peak,
        /// apart from the rest of the step.
        public var productSeconds: Double? = nil
        public var productGflops: Double? = nil
    }

    /// Forward FLOPs of one sequence of `t` tokens.
    public static func forwardFlops(_ c: TransformerConfig, tokens t: Int) -> Double {
        let hd = c.heads * c.headDim, kv = c.kvHeads * c.headDim
        let perLayer = Double(c.hidden * hd + 2 * c.hidden * kv + hd * c.hidden + 3 * c.hidden * c.intermediate)
        let matmuls = 2 * (Double(c.layers) * perLayer + Double(c.hidden * c.vocabSize)) * Double(t)
        let attention = Double(c.layers) * 2 * 2 * Double(t) * Double(t) / 2 * Double(hd)
        return matmuls + attention
    }

    /// `teacherBFloat16`: the KD teacher's matrices held in bfloat16 (`storeMatricesInBFloat16`).
    /// With `processGroup` (under `mpirun -np N`), the same global batch is shared: N micro-batches
    /// of 8/N rows, one per process, gradients summed with all-reduce; tokens/s counts the whole batch.
    public static func run(_ preset: Preset, steps: Int = 5, seed: UInt64 = 0, gemmPeak: Double? = nil,
                           teacherBFloat16: Bool = false, processGroup: ProcessGroup? = nil,
                           onStep: (Int, Double) -> Void = { _, _ in }) throws -> Result {
        let processes = processGroup?.size ?? 1
        guard batch % processes == 0 else {
            throw TrainerError.invalidConfiguration("the reference batch of \(batch) rows does not split over \(processes) processes")
        }
        var rng = RandomGenerator(seed: seed)
        let data = (0..<(batch * (steps + 1))).map { _ in
            TokenSequence((0..<length).map { _ in Int(rng.next() % UInt64(studentConfig.vocabSize)) })
        }
        let student = TransformerLM(studentConfig, seed: seed &+ 1)
        var teacher: TransformerLM?
        if preset == .kdReference {
            teacher = TransformerLM(teacherConfig, seed: seed &+ 2)
            teacher!.freeze()
            if teacherBFloat16 { try teacher!.storeMatricesInBFloat16(bfloat16Products: true) }
        }
        var c = TrainerConfiguration(totalSteps: steps + 1, batchSize: batch / processes, accumulationSteps: processes,
                                     layout: .padToLongest(padId: 0), order: .sequential,
                                     learningRate: .constant(1e-4), weightDecay: 0.01, maxGradNorm: nil, seed: seed)
        c.processGroup = processGroup
        let trainer = Trainer(student: student, teacher: teacher, train: data,
                              plan: teacher == nil ? .hardOnly : .kd(alpha: 0.5, temperature: 2), configuration: c)
        var times: [Double] = []
        defer { Gemm.tally = nil }
        for i in 0...steps {
            if i == 1 { Gemm.tally = Gemm.Tally() }      // the timed steps' products
            let t0 = DispatchTime.now().uptimeNanoseconds
            try trainer.trainStep()
            let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if i > 0 { times.append(s); onStep(i, s) }
        }
        let products = Gemm.tally ?? Gemm.Tally()
        Gemm.tally = nil
        let median = times.sorted()[times.count / 2]
        var flops = 3 * forwardFlops(studentConfig, tokens: length) * Double(batch)
        if preset == .kdReference { flops += forwardFlops(teacherConfig, tokens: length) * Double(batch) }
        // Under mpirun every process measures its own peak (at the same time, on its own cores):
        // the job's is their sum.
        var peak = gemmPeak ?? measuredGemmPeak()
        if let processGroup {
            var all = [peak]
            try processGroup.allReduceSum(&all)
            peak = all[0]
        }
        let achieved = flops / median / 1e9
        return Result(preset: preset.rawValue, steps: steps, stepSeconds: median, tokensPerSecond: Double(batch * length) / median,
                      gflopsPerStep: flops / 1e9, achievedGflops: achieved, gemmPeakGflops: peak, shareOfPeak: achieved / peak,
                      threads: Threads.count, processes: processes, peakResidentBytes: ProcessMemory.peakResidentBytes(),
                      productSeconds: products.calls > 0 ? products.seconds / Double(steps) : nil,
                      productGflops: products.seconds > 0 ? products.flops / products.seconds / 1e9 : nil)
    }

    /// GFLOP/s of a square 1024 GEMM, the better of CBLAS (when loaded) and `Tensor.matmul`.
    public static func measuredGemmPeak() -> Double {
        let g = OpBenchmarks.gemm(size: 1024)
        return max(g.cblasGflops ?? 0, g.matmulGflops)
    }
}
