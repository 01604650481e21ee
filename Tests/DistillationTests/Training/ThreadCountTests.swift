import CDistillKernels
import DistillNN
import DistillTensor
import XCTest
@testable import Distillation

/// A training run's results do not depend on the machine's core count: two steps of SFT and of KD
/// (gradient clipping and AdamW included) leave the student with the same bits on 1, 2, 3 and 5
/// threads, with the AVX-512 and the AVX2 row kernels. Each sum splits its work into pieces that
/// do not depend on the thread count (the GEMM by rows or columns of C, the norms' weight
/// gradients and the gradient norm by fixed blocks), and the elementwise kernels round every value
/// alike wherever a thread's share of the array ends.
final class ThreadCountTests: XCTestCase {
    func testTrainingStepsGiveTheSameBitsOnAnyThreadCount() throws {
        let savedThreads = Threads.count, savedBackend = Gemm.backend
        defer { Threads.count = savedThreads; Gemm.backend = savedBackend; dk_rows_force_avx2(0) }
        Gemm.backend = .builtin      // a BLAS library's own threads are outside this guarantee
        func trained(threads: Int, kd: Bool) throws -> [UInt32] {
            Threads.count = threads
            let student = TransformerLM(TransformerConfig(vocabSize: 512, hidden: 64, layers: 2, heads: 4, kvHeads: 2,
                                                          intermediate: 160, tieEmbeddings: true, qkvBias: true), seed: 1)
            let teacher = TransformerLM(TransformerConfig(vocabSize: 512, hidden: 96, layers: 2, heads: 4, kvHeads: 2,
                                                          intermediate: 200, tieEmbeddings: true, qkvBias: true), seed: 2)
            teacher.freeze()
            var rng = RandomGenerator(seed: 3)
            // 100 positions: arrays whose thread shares end off the vector width.
            let data = (0..<16).map { _ in TokenSequence((0..<100).map { _ in Int(rng.next() % 512) }) }
            let c = TrainerConfiguration(totalSteps: 2, batchSize: 8, accumulationSteps: 1, layout: .padToLongest(padId: 0),
                                         order: .sequential, learningRate: .constant(1e-3), weightDecay: 0.01, maxGradNorm: 1.0, seed: 0)
            let trainer = Trainer(student: student, teacher: kd ? teacher : nil, train: data,
                                  plan: kd ? .kd(alpha: 0.5, temperature: 2) : .hardOnly, configuration: c)
            _ = try trainer.trainStep()
            _ = try trainer.trainStep()
            return student.parameters.flatMap { $0.value.scalars.map(\.bitPattern) }
        }
        for forceAVX2 in [Int32(0), 1] {
            dk_rows_force_avx2(forceAVX2)
            for kd in [false, true] {
                let one = try trained(threads: 1, kd: kd)
                for threads in [2, 3, 5] {
                    let got = try trained(threads: threads, kd: kd)
                    let differing = zip(got, one).filter { $0 != $1 }.count
                    XCTAssertEqual(differing, 0, "\(kd ? "KD" : "SFT"), \(threads) threads, AVX2 rows forced: \(forceAVX2): "
                                   + "\(differing) of \(one.count) parameters differ from 1 thread")
                }
            }
        }
    }
}
