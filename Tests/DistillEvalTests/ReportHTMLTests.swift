@testable import DistillEval
import Foundation
import XCTest

final class ReportHTMLTests: XCTestCase {
    static func speed(decode: Double, p50: Double = 400, p95: Double = 600, newTokens: Int = 16,
                      peak: Int = 512 << 20) -> SpeedMeasurement {
        SpeedMeasurement(threads: 4, batch: 1, promptTokens: 64, newTokens: newTokens, timeToFirstTokenMs: 35,
                         promptTokensPerSecond: 900, decodeTokensPerSecond: decode, latencyP50Ms: p50,
                         latencyP95Ms: p95, peakResidentBytes: peak)
    }

    static let tokens = ["<think>", "a&b", "x", "averyveryverylongtoken"]

    static func attentionMap(_ model: String) -> AttentionMap {
        let n = tokens.count
        let weights = (0..<n).map { i in (0..<n).map { j in j <= i ? 1 / Double(i + 1) : 0 } }
        return AttentionMap(model: model, layer: 2, head: 1, tokens: tokens, weights: weights)
    }

    static let curves = TrainingCurves(
        train: (1...40).map { .init(step: $0, value: 3 / Double($0).squareRoot()) },
        validation: stride(from: 10, through: 40, by: 10).map { .init(step: $0, value: 3.2 / Double($0).squareRoot()) },
        phases: [.init(name: "warmup-sft", startStep: 1), .init(name: "kd-logits", startStep: 21)])

    static let report = EvalReport(
        title: "GSM8K <distill> run",
        task: "gsm8k",
        models: [
            ModelEvaluation(name: "SmolLM2-135M-teacher", path: "/models/teacher", role: .teacher, parameters: 135_000_000,
                            diskBytes: 270 << 20, metrics: ["accuracy": 0.9634, "template_compliance": 1.0, "bleu": 41.234],
                            speed: speed(decode: 25, p50: 700, p95: 900)),
            ModelEvaluation(name: "tiny-student", path: "/runs/a/student", role: .student, parameters: 821_800,
                            diskBytes: 3_300_000, metrics: ["accuracy": 0.71, "perplexity": 5.4321],
                            agreement: TeacherAgreement(top1: 0.625, meanKl: 0.4321, positions: 1000, answerAgreement: 0.7),
                            speed: speed(decode: 180, p50: 90, p95: 120), guidance: "runs anywhere"),
            ModelEvaluation(name: "small-student", path: "/runs/b/student", role: .student, parameters: 12_500_000,
                            diskBytes: 50 << 20, metrics: ["accuracy": 0.82],
                            agreement: TeacherAgreement(top1: 0.7, meanKl: 0.3, positions: 1000),
                            speed: speed(decode: 60, p50: 250, p95: 300)),
        ],
        training: curves,
        attention: [attentionMap("teacher"), attentionMap("student")],
        notes: ["distill eval --teacher t --student s"])

    static func count(_ needle: String, in haystack: String) -> Int {
        haystack.components(separatedBy: needle).count - 1
    }

    func testFullReport() {
        let html = Self.report.html()
        XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"))
        for name in ["SmolLM2-135M-teacher", "tiny-student", "small-student"] {
            XCTAssertTrue(html.contains(name), name)
        }
        // Table formatting.
        for text in ["96.3%", "71.0%", "100.0%", "41.23", "5.43", "135.0M", "821.8k", "12.5M", "270.0 MB", "62.5%", "0.432",
                     "runs anywhere", "GSM8K &lt;distill&gt; run"] {
            XCTAssertTrue(html.contains(text), text)
        }
        // Rows rendered as plain strings (an unannotated closure once built GRDB `SQL` values here).
        XCTAssertEqual(Self.count("<tr class=\"student\"", in: html), 2)
        XCTAssertFalse(html.contains("SQL("))
        // Teacher has no agreement, no perplexity: dashes.
        XCTAssertTrue(html.contains("<td class=\"num\">—</td>"))
        // Guidance computed from speed when not given.
        XCTAssertTrue(html.contains("suitable for interactive use"))
        // Two scatter plots, one loss chart, two heatmaps.
        XCTAssertEqual(Self.count("<svg", in: html), 5)
        XCTAssertTrue(html.contains("Accuracy vs parameters"))
        XCTAssertTrue(html.contains("Accuracy vs latency (p50)"))
        XCTAssertTrue(html.contains("Training and validation loss"))
        XCTAssertTrue(html.contains("teacher — layer 2, head 1"))
        XCTAssertTrue(html.contains("student — layer 2, head 1"))
        // Phase markers.
        XCTAssertTrue(html.contains(">warmup-sft</text>"))
        XCTAssertTrue(html.contains(">kd-logits</text>"))
        XCTAssertEqual(Self.count("class=\"phase\"", in: html), 2)
        // Tokens escaped and truncated; no raw token markup.
        XCTAssertTrue(html.contains("&lt;think&gt;"))
        XCTAssertTrue(html.contains("a&amp;b"))
        XCTAssertFalse(html.contains("<think>"))
        XCTAssertFalse(html.contains("a&b"))
        XCTAssertFalse(html.contains("<distill>"))
        XCTAssertTrue(html.contains("averyvery…"))
        XCTAssertFalse(html.contains("averyveryverylongtoken"))
        // Self-contained.
        XCTAssertFalse(html.contains("http://"))
        XCTAssertFalse(html.contains("https://"))
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.contains("<link"))
        XCTAssertFalse(html.contains("<img"))
    }

    func testCurvesOnly() {
        let html = EvalReport(title: "run", training: Self.curves).html()
        XCTAssertEqual(Self.count("<svg", in: html), 1)
        XCTAssertTrue(html.contains("Training and validation loss"))
        XCTAssertFalse(html.contains("<table"))
        XCTAssertFalse(html.contains("Attention"))
    }

    func testEmptyReportHasNoSections() {
        let html = EvalReport(title: "empty").html()
        XCTAssertEqual(Self.count("<svg", in: html), 0)
        XCTAssertEqual(Self.count("<section", in: html), 0)
    }

    func testScatterFallsBackToOtherMetricAndSkipsMissingLatency() {
        let models = [
            ModelEvaluation(name: "m1", path: "p", role: .model, parameters: 1000, diskBytes: 10, metrics: ["bleu": 20]),
            ModelEvaluation(name: "m2", path: "p", role: .model, parameters: 2000, diskBytes: 10, metrics: ["rougeL": 0.5]),
        ]
        let report = EvalReport(title: "t", models: models)
        XCTAssertEqual(report.chartMetric, "bleu")
        let html = report.html()
        // No speed → no latency chart; one point (m1) on the parameters chart.
        XCTAssertEqual(Self.count("<svg", in: html), 1)
        XCTAssertTrue(html.contains("bleu vs parameters"))
        XCTAssertEqual(Self.count("<circle", in: html), 1)
        XCTAssertNil(EvalReport(title: "t", models: [ModelEvaluation(name: "m", path: "p", role: .model, parameters: 1,
                                                                    diskBytes: 1, metrics: ["perplexity": 3])]).chartMetric)
    }

    func testEscapingAndFormatting() {
        XCTAssertEqual(ReportHTML.HTML.escape(#"<a href="x">&'"#), "&lt;a href=&#34;x&#34;&gt;&amp;&#39;")
        XCTAssertEqual(ReportHTML.Fmt.count(821_800), "821.8k")
        XCTAssertEqual(ReportHTML.Fmt.count(135_000_000), "135.0M")
        XCTAssertEqual(ReportHTML.Fmt.count(999_990), "1.0M")
        XCTAssertEqual(ReportHTML.Fmt.count(512), "512")
        XCTAssertEqual(ReportHTML.Fmt.count(100_000, trimmed: true), "100k")
        XCTAssertEqual(ReportHTML.Fmt.bytes(512), "512 B")
        XCTAssertEqual(ReportHTML.Fmt.bytes(3 << 20), "3.0 MB")
        XCTAssertEqual(ReportHTML.MetricFormat.format("accuracy", 0.9634), "96.3%")
        XCTAssertEqual(ReportHTML.MetricFormat.format("bleu", 41.234), "41.23")
        XCTAssertEqual(ReportHTML.MetricFormat.format("perplexity", .nan), "—")
        XCTAssertEqual(ReportHTML.HTML.heatColour(0), "#ffffff")
        XCTAssertEqual(ReportHTML.HTML.heatColour(1), "#08306b")
        let axis = ReportHTML.Axis.linear([0.71, 0.9634], label: "accuracy", percent: true)
        XCTAssertLessThanOrEqual(axis.lo, 0.71)
        XCTAssertGreaterThanOrEqual(axis.hi, 0.9634)
        XCTAssertLessThanOrEqual(axis.hi, 1)
        let log = ReportHTML.Axis.log([821_800, 135_000_000], label: "p", format: { "\($0)" })
        XCTAssertEqual(log.lo, 1e5, accuracy: 1e-6)
        XCTAssertEqual(log.hi, 1e9, accuracy: 1e-3)
    }

    func testDeviceGuidanceThresholds() {
        let interactive = "suitable for interactive use"
        let batch = "suitable for batch or background jobs"
        let slow = "too slow for interactive use"
        func guidance(_ s: SpeedMeasurement, parameters: Int = 1_000_000) -> String {
            DeviceGuidance.recommend(s, parameters: parameters)
        }
        XCTAssertTrue(guidance(Self.speed(decode: 20)).contains(interactive))
        XCTAssertTrue(guidance(Self.speed(decode: 19.9)).contains(batch))
        XCTAssertTrue(guidance(Self.speed(decode: 19.9)).contains("interactive use feels slow"))
        XCTAssertTrue(guidance(Self.speed(decode: 5)).contains(batch))
        XCTAssertTrue(guidance(Self.speed(decode: 4.99)).contains(slow))
        XCTAssertTrue(guidance(Self.speed(decode: 4.99)).contains("smaller/quantized model"))
        XCTAssertTrue(guidance(Self.speed(decode: .nan)).contains(slow))
        // Fast decode but a slow p95 tail: budget is 1 s + 16 tokens / 20 tokens/s = 1.8 s.
        XCTAssertTrue(guidance(Self.speed(decode: 50, p95: 1800)).contains(interactive))
        XCTAssertTrue(guidance(Self.speed(decode: 50, p95: 1801)).contains(batch))
        // Memory at the extremes only.
        let gib = 1 << 30
        XCTAssertTrue(guidance(Self.speed(decode: 30, peak: 8 * gib + 1)).contains("needs > 8 GiB RAM: desktop/server class"))
        XCTAssertFalse(guidance(Self.speed(decode: 30, peak: 8 * gib)).contains("GiB"))
        XCTAssertFalse(guidance(Self.speed(decode: 30, peak: gib)).contains("phones"))
        XCTAssertTrue(guidance(Self.speed(decode: 30, peak: gib - 1)).contains("fits phones / small edge devices by memory"))
        // Unmeasured memory: estimated from parameters at 4 bytes each.
        XCTAssertTrue(guidance(Self.speed(decode: 30, peak: 0), parameters: 3_000_000_000).contains("needs > 8 GiB RAM"))
        XCTAssertEqual(guidance(Self.speed(decode: 30, peak: 512 << 20)),
                       "decode ≥ 20 tokens/s on this CPU: suitable for interactive use (chat, autocomplete); "
                           + "fits phones / small edge devices by memory")
        // Deterministic.
        XCTAssertEqual(guidance(Self.speed(decode: 12.34)), guidance(Self.speed(decode: 12.34)))
    }

    /// Writes the sample report for `scripts/screenshot_report.sh` when REPORT_HTML_OUT is set.
    func testWriteSampleReportWhenAsked() throws {
        guard let path = ProcessInfo.processInfo.environment["REPORT_HTML_OUT"] else { return }
        try Self.report.html().write(toFile: path, atomically: true, encoding: .utf8)
    }
}
