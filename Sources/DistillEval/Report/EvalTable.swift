import Foundation

/// The comparison table as plain text (what `distill eval` prints).
public enum EvalTable {
    public static func render(_ r: EvalReport) -> String {
        let metricKeys = Array(Set(r.models.flatMap { $0.metrics.keys })).sorted()
        var header = ["model", "params", "disk"] + metricKeys
        let hasAgreement = r.models.contains { $0.agreement != nil }, hasSpeed = r.models.contains { $0.speed != nil }
        if hasAgreement { header += ["top-1 agree", "KL(t‖s)", "answer agree"] }
        if hasSpeed { header += ["TTFT ms", "prompt tok/s", "decode tok/s", "p50 ms", "p95 ms", "peak MB"] }
        var rows: [[String]] = [header]
        for m in r.models {
            var row = [m.name, count(m.parameters), bytes(m.diskBytes)]
            row += metricKeys.map { k in m.metrics[k].map { metric(k, $0) } ?? "—" }
            if hasAgreement {
                if let a = m.agreement {
                    row += [percent(a.top1), String(format: "%.4f", a.meanKl), a.answerAgreement.map(percent) ?? "—"]
                } else { row += ["—", "—", "—"] }
            }
            if hasSpeed {
                if let s = m.speed {
                    row += [String(format: "%.1f", s.timeToFirstTokenMs), String(format: "%.0f", s.promptTokensPerSecond),
                            String(format: "%.1f", s.decodeTokensPerSecond), String(format: "%.1f", s.latencyP50Ms),
                            String(format: "%.1f", s.latencyP95Ms), String(format: "%.1f", Double(s.peakResidentBytes) / 1_048_576)]
                } else { row += Array(repeating: "—", count: 6) }
            }
            rows.append(row)
        }
        let widths = header.indices.map { c in rows.map { $0[c].count }.max()! }
        var lines = rows.map { row in zip(row, widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }.joined(separator: "  ") }
        lines.insert(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "), at: 1)
        if let t = r.task { lines.insert("task: \(t)", at: 0) }
        for m in r.models { if let g = m.guidance { lines.append("\(m.name): \(g)") } }
        return lines.joined(separator: "\n")
    }

    /// Fractions as percentages, BLEU and perplexity as numbers.
    public static func metric(_ key: String, _ v: Double) -> String {
        switch key {
        case "bleu", "perplexity": return String(format: "%.2f", v)
        default: return percent(v)
        }
    }

    static func percent(_ v: Double) -> String { String(format: "%.1f%%", 100 * v) }

    static func count(_ n: Int) -> String {
        n >= 1_000_000 ? String(format: "%.1fM", Double(n) / 1e6) : n >= 1000 ? String(format: "%.1fk", Double(n) / 1e3) : "\(n)"
    }

    static func bytes(_ n: Int) -> String {
        n >= 1_048_576 ? String(format: "%.1f MB", Double(n) / 1_048_576) : String(format: "%.0f KB", Double(n) / 1024)
    }
}
