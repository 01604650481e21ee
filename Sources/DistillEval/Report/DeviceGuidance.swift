import Foundation

/// Where a model fits, in one short sentence, from its measured speed and memory.
///
/// Thresholds (all inclusive at the lower bound, so exactly 20 tokens/s is "interactive"):
///
/// - Interactive: decode ≥ 20 tokens/s (a bit faster than people read) **and** the p95 end-to-end
///   latency within `1 s + newTokens / 20 tokens/s`, i.e. even the slow tail of requests starts
///   within about a second and then streams at interactive speed.
/// - Batch / background: decode ≥ 5 tokens/s (or ≥ 20 tokens/s with a slow p95 tail).
/// - Too slow: decode < 5 tokens/s (also when the measurement is not a number).
///
/// Memory is mentioned only at the extremes: peak resident memory > 8 GiB (desktop/server class)
/// or < 1 GiB (phones, small edge devices). When no peak was measured (0 bytes) it is estimated as
/// 4 bytes per parameter (float32 weights).
///
/// The result depends only on the arguments (no clock, no locale).
public enum DeviceGuidance {
    static let interactiveDecodeTokensPerSecond = 20.0
    static let batchDecodeTokensPerSecond = 5.0
    /// Start-up allowance in the interactive p95 latency budget, milliseconds.
    static let interactiveStartMs = 1000.0
    static let largeMemoryBytes = 8 << 30
    static let smallMemoryBytes = 1 << 30
    static let estimatedBytesPerParameter = 4

    public static func recommend(_ speed: SpeedMeasurement, parameters: Int) -> String {
        [speedSentence(speed), memorySentence(speed, parameters: parameters)]
            .compactMap { $0 }
            .joined(separator: "; ")
    }

    /// The p95 latency (ms) below which a request still feels interactive.
    static func interactiveLatencyBudgetMs(newTokens: Int) -> Double {
        interactiveStartMs + Double(max(newTokens, 0)) * 1000 / interactiveDecodeTokensPerSecond
    }

    private static func speedSentence(_ speed: SpeedMeasurement) -> String {
        let decode = speed.decodeTokensPerSecond
        if decode >= interactiveDecodeTokensPerSecond {
            if speed.latencyP95Ms <= interactiveLatencyBudgetMs(newTokens: speed.newTokens) {
                return "decode ≥ 20 tokens/s on this CPU: suitable for interactive use (chat, autocomplete)"
            }
            let p95 = String(format: "%.1f", speed.latencyP95Ms / 1000)
            return "decode ≥ 20 tokens/s on this CPU but p95 latency \(p95) s: "
                + "suitable for batch or background jobs; interactive use may stall"
        }
        let rate = decode.isFinite ? String(format: "%.1f", decode) : "?"
        if decode >= batchDecodeTokensPerSecond {
            return "decode \(rate) tokens/s on this CPU: suitable for batch or background jobs; interactive use feels slow"
        }
        return "decode \(rate) tokens/s: too slow for interactive use on this CPU; use a GPU or a smaller/quantized model"
    }

    private static func memorySentence(_ speed: SpeedMeasurement, parameters: Int) -> String? {
        let measured = speed.peakResidentBytes > 0
        let bytes = measured ? speed.peakResidentBytes : parameters * estimatedBytesPerParameter
        let note = measured ? "" : " (estimated at 4 bytes/parameter)"
        if bytes > largeMemoryBytes { return "needs > 8 GiB RAM: desktop/server class" + note }
        if bytes > 0 && bytes < smallMemoryBytes { return "fits phones / small edge devices by memory" + note }
        return nil
    }
}
