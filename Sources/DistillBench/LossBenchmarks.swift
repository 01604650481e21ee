import Distillation
import DistillNN
import DistillTensor
import Foundation

/// Memory benchmarks of the distillation losses (`distill bench loss-memory`). Results are values;
/// the CLI prints them.
public enum LossBenchmarks {
    /// How the logit loss of one step is computed.
    public enum Mode: String, Codable, Sendable, CaseIterable {
        /// Student logits = H·Wᵀ and the teacher's full logits as `[N, V]` tensors, the loss built
        /// from engine ops (`softAndHard`), gradients by autodiff.
        case naive
        /// `fusedLinearLoss`: chunks of positions, teacher logits fetched per chunk, gradients
        /// computed in the same pass.
        case chunked
    }

    public struct MemoryResult: Codable, Sendable {
        public var mode: Mode
        public var positions: Int
        public var hidden: Int
        public var vocab: Int
        public var chunkSize: Int
        /// Tensor bytes alive before the step: the inputs (student hidden states and output
        /// projection, teacher hidden states and output projection).
        public var inputBytes: Int
        /// Peak tensor bytes alive during loss + backward, inputs included (`BufferPool.peakLiveBytes`:
        /// every tensor buffer of 64 KiB and more, counted when handed out and when given back).
        public var peakTensorBytes: Int
        /// Peak minus inputs: what the loss computation itself needed (gradients included).
        public var workingBytes: Int { peakTensorBytes - inputBytes }
        /// The process's resident-set high-water mark (VmHWM) during the step, reset just before it
        /// (Linux `/proc/self/clear_refs`); nil where unavailable. Includes the inputs, the code,
        /// buffers the pool keeps for reuse, and the allocator's slack.
        public var peakRSSBytes: Int?
        /// VmRSS just before the step.
        public var rssBeforeBytes: Int?
        public var loss: Float
        public var seconds: Double
    }

    /// One step — loss, then gradients with respect to the student's hidden states and output
    /// projection — of α·KL(τ)·τ² + (1−α)·CE over `positions` positions with hidden width
    /// `hidden` and a `vocab`-token vocabulary (defaults: Qwen2's 151,936 tokens, Qwen2.5-0.5B's
    /// width 896, 4,096 positions), measuring peak memory two ways (see `MemoryResult`).
    /// Run one mode per process for a clean resident-set figure.
    public static func memory(mode: Mode, positions n: Int = 4096, hidden h: Int = 896, vocab v: Int = 151_936,
                              chunkSize: Int = 1024, temperature: Float = 2, alpha: Float = 0.5, seed: UInt64 = 7) -> MemoryResult {
        var rng = RandomGenerator(seed: seed)
        let scale = 1 / Float(h).squareRoot()
        let hs = Tensor.randomNormal([n, h], using: &rng).requiringGrad()
        let ws = Tensor.randomNormal([v, h], std: scale, using: &rng).requiringGrad()
        let ht = Tensor.randomNormal([n, h], using: &rng)
        let wt = Tensor.randomNormal([v, h], std: 2 * scale, using: &rng)
        let targets = (0..<n).map { i in i % 8 == 0 ? -100 : Int(rng.next() % UInt64(v)) }

        BufferPool.shared.drain()
        let inputBytes = BufferPool.shared.liveBytes
        BufferPool.shared.resetPeak()
        let rssBefore = ProcessMemory.statusField("VmRSS")
        let resetOK = ProcessMemory.resetPeak()
        let t0 = Date()
        var loss: Float = 0
        switch mode {
        case .naive:
            let logits = hs.matmul(ws, transB: true)                                   // (N, V)
            let teacherLogits = withoutGradients { ht.matmul(wt, transB: true) }      // (N, V)
            let l = DistillationLoss.softAndHard(student: logits, teacher: teacherLogits, targets: targets, alpha: alpha,
                                                 temperature: temperature)
            let g = gradients(of: l, wrt: [hs, ws])
            loss = l.item
            precondition(g[0].shape == hs.shape && g[1].shape == ws.shape)
        case .chunked:
            let options = FusedLossOptions(divergence: .forwardKL, temperature: temperature, alpha: alpha, chunkSize: chunkSize)
            let l = DistillationLoss.fusedLinearLoss(
                hidden: hs, weight: ws,
                teacher: .logits { rows in ht.indexSelect(rows, axis: 0).matmul(wt, transB: true) },   // (rows, V)
                targets: targets, options: options)
            let g = gradients(of: l, wrt: [hs, ws])
            loss = l.item
            precondition(g[0].shape == hs.shape && g[1].shape == ws.shape)
        }
        let seconds = Date().timeIntervalSince(t0)
        let peakRSS = resetOK ? ProcessMemory.statusField("VmHWM") : nil
        return MemoryResult(mode: mode, positions: n, hidden: h, vocab: v, chunkSize: chunkSize, inputBytes: inputBytes,
                            peakTensorBytes: BufferPool.shared.peakLiveBytes, peakRSSBytes: peakRSS,
                            rssBeforeBytes: rssBefore, loss: loss, seconds: seconds)
    }

    /// The chunked step at `positions` against the naive one, both measured in this process one
    /// after the other. The naive step at Qwen's size needs about 31 GB, more than many machines
    /// have, so it runs at `naivePositions` (each ≤ positions); when `positions` is not among them,
    /// its peak at `positions` is extrapolated linearly through the two largest (every naive
    /// temporary is `[N, V]` or fixed-size, so the peak is affine in N — the measured points show it).
    public struct Comparison: Codable, Sendable {
        public var chunked: MemoryResult
        public var naive: [MemoryResult]
        /// Naive peak tensor bytes at the chunked run's positions (measured or extrapolated).
        public var naivePeakTensorBytes: Double
        public var naiveExtrapolated: Bool
        /// chunked peak / naive peak (tensor bytes, inputs included); the acceptance is ≤ 0.25.
        public var ratio: Double
        /// The same for the working memory (peak minus inputs).
        public var workingRatio: Double
    }

    public static func chunkedMemory(positions: Int = 4096, hidden: Int = 896, vocab: Int = 151_936, chunkSize: Int = 1024,
                                     naivePositions: [Int] = [512, 1024]) -> Comparison {
        precondition(!naivePositions.isEmpty && naivePositions.allSatisfy { $0 >= 1 && $0 <= positions },
                     "chunkedMemory: naive positions \(naivePositions) must lie in 1...\(positions)")
        let c = memory(mode: .chunked, positions: positions, hidden: hidden, vocab: vocab, chunkSize: chunkSize)
        let naive = naivePositions.sorted().map { memory(mode: .naive, positions: $0, hidden: hidden, vocab: vocab) }
        var peak: Double, inputs: Double, extrapolated = false
        if let exact = naive.first(where: { $0.positions == positions }) {
            peak = Double(exact.peakTensorBytes)
            inputs = Double(exact.inputBytes)
        } else {
            precondition(naive.count >= 2, "chunkedMemory: two naive sizes are needed to extrapolate to \(positions)")
            let a = naive[naive.count - 2], b = naive[naive.count - 1]
            let slope = Double(b.peakTensorBytes - a.peakTensorBytes) / Double(b.positions - a.positions)
            peak = Double(b.peakTensorBytes) + slope * Double(positions - b.positions)
            let inputSlope = Double(b.inputBytes - a.inputBytes) / Double(b.positions - a.positions)
            inputs = Double(b.inputBytes) + inputSlope * Double(positions - b.positions)
            extrapolated = true
        }
        return Comparison(chunked: c, naive: naive, naivePeakTensorBytes: peak, naiveExtrapolated: extrapolated,
                          ratio: Double(c.peakTensorBytes) / peak,
                          workingRatio: Double(c.workingBytes) / (peak - inputs))
    }
}
