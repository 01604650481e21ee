import DistillModels
import Foundation

// `report.html`: one self-contained document (inline CSS and SVG, no script, nothing fetched) that
// shows an `EvalReport`: the comparison table, quality-vs-size and quality-vs-latency scatter
// plots, the loss curves with phase markers and the attention heatmaps. Each part appears only when
// its data exists.

extension EvalReport {
    public func html() -> String { ReportHTML(report: self).document() }

    /// The quality metric the scatter plots show: "accuracy" when any model has it, else the first
    /// of macro_f1, bleu, rougeL that any model has.
    var chartMetric: String? {
        ["accuracy", "macro_f1", "bleu", "rougeL"].first { key in models.contains { $0.metrics[key] != nil } }
    }
}

/// Renders one report; its helper types are nested so that their short names stay private to it.
struct ReportHTML {
    let report: EvalReport
    private var models: [ModelEvaluation] { report.models }
    private var attention: [AttentionMap] { report.attention }
    private var training: TrainingCurves? { report.training }

    func document() -> String {
        let (title, task, notes) = (report.title, report.task, report.notes)
        var header = "<h1>\(HTML.escape(title))</h1>\n"
        if let task { header += "<p class=\"meta\">Task: <strong>\(HTML.escape(task))</strong></p>\n" }
        if !notes.isEmpty {
            header += "<ul class=\"notes\">" + notes.map { "<li>\(HTML.escape($0))</li>" }.joined() + "</ul>\n"
        }
        let sections: [(String, String?)] = [
            ("Models", comparisonTable()),
            ("Quality, size and speed", scatterCharts()),
            ("Training", lossChart()),
            ("Attention", attentionMaps()),
        ]
        let body: String = sections.compactMap { title, content -> String? in
            content.map { "<section>\n<h2>\(HTML.escape(title))</h2>\n\($0)\n</section>\n" }
        }.joined()
        return """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(HTML.escape(title))</title>
        <style>\(HTML.style)</style>
        </head>
        <body>
        \(header)\(body)</body>
        </html>

        """
    }

    // MARK: Comparison table

    private func comparisonTable() -> String? {
        guard !models.isEmpty else { return nil }
        let metricKeys = Set(models.flatMap { $0.metrics.keys }).sorted()
        let guidance = models.map { m in m.guidance ?? m.speed.map { DeviceGuidance.recommend($0, parameters: m.parameters) } }
        // Each column: header, CSS class of its cells ("num": right-aligned), cell text per model (nil → "—").
        typealias Column = (header: String, cssClass: String?, cell: (Int, ModelEvaluation) -> String?)
        var columns: [Column] = [
            ("Model", nil, { _, m in m.name }),
            ("Role", nil, { _, m in m.role.rawValue }),
            ("Parameters", "num", { _, m in Fmt.count(m.parameters) }),
            ("Disk", "num", { _, m in Fmt.bytes(m.diskBytes) }),
        ]
        columns += metricKeys.map { key -> Column in
            (key.replacingOccurrences(of: "_", with: " "), "num", { _, m in m.metrics[key].map { MetricFormat.format(key, $0) } })
        }
        if models.contains(where: { $0.agreement != nil }) {
            columns += [
                ("Top-1 agreement", "num", { _, m in m.agreement.map { Fmt.percent($0.top1) } }),
                ("Mean KL (nats)", "num", { _, m in m.agreement.map { Fmt.fixed($0.meanKl, 3) } }),
                ("Answer agreement", "num", { _, m in m.agreement?.answerAgreement.map { Fmt.percent($0) } }),
            ]
        }
        if models.contains(where: { $0.speed != nil }) {
            columns += [
                ("TTFT (ms)", "num", { _, m in m.speed.map { Fmt.fixed($0.timeToFirstTokenMs, 1) } }),
                ("Prompt tok/s", "num", { _, m in m.speed.map { Fmt.fixed($0.promptTokensPerSecond, 1) } }),
                ("Decode tok/s", "num", { _, m in m.speed.map { Fmt.fixed($0.decodeTokensPerSecond, 1) } }),
                ("p50 latency (ms)", "num", { _, m in m.speed.map { Fmt.fixed($0.latencyP50Ms, 1) } }),
                ("p95 latency (ms)", "num", { _, m in m.speed.map { Fmt.fixed($0.latencyP95Ms, 1) } }),
                ("Peak RSS (MB)", "num", { _, m in m.speed.map { Fmt.fixed(Double($0.peakResidentBytes) / 1_048_576, 1) } }),
            ]
        }
        if guidance.contains(where: { $0 != nil }) {
            columns.append(("Guidance", "wide", { i, _ in guidance[i] }))
        }
        let head: String = columns.map { "<th>\(HTML.escape($0.header))</th>" }.joined()
        let rows: String = models.enumerated().map { i, m -> String in
            let cells = columns.map { column -> String in
                let cls: String = column.cssClass.map { " class=\"\($0)\"" } ?? ""
                return "<td\(cls)>\(HTML.escape(column.cell(i, m) ?? Fmt.dash))</td>"
            }.joined()
            return "<tr class=\"\(m.role.rawValue)\" title=\"\(HTML.escape(m.path))\">\(cells)</tr>"
        }.joined(separator: "\n")
        return "<div class=\"table-wrap\"><table>\n<thead><tr>\(head)</tr></thead>\n<tbody>\n\(rows)\n</tbody></table></div>"
    }

    // MARK: Scatter plots

    private func scatterCharts() -> String? {
        guard let metric = report.chartMetric else { return nil }
        let charts = [
            scatterChart(metric: metric, xLabel: "parameters (log scale)", title: "parameters", logX: true) {
                $0.parameters > 0 ? Double($0.parameters) : nil
            },
            scatterChart(metric: metric, xLabel: "latency p50 (ms)", title: "latency (p50)", logX: false) {
                $0.speed?.latencyP50Ms
            },
        ].compactMap { $0 }
        return charts.isEmpty ? nil : "<div class=\"charts\">\n" + charts.joined(separator: "\n") + "\n</div>"
    }

    private func scatterChart(metric: String, xLabel: String, title: String, logX: Bool,
                              x: (ModelEvaluation) -> Double?) -> String? {
        let points = models.compactMap { m -> (model: ModelEvaluation, x: Double, y: Double)? in
            guard let xv = x(m), let yv = m.metrics[metric], xv.isFinite, yv.isFinite else { return nil }
            return (m, xv, yv)
        }
        guard !points.isEmpty else { return nil }
        let xs = points.map(\.x), ys = points.map(\.y)
        let plot = SVGPlot(
            x: logX ? .log(xs, label: xLabel, format: { Fmt.count(Int($0.rounded()), trimmed: true) })
                    : .linear(xs, label: xLabel, includeZero: true),
            y: .linear(ys, label: metric, percent: MetricFormat.isPercent(metric)))
        let marks = points.map { p -> String in
            let (cx, cy) = (plot.px(p.x), plot.py(p.y))
            let leftSide = cx > plot.width * 0.7
            let tx = leftSide ? cx - 8 : cx + 8
            let tooltip = "\(p.model.name): \(MetricFormat.format(metric, p.y))"
            return "<circle cx=\"\(Fmt.coord(cx))\" cy=\"\(Fmt.coord(cy))\" r=\"5\" class=\"pt \(p.model.role.rawValue)\">"
                + "<title>\(HTML.escape(tooltip))</title></circle>"
                + "<text x=\"\(Fmt.coord(tx))\" y=\"\(Fmt.coord(cy - 6))\" text-anchor=\"\(leftSide ? "end" : "start")\" "
                + "class=\"pt-label\">\(HTML.escape(p.model.name))</text>"
        }.joined(separator: "\n")
        let caption = "\(metric == "accuracy" ? "Accuracy" : metric) vs \(title)"
        return HTML.figure(caption: caption, svg: plot.svg(label: caption, content: marks))
    }

    // MARK: Loss curves

    private func lossChart() -> String? {
        guard let training, !(training.train.isEmpty && training.validation.isEmpty) else { return nil }
        let points = training.train + training.validation
        let plot = SVGPlot(
            width: 900, height: 380,
            x: .linear(points.map { Double($0.step) } + training.phases.map { Double($0.startStep) }, label: "step", includeZero: true),
            y: .linear(points.map(\.value).filter(\.isFinite), label: "loss"))
        func polyline(_ series: [TrainingCurves.Point], cls: String) -> String {
            let coords: [String] = series.filter { $0.value.isFinite }
                .map { "\(Fmt.coord(plot.px(Double($0.step)))),\(Fmt.coord(plot.py($0.value)))" }
            return "<polyline class=\"\(cls)\" points=\"\(coords.joined(separator: " "))\"/>"
        }
        var content = training.phases.map { phase -> String in
            let px = plot.px(Double(phase.startStep)), x = Fmt.coord(px)
            return "<line class=\"phase\" x1=\"\(x)\" x2=\"\(x)\" y1=\"\(Fmt.coord(plot.top))\" y2=\"\(Fmt.coord(plot.bottomY))\"/>"
                + "<text class=\"phase-label\" x=\"\(Fmt.coord(px + 4))\" "
                + "y=\"\(Fmt.coord(plot.top + 12))\">\(HTML.escape(phase.name))</text>"
        }
        var legend: [(cls: String, text: String)] = []
        if !training.train.isEmpty {
            content.append(polyline(training.train, cls: "series train"))
            legend.append(("train", "train"))
        }
        if !training.validation.isEmpty {
            content.append(polyline(training.validation, cls: "series validation"))
            content += training.validation.filter { $0.value.isFinite }.map {
                "<circle class=\"marker validation\" cx=\"\(Fmt.coord(plot.px(Double($0.step))))\" "
                    + "cy=\"\(Fmt.coord(plot.py($0.value)))\" r=\"3\"><title>step \($0.step): \(Fmt.fixed($0.value, 4))</title></circle>"
            }
            legend.append(("validation", "validation"))
        }
        content.append(plot.legend(legend))
        return HTML.figure(caption: "Training and validation loss",
                           svg: plot.svg(label: "Training and validation loss", content: content.joined(separator: "\n")))
    }

    // MARK: Attention heatmaps

    private func attentionMaps() -> String? {
        guard !attention.isEmpty else { return nil }
        return "<div class=\"heatmaps\">\n" + attention.map(Self.heatmap).joined(separator: "\n") + "\n</div>"
    }

    private static func heatmap(_ map: AttentionMap) -> String {
        let n = map.tokens.count
        let cell = min(28, max(8, 360 / Double(max(n, 1))))
        let margin = 90.0
        let size = margin + Double(n) * cell + 10
        let fontSize = Fmt.coord(min(11, max(7, cell * 0.8)))
        let labels = map.tokens.map { HTML.escape(HTML.tokenLabel($0)) }
        var parts: [String] = []
        for (i, label) in labels.enumerated() {
            let centre = margin + (Double(i) + 0.5) * cell
            parts.append("<text class=\"tok\" x=\"\(Fmt.coord(margin - 4))\" y=\"\(Fmt.coord(centre))\" "
                + "text-anchor=\"end\" dominant-baseline=\"middle\" font-size=\"\(fontSize)\">\(label)</text>")
            parts.append("<text class=\"tok\" x=\"\(Fmt.coord(centre))\" y=\"\(Fmt.coord(margin - 4))\" "
                + "transform=\"rotate(-60 \(Fmt.coord(centre)) \(Fmt.coord(margin - 4)))\" dominant-baseline=\"middle\" "
                + "font-size=\"\(fontSize)\">\(label)</text>")
        }
        for (i, row) in map.weights.prefix(n).enumerated() {
            for (j, w) in row.prefix(n).enumerated() {
                parts.append("<rect x=\"\(Fmt.coord(margin + Double(j) * cell))\" y=\"\(Fmt.coord(margin + Double(i) * cell))\" "
                    + "width=\"\(Fmt.coord(cell))\" height=\"\(Fmt.coord(cell))\" fill=\"\(HTML.heatColour(w))\">"
                    + "<title>\(labels[i]) → \(labels[j]): \(Fmt.fixed(w, 3))</title></rect>")
            }
        }
        let caption = "\(map.model) — layer \(map.layer), head \(map.head)"
        let svg = "<svg class=\"heatmap\" viewBox=\"0 0 \(Fmt.coord(size)) \(Fmt.coord(size))\" width=\"\(Fmt.coord(size))\" "
            + "height=\"\(Fmt.coord(size))\" role=\"img\" aria-label=\"\(HTML.escape(caption))\">\n"
            + parts.joined(separator: "\n") + "\n</svg>"
        return HTML.figure(caption: caption, svg: svg, captionBelow: true)
    }
}

extension ReportHTML {
    // MARK: - Formatting

    /// How each task metric is shown in the table and on axes.
    enum MetricFormat {
        /// Metrics stored as fractions 0…1 and shown as percentages.
        static let percentKeys: Set<String> = ["accuracy", "template_compliance", "reasoning_success", "macro_f1",
                                               "rouge1", "rouge2", "rougeL"]

        static func isPercent(_ key: String) -> Bool { percentKeys.contains(key) }

        static func format(_ key: String, _ value: Double) -> String {
            if isPercent(key) { return Fmt.percent(value) }
            switch key {
            case "bleu", "perplexity": return Fmt.fixed(value, 2)
            default: return Fmt.fixed(value, 3)
            }
        }
    }

    /// Deterministic number formatting (no locale).
    enum Fmt {
        static let dash = "—"

        static func fixed(_ x: Double, _ digits: Int) -> String {
            guard x.isFinite else { return x.isNaN ? dash : (x > 0 ? "∞" : "−∞") }
            return String(format: "%.\(digits)f", x)
        }

        static func percent(_ fraction: Double) -> String {
            fraction.isFinite ? fixed(fraction * 100, 1) + "%" : fixed(fraction, 1)
        }

        /// 821800 → "821.8k", 135000000 → "135.0M" ("135M" when trimmed, for axis ticks).
        static func count(_ n: Int, trimmed: Bool = false) -> String {
            scaled(Double(n), base: 1000, units: ["", "k", "M", "B", "T"], separator: "", trimmed: trimmed)
        }

        /// Bytes with binary units: "512 B", "3.3 MB", "1.2 GB".
        static func bytes(_ n: Int) -> String {
            scaled(Double(n), base: 1024, units: ["B", "KB", "MB", "GB", "TB"], separator: " ", trimmed: false)
        }

        /// SVG coordinate.
        static func coord(_ x: Double) -> String { fixed(x, 1) }

        /// The largest unit in which the value (rounded to one decimal) is at least 1; plain integer
        /// below the first step.
        private static func scaled(_ v: Double, base: Double, units: [String], separator: String, trimmed: Bool) -> String {
            var index = 0, scale = 1.0
            while index + 1 < units.count && abs(v) >= scale * base * 0.99995 {
                index += 1
                scale *= base
            }
            if index == 0 { return fixed(v, 0) + separator + units[0] }
            var text = fixed(v / scale, 1)
            if trimmed && text.hasSuffix(".0") { text.removeLast(2) }
            return text + separator + units[index]
        }
    }

    // MARK: - HTML and SVG helpers

    enum HTML {
        /// Text for HTML: & < > " ' escaped (markupsafe's rules).
        static func escape(_ s: String) -> String { htmlEscape(s) }

        /// A token as an axis label (not yet escaped): line breaks and tabs made visible, at most 10
        /// characters.
        static func tokenLabel(_ token: String, limit: Int = 10) -> String {
            let visible = token.replacingOccurrences(of: "\n", with: "↵").replacingOccurrences(of: "\t", with: "⇥")
            return visible.count > limit ? String(visible.prefix(limit - 1)) + "…" : visible
        }

        /// White (0) → dark blue (1), linear in the weight clamped to 0…1.
        static func heatColour(_ weight: Double) -> String {
            let t = weight.isFinite ? min(max(weight, 0), 1) : 0
            let (r, g, b) = (255 + (8 - 255) * t, 255 + (48 - 255) * t, 255 + (107 - 255) * t)
            return String(format: "#%02x%02x%02x", Int(r.rounded()), Int(g.rounded()), Int(b.rounded()))
        }

        static func figure(caption: String, svg: String, captionBelow: Bool = false) -> String {
            let cap = "<figcaption>\(escape(caption))</figcaption>"
            return "<figure>" + (captionBelow ? "\n\(svg)\n\(cap)" : "\(cap)\n\(svg)") + "</figure>"
        }

        static let style = """
        body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
               margin: 24px auto; max-width: 1600px; padding: 0 16px; color: #1f2328; line-height: 1.45; }
        h1 { font-size: 1.6em; margin-bottom: 4px; }
        h2 { font-size: 1.2em; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; margin-top: 28px; }
        .meta { color: #57606a; margin: 0 0 8px; }
        .notes { color: #57606a; font-size: 0.9em; padding-left: 20px; }
        .table-wrap { overflow-x: auto; }
        table { border-collapse: collapse; font-size: 12px; }
        th, td { border: 1px solid #d0d7de; padding: 3px 6px; vertical-align: top; }
        th { background: #f0f3f6; text-align: left; }
        tbody tr:nth-child(even) { background: #f6f8fa; }
        tr.teacher td:first-child { font-weight: 600; }
        td.wide { min-width: 16em; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
        .charts, .heatmaps { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
        figure { margin: 0; }
        figcaption { font-weight: 600; margin: 4px 0; }
        svg { font-family: inherit; font-size: 11px; }
        .grid { stroke: #eaeef2; }
        .axis { stroke: #57606a; }
        .tick { fill: #57606a; }
        .axis-label { fill: #1f2328; font-size: 12px; }
        .pt { stroke: #fff; stroke-width: 1.5; }
        .pt.teacher { fill: #d1495b; } .pt.student { fill: #0969da; } .pt.model { fill: #6e7781; }
        .pt-label { fill: #1f2328; }
        .series { fill: none; stroke-width: 1.8; }
        .series.train, .swatch.train { stroke: #0969da; }
        .series.validation, .swatch.validation { stroke: #d97706; }
        .marker.validation { fill: #d97706; }
        .swatch { stroke-width: 3; }
        .phase { stroke: #8c959f; stroke-dasharray: 5 4; }
        .phase-label { fill: #57606a; }
        .tok { fill: #1f2328; }
        """
    }

    /// One numeric axis: its range, ticks and tick labels.
    struct Axis {
        var label: String
        var lo: Double
        var hi: Double
        var isLog: Bool
        var ticks: [Double]
        var format: (Double) -> String

        /// Position of `v` along the axis, 0 at `lo` and 1 at `hi`.
        func fraction(_ v: Double) -> Double {
            isLog ? (log10(v) - log10(lo)) / (log10(hi) - log10(lo)) : (v - lo) / (hi - lo)
        }

        /// A linear axis over `values` (padded a little, widened to round ticks). Percent axes show
        /// fractions as percentages and stay within 0…1 when the data does.
        static func linear(_ values: [Double], label: String, includeZero: Bool = false, percent: Bool = false) -> Axis {
            var lo = values.min() ?? 0, hi = values.max() ?? 1
            if includeZero { lo = min(lo, 0); hi = max(hi, 0) }
            if hi - lo <= 1e-12 * max(1, abs(hi)) {
                let pad = lo == 0 ? (percent ? 0.1 : 1) : abs(lo) * 0.1
                lo -= pad; hi += pad
            } else {
                let pad = (hi - lo) * 0.04
                if !(includeZero && lo == 0) { lo -= pad }
                hi += pad
            }
            let step = niceStep((hi - lo) / 5)
            let dataLo = values.min() ?? 0, dataHi = values.max() ?? 1
            lo = (lo / step).rounded(.down) * step
            hi = (hi / step).rounded(.up) * step
            if percent { lo = max(lo, min(0, dataLo)); hi = min(hi, max(1, dataHi)) }
            if dataLo >= 0 { lo = max(lo, 0) }   // no negative range for non-negative data (losses)
            let count = Int(((hi - lo) / step).rounded())
            let ticks = (0...max(count, 1)).map { lo + Double($0) * step }.filter { $0 <= hi + step * 1e-6 }
            let digits = max(0, Int((-log10(step * (percent ? 100 : 1))).rounded(.up)))
            let format: (Double) -> String = percent
                ? { Fmt.fixed($0 * 100, digits) + "%" }
                : { Fmt.fixed(abs($0) < step * 1e-6 ? 0 : $0, digits) }
            return Axis(label: label, lo: lo, hi: hi, isLog: false, ticks: ticks, format: format)
        }

        /// A log₁₀ axis over whole decades around the (positive) values; 2× and 5× ticks when it
        /// spans at most two decades.
        static func log(_ values: [Double], label: String, format: @escaping (Double) -> String) -> Axis {
            let positive = values.filter { $0 > 0 }
            let a = floor(log10(positive.min() ?? 1) - 0.05), b = ceil(log10(positive.max() ?? 10) + 0.05)
            let multiples: [Double] = b - a <= 2 ? [1, 2, 5] : [1]
            let ticks = stride(from: a, through: b, by: 1).flatMap { e in multiples.map { $0 * pow(10, e) } }
                .filter { $0 <= pow(10, b) * (1 + 1e-9) }
            return Axis(label: label, lo: pow(10, a), hi: pow(10, b), isLog: true, ticks: ticks, format: format)
        }

        /// 1, 2 or 5 times a power of ten, near `raw`.
        static func niceStep(_ raw: Double) -> Double {
            guard raw > 0, raw.isFinite else { return 1 }
            let magnitude = pow(10, floor(log10(raw)))
            let r = raw / magnitude
            return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * magnitude
        }
    }

    /// A 2-D plot area inside an SVG: scales data to pixels and draws grid, ticks and axis labels.
    struct SVGPlot {
        var width = 560.0
        var height = 340.0
        var left = 64.0, right = 24.0, top = 16.0, bottom = 48.0
        var x: Axis
        var y: Axis

        var bottomY: Double { height - bottom }
        var rightX: Double { width - right }

        func px(_ v: Double) -> Double { left + x.fraction(v) * (rightX - left) }
        func py(_ v: Double) -> Double { bottomY - y.fraction(v) * (bottomY - top) }

        func svg(label: String, content: String) -> String {
            "<svg class=\"plot\" viewBox=\"0 0 \(Fmt.coord(width)) \(Fmt.coord(height))\" width=\"\(Fmt.coord(width))\" "
                + "height=\"\(Fmt.coord(height))\" role=\"img\" aria-label=\"\(HTML.escape(label))\">\n"
                + axes() + "\n" + content + "\n</svg>"
        }

        /// Coloured line swatches with labels in the top-right corner: (CSS class, text).
        func legend(_ entries: [(cls: String, text: String)]) -> String {
            entries.enumerated().map { i, entry -> String in
                let ly = top + 14 + Double(i) * 18, lx = rightX - 110
                return "<line class=\"swatch \(entry.cls)\" x1=\"\(Fmt.coord(lx))\" x2=\"\(Fmt.coord(lx + 22))\" "
                    + "y1=\"\(Fmt.coord(ly))\" y2=\"\(Fmt.coord(ly))\"/>"
                    + "<text x=\"\(Fmt.coord(lx + 28))\" y=\"\(Fmt.coord(ly + 4))\">\(HTML.escape(entry.text))</text>"
            }.joined(separator: "\n")
        }

        private func axes() -> String {
            var parts: [String] = []
            for t in x.ticks {
                let p = Fmt.coord(px(t))
                parts.append("<line class=\"grid\" x1=\"\(p)\" x2=\"\(p)\" y1=\"\(Fmt.coord(top))\" y2=\"\(Fmt.coord(bottomY))\"/>")
                parts.append("<text class=\"tick\" x=\"\(p)\" y=\"\(Fmt.coord(bottomY + 16))\" text-anchor=\"middle\">"
                    + "\(HTML.escape(x.format(t)))</text>")
            }
            for t in y.ticks {
                let p = Fmt.coord(py(t))
                parts.append("<line class=\"grid\" x1=\"\(Fmt.coord(left))\" x2=\"\(Fmt.coord(rightX))\" y1=\"\(p)\" y2=\"\(p)\"/>")
                parts.append("<text class=\"tick\" x=\"\(Fmt.coord(left - 6))\" y=\"\(p)\" text-anchor=\"end\" "
                    + "dominant-baseline=\"middle\">\(HTML.escape(y.format(t)))</text>")
            }
            parts.append("<polyline class=\"axis\" fill=\"none\" points=\"\(Fmt.coord(left)),\(Fmt.coord(top)) "
                + "\(Fmt.coord(left)),\(Fmt.coord(bottomY)) \(Fmt.coord(rightX)),\(Fmt.coord(bottomY))\"/>")
            let midX = Fmt.coord((left + rightX) / 2), midY = Fmt.coord((top + bottomY) / 2)
            parts.append("<text class=\"axis-label\" x=\"\(midX)\" y=\"\(Fmt.coord(height - 8))\" text-anchor=\"middle\">"
                + "\(HTML.escape(x.label))</text>")
            parts.append("<text class=\"axis-label\" x=\"14\" y=\"\(midY)\" text-anchor=\"middle\" "
                + "transform=\"rotate(-90 14 \(midY))\">\(HTML.escape(y.label))</text>")
            return parts.joined(separator: "\n")
        }
    }
}
