import DistillModels
import DistillNN
import DistillTensor
import DistillTestSupport
@testable import Distillation
import Foundation
import XCTest

/// A full disk (a size-limited tmpfs) while training writes checkpoints and while cache-logits
/// writes its cache: a clear error naming the file and the cause, the last complete checkpoint or
/// cache intact, and a resumed run (with room) ending equal to an uninterrupted one.
final class DiskFullTests: XCTestCase {
    func smallFilesystem(_ bytes: Int) throws -> SmallFilesystem {
        do {
            let fs = try SmallFilesystem(bytes: bytes)
            addTeardownBlock { fs.unmount() }
            return fs
        } catch let e as SmallFilesystem.Unavailable { throw XCTSkip(e.description) }
    }

    func testCheckpointOnAFullDiskFailsClearlyAndTheLastOneResumes() throws {
        let teacher = TinyCorpus.teacher()
        let full = TrainerTests.makeTrainer(studentSeed: 11, teacher: teacher, order: .shuffled(seed: 3), dir: nil, total: 8)
        try full.run()
        // One checkpoint's size, measured.
        let probeDir = try TrainerTests.tempDir(self)
        let probe = TrainerTests.makeTrainer(studentSeed: 11, teacher: teacher, order: .shuffled(seed: 3), dir: probeDir,
                                             checkpointEvery: 2, total: 8)
        try probe.run(until: 2)
        let size = RecipeCheck.directoryBytes(probeDir)
        XCTAssertGreaterThan(size, 10_000)

        // Room for the step-2 checkpoint, not for a second one.
        let fs = try smallFilesystem(size + size / 2)
        let t = TrainerTests.makeTrainer(studentSeed: 11, teacher: teacher, order: .shuffled(seed: 3), dir: fs.url,
                                         checkpointEvery: 2, total: 8)
        XCTAssertThrowsError(try t.run()) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("No space left on device"), m)
            XCTAssertTrue(m.contains(fs.url.appendingPathComponent("step-00000004").path), m)
        }
        XCTAssertEqual(t.step, 4)
        // Only the complete checkpoint is there: no half-written one, no temporary directory.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: fs.url.path), ["step-00000002"])
        XCTAssertEqual(RecipeCheck.directoryBytes(fs.url), size)

        // With room again (copied elsewhere), it resumes and ends as the uninterrupted run.
        let roomy = try TrainerTests.tempDir(self)
        try FileManager.default.copyItem(at: fs.url.appendingPathComponent("step-00000002"), to: roomy.appendingPathComponent("step-00000002"))
        let resumed = TrainerTests.makeTrainer(studentSeed: 99, teacher: teacher, order: .shuffled(seed: 3), dir: roomy,
                                               checkpointEvery: 2, total: 8)
        XCTAssertNotNil(try resumed.resumeFromLatestCheckpoint())
        XCTAssertEqual(resumed.step, 2)
        try resumed.run()
        TrainerTests.assertSameWeights(resumed.student, full.student)
    }

    func testLogitCacheOnAFullDiskFailsClearlyAndResumes() throws {
        let sequences = (0..<40).map { i in (0..<30).map { (i * 7 + $0 * 3) % 50 } }
        let header = LogitCacheHeader(dataHash: 1, vocabularySize: 50, tokenizerVocabularySize: 50, k: 8, temperature: 1,
                                      maxLength: 30, chunkSequences: 4, fingerprint: "f")
        // Rows that depend only on the sequence and position.
        func rows(_ i: Int, _ seq: [Int]) -> [LogitCacheRow] {
            seq.indices.map { t in
                LogitCacheRow(ids: (0..<8).map { (i + t + $0 * 5) % 50 }, logprobs: (0..<8).map { -Float($0) - Float(t) / 100 }, rest: 0.01)
            }
        }
        let roomy = try TrainerTests.tempDir(self)
        let reference = roomy.appendingPathComponent("reference.cache")
        try LogitCacheWriter(path: reference.path, header: header).run(sequences: sequences, rows: rows)
        let size = try Data(contentsOf: reference).count
        XCTAssertGreaterThan(size, 20_000)

        let fs = try smallFilesystem(size / 2)
        let path = fs.url.appendingPathComponent("teacher.cache")
        var committed = 0
        XCTAssertThrowsError(try LogitCacheWriter(path: path.path, header: header).run(sequences: sequences, progress: { p in
            if case .committed(let n, _) = p { committed = n }
        }, rows: rows)) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains(path.path) && m.contains("No space left on device"), m)
        }
        XCTAssertGreaterThan(committed, 0)
        XCTAssertLessThan(committed, sequences.count)
        // What is on disk reads as a cache of the committed sequences.
        let partial = try LogitCache(path: path.path)
        XCTAssertEqual(partial.header.sequenceCount, committed)
        XCTAssertFalse(partial.header.complete)

        // With room again it continues after the last committed chunk and ends byte for byte as
        // the uninterrupted cache.
        let moved = roomy.appendingPathComponent("teacher.cache")
        try FileManager.default.copyItem(at: path, to: moved)
        let written = try LogitCacheWriter(path: moved.path, header: header).run(sequences: sequences, rows: rows)
        XCTAssertEqual(written, sequences.count - committed)
        XCTAssertEqual(try Data(contentsOf: moved), try Data(contentsOf: reference))
    }
}
