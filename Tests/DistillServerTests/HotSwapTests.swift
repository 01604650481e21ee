import DistillModels
import DistillNN
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest
@testable import DistillServer

/// Swapping the served model while 32 streaming requests generate: none fails, each finishes on
/// the model it started with, later requests get the new model, and the old one is released once
/// its last request ended.
final class HotSwapTests: XCTestCase {
    final class Weak: @unchecked Sendable { weak var endpoint: ModelEndpoint? }

    func testSwapWhile32StreamsGenerate() async throws {
        let old = try PretrainedModel.load(try smolLM2Path())
        let new = try tinyModel(seed: 3)
        let server = try OpenAIServer(model: old, modelName: "served", maxBatch: 32, batchWindow: 0.05)
        let oldEndpoint = Weak()
        oldEndpoint.endpoint = server.endpoint
        let prompts = (0..<32).map { "Say something about the number \($0)." }
        @Sendable func body(_ p: String, stream: Bool, maxTokens: Int) -> [String: Any] {
            ["messages": [["role": "user", "content": p]], "temperature": 0, "max_tokens": maxTokens, "ignore_eos": true, "stream": stream]
        }
        /// Each prompt's greedy reply from `m` (one batch: batched rows give each row's own tokens).
        func direct(_ m: PretrainedModel, _ ps: [String], _ maxTokens: Int) throws -> [String] {
            let ids = try ps.map { m.tokenizer!.encode(try m.applyChatTemplate([ChatMessage(role: "user", content: $0)]), addSpecialTokens: false) }
            let s = try Generator(model: m.lm).generate(prompts: ids, options: GenerationOptions(maxTokens: maxTokens, sampling: .init(temperature: 0)))
            return s.map { m.tokenizer!.decode($0.tokens, skipSpecialTokens: true) }
        }
        let (replies, after): ([(Int, Reply)], Reply) = try await withRouter(server) { client in
            async let streams = withThrowingTaskGroup(of: (Int, Reply).self) { group in
                for (i, p) in prompts.enumerated() {
                    group.addTask { (i, try await client.post("/v1/chat/completions", body(p, stream: true, maxTokens: 24))) }
                }
                var out: [(Int, Reply)] = []
                for try await r in group { out.append(r) }
                return out
            }
            // Swap once the old model is generating.
            while server.batchCount == 0 { try await Task.sleep(nanoseconds: 2_000_000) }
            try server.swap(to: new)
            XCTAssertEqual(server.swapCount, 1)
            let after = try await client.post("/v1/chat/completions", body("hello", stream: false, maxTokens: 8))
            return (try await streams, after)
        }
        // Every stream completed: 200, [DONE], no error event; its text is its model's greedy text.
        XCTAssertEqual(replies.count, 32)
        var onOld = 0
        let oldTexts = try direct(old, prompts, 24), newTexts = try direct(new, prompts, 24)
        for (i, r) in replies {
            XCTAssertEqual(r.status, 200)
            XCTAssertTrue(r.text.hasSuffix("data: [DONE]\n\n"), "request \(i)")
            XCTAssertFalse(r.events.contains { $0["error"] != nil }, "request \(i)")
            let text = r.events.compactMap { (($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String }.joined()
            if text == oldTexts[i] { onOld += 1 } else { XCTAssertEqual(text, newTexts[i], "request \(i)") }
        }
        XCTAssertGreaterThan(onOld, 0, "the swap came before any request started")
        XCTAssertEqual(after.choices.first.flatMap { ($0["message"] as? [String: Any])?["content"] as? String }, try direct(new, ["hello"], 8)[0])
        XCTAssertEqual(after.json["model"] as? String, "served")
        XCTAssertNil(oldEndpoint.endpoint, "the old model is released once its requests ended")
    }

    /// `DIR/current` switched by renaming a new link over it: one swap per change, a version that
    /// does not load is refused once and the server keeps its model; a file naming the version
    /// works as a pointer too.
    func testWatcherFollowsTheCurrentPointer() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-watch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (name, seed) in [("v1", UInt64(1)), ("v2", 2)] {
            let m = try tinyModel(seed: seed)
            try m.saveDirectory(dir.appendingPathComponent(name).path)
        }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("v3"), withIntermediateDirectories: true)
        func point(to version: String) throws {
            let tmp = dir.appendingPathComponent(".current-\(UUID().uuidString)")
            try FileManager.default.createSymbolicLink(atPath: tmp.path, withDestinationPath: version)
            XCTAssertEqual(rename(tmp.path, dir.appendingPathComponent("current").path), 0)
        }
        let watcher = ModelDirectoryWatcher(directory: dir)
        XCTAssertThrowsError(try watcher.loadCurrent()) { XCTAssertTrue("\($0)".contains("no version to serve"), "\($0)") }
        try point(to: "v1")
        let server = try OpenAIServer(model: try watcher.loadCurrent(), modelName: "served")
        XCTAssertNil(watcher.check(server), "nothing changed")
        try point(to: "v2")
        guard case .swapped(let v)? = watcher.check(server) else { return XCTFail("no swap") }
        XCTAssertEqual(v, dir.appendingPathComponent("v2").standardizedFileURL.path)
        XCTAssertEqual(server.model.path, v)
        XCTAssertEqual(server.swapCount, 1)
        XCTAssertNil(watcher.check(server))
        try point(to: "v3")
        guard case .failed(let bad, _)? = watcher.check(server) else { return XCTFail("a broken version was not refused") }
        XCTAssertTrue(bad.hasSuffix("v3"))
        XCTAssertNil(watcher.check(server), "refused once, not again until it changes")
        XCTAssertEqual(server.model.path, v)
        // A file naming the version.
        try FileManager.default.removeItem(at: dir.appendingPathComponent("current"))
        try "v1\n".write(to: dir.appendingPathComponent("current"), atomically: true, encoding: .utf8)
        guard case .swapped(let back)? = watcher.check(server) else { return XCTFail("no swap back") }
        XCTAssertTrue(back.hasSuffix("v1"))
        XCTAssertEqual(server.swapCount, 2)
        XCTAssertEqual(server.modelName, "served")
    }
}
