import DistillModels
import DistillNN
import DistillServer
import DistillTestSupport
import DistillTensor
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest

/// The shared tiny chat model (`DistillTestSupport`) over this target's fixture tokenizer.
func tinyModel(seed: UInt64 = 1) throws -> PretrainedModel {
    guard let base = Bundle.module.resourceURL else { throw XCTSkip("test bundle has no resources") }
    return try tinyChatModel(tokenizerDirectory: base.appendingPathComponent("Fixtures/tokenizer"), seed: seed)
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF when present (as in DistillModelsTests), else a skip.
func smolLM2Path() throws -> String {
    if let p = ProcessInfo.processInfo.environment["DISTILL_SMOLLM2_GGUF"], FileManager.default.fileExists(atPath: p) { return p }
    let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let p = here.appendingPathComponent(".build/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("SmolLM2 GGUF not found (set DISTILL_SMOLLM2_GGUF)") }
    return p
}

/// A JSON reply, parsed.
struct Reply {
    var status: Int
    var text: String
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:] }
    var choices: [[String: Any]] { json["choices"] as? [[String: Any]] ?? [] }
    var error: [String: Any]? { json["error"] as? [String: Any] }

    /// The `data:` payloads of a server-sent event stream, `[DONE]` excluded.
    var events: [[String: Any]] {
        text.components(separatedBy: "\n\n").compactMap { block -> [String: Any]? in
            guard block.hasPrefix("data: "), !block.hasPrefix("data: [DONE]") else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(block.dropFirst(6).utf8))) as? [String: Any]
        }
    }
}

extension TestClientProtocol {
    func post(_ uri: String, _ body: [String: Any]) async throws -> Reply {
        let data = try JSONSerialization.data(withJSONObject: body)
        return try await post(uri, raw: String(decoding: data, as: UTF8.self))
    }

    func post(_ uri: String, raw: String) async throws -> Reply {
        let r = try await executeRequest(uri: uri, method: .post, headers: [.contentType: "application/json"],
                                         body: ByteBuffer(string: raw))
        return Reply(status: Int(r.status.code), text: String(buffer: r.body))
    }

    func get(_ uri: String) async throws -> Reply {
        let r = try await executeRequest(uri: uri, method: .get, headers: [:], body: nil)
        return Reply(status: Int(r.status.code), text: String(buffer: r.body))
    }
}

/// Runs `body` against the server's router (no socket).
func withRouter<T>(_ server: OpenAIServer, _ body: @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
    try await Application(router: server.makeRouter()).test(.router, body)
}
