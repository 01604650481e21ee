import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One line of the metrics log.
public struct StepMetrics: Codable, Equatable, Sendable {
    /// Optimizer steps done (1 after the first update).
    public var step: Int
    public var loss: Float
    public var soft: Float?
    public var hard: Float?
    public var feature: Float?
    public var attention: Float?
    public var learningRate: Float
    /// Global gradient norm before clipping.
    public var gradNorm: Float
    public var temperature: Float
    /// Tokens processed (rows × length, padding included) per second of the step.
    public var tokensPerSecond: Double
    /// Held-out loss, on steps where the trainer evaluated.
    public var evalLoss: Float?
    /// The loss with the input embeddings perturbed, when the run trains adversarially.
    public var adversarial: Float? = nil

    enum CodingKeys: String, CodingKey {
        case step, loss, soft, hard, feature, attention, temperature, adversarial
        case learningRate = "lr", gradNorm = "grad_norm", tokensPerSecond = "tokens_per_s", evalLoss = "eval_loss"
    }
}

/// A JSON-lines metrics file: one `StepMetrics` object per line. Each line is written by `write`
/// calls on a file opened with `O_APPEND`, so a crash leaves at most a cut last line, which
/// `truncate(afterStep:)` (run on resume) drops together with lines of steps that will be redone.
public struct MetricsLog: Sendable {
    public let url: URL

    public init(url: URL) { self.url = url }

    public func append(_ m: StepMetrics) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var line = try encoder.encode(m)
        line.append(0x0A)
        let fd = open(url.path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path]) }
        defer { close(fd) }
        try line.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path]) }
                done += n
            }
        }
    }

    /// Every complete line that parses.
    public func read() throws -> [StepMetrics] {
        guard FileManager.default.fileExists(atPath: url.path) else { return [] }
        let text = try String(contentsOf: url, encoding: .utf8)
        let decoder = JSONDecoder()
        return text.split(separator: "\n").compactMap { try? decoder.decode(StepMetrics.self, from: Data($0.utf8)) }
    }

    /// Keeps the lines of steps ≤ `step` (rewritten atomically: temp file + rename).
    public func truncate(afterStep step: Int) throws {
        guard FileManager.default.fileExists(atPath: url.path) else { return }
        let text = try String(contentsOf: url, encoding: .utf8)
        let decoder = JSONDecoder()
        let kept = text.split(separator: "\n").filter { line in
            (try? decoder.decode(StepMetrics.self, from: Data(line.utf8))).map { $0.step <= step } ?? false
        }
        let out = kept.map { $0 + "\n" }.joined()
        try Data(out.utf8).write(to: url, options: .atomic)
    }
}
