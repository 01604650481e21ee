/// Splits a template into text and tag tokens exactly as jinja2's lexer does with the settings
/// transformers uses (`trim_blocks=True`, `lstrip_blocks=True`, `keep_trailing_newline=False`):
///
/// - line endings `\r\n` and `\r` become `\n`, and one trailing newline of the template is dropped;
/// - `{%-`, `{{-`, `{#-` strip all whitespace before the tag, `-%}`, `-}}`, `-#}` all after it;
/// - `%}` and `#}` eat one newline right after them (trim_blocks) unless written `+%}`;
/// - spaces and tabs from the start of a line up to `{%` or `{#` are dropped (lstrip_blocks)
///   unless written `{%+`;
/// - `{# … #}` comments vanish, `{% raw %}…{% endraw %}` is text.
struct JinjaToken {
    enum Kind: Equatable {
        case text(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case op(String)
        case eof
    }

    var kind: Kind
    var pos: SourcePos
}

struct JinjaLexer {
    let src: [Unicode.Scalar]
    let file: String
    private var lineStarts: [Int] = [0]

    var trimBlocks = true
    var lstripBlocks = true

    init(source: String, file: String) {
        // Normalise newlines and drop one trailing newline (keep_trailing_newline=False).
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(source.unicodeScalars.count)
        var it = source.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = it.next()
        while let u = pending {
            pending = it.next()
            if u == "\r" {
                scalars.append("\n")
                if pending == "\n" { pending = it.next() }
            } else {
                scalars.append(u)
            }
        }
        if scalars.last == "\n" { scalars.removeLast() }
        self.src = scalars
        self.file = file
        for (i, u) in scalars.enumerated() where u == "\n" { lineStarts.append(i + 1) }
    }

    func position(_ offset: Int) -> SourcePos {
        // Binary search for the last line start <= offset.
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return SourcePos(line: lo + 1, column: offset - lineStarts[lo] + 1)
    }

    func error(_ message: String, at offset: Int) -> TemplateError {
        let p = position(offset)
        return TemplateError(.syntax, message, line: p.line, column: p.column, file: file)
    }

    private func at(_ i: Int, _ s: String) -> Bool {
        var j = i
        for u in s.unicodeScalars {
            guard j < src.count, src[j] == u else { return false }
            j += 1
        }
        return true
    }

    private func isSpace(_ i: Int) -> Bool { i < src.count && isPythonWhitespace(src[i]) }

    private func skipSpaces(_ i: Int) -> Int {
        var j = i
        while isSpace(j) { j += 1 }
        return j
    }

    /// Applies `{%-` / lstrip_blocks to the text in front of a tag.
    private func stripText(_ start: Int, _ end: Int, sign: Unicode.Scalar?, lstrip: Bool, lineStarting: Bool) -> (Int, Int) {
        var e = end
        if sign == "-" {
            while e > start && isPythonWhitespace(src[e - 1]) { e -= 1 }
        } else if sign != "+" && lstrip && lstripBlocks {
            var lpos = e
            while lpos > start && src[lpos - 1] != "\n" { lpos -= 1 }
            if lpos > start || lineStarting {
                var allSpace = lpos < e
                for k in lpos..<e where !isPythonWhitespace(src[k]) { allSpace = false; break }
                if allSpace { e = lpos }
            }
        }
        return (start, e)
    }

    func tokenize() throws -> [JinjaToken] {
        var tokens: [JinjaToken] = []
        var pos = 0
        var lineStarting = true
        let n = src.count

        func emitText(_ s: Int, _ e: Int) {
            if e > s { tokens.append(JinjaToken(kind: .text(String(scalars: src[s..<e])), pos: position(s))) }
        }

        while pos < n {
            // Find the next tag opener.
            var i = pos
            var opener: Unicode.Scalar? = nil
            while i + 1 < n {
                if src[i] == "{", src[i + 1] == "%" || src[i + 1] == "{" || src[i + 1] == "#" {
                    opener = src[i + 1]
                    break
                }
                i += 1
            }
            guard let kind = opener else {
                emitText(pos, n)
                break
            }
            var sign: Unicode.Scalar? = nil
            if i + 2 < n, src[i + 2] == "-" || src[i + 2] == "+" { sign = src[i + 2] }
            let afterOpen = i + 2 + (sign == nil ? 0 : 1)

            // {% raw %} … {% endraw %}
            if kind == "%", let rawEnd = matchRawBegin(afterOpen) {
                let (ts, te) = stripText(pos, i, sign: sign, lstrip: true, lineStarting: lineStarting)
                emitText(ts, te)
                // Find {%[-+]? endraw [-+]?%}
                var j = rawEnd
                var found = false
                while j + 1 < n {
                    if src[j] == "{" && src[j + 1] == "%" {
                        var k = j + 2
                        var esign: Unicode.Scalar? = nil
                        if k < n, src[k] == "-" || src[k] == "+" { esign = src[k]; k += 1 }
                        k = skipSpaces(k)
                        if at(k, "endraw") {
                            k = skipSpaces(k + 6)
                            var end: Int? = nil
                            if at(k, "+%}") { end = k + 3 }
                            else if at(k, "-%}") { end = skipSpaces(k + 3) }
                            else if at(k, "%}") { end = k + 2; if trimBlocks && k + 2 < n && src[k + 2] == "\n" { end = k + 3 } }
                            if let end {
                                let (ds, de) = stripText(rawEnd, j, sign: esign, lstrip: true, lineStarting: false)
                                emitText(ds, de)
                                lineStarting = end > 0 && src[end - 1] == "\n"
                                pos = end
                                found = true
                                break
                            }
                        }
                    }
                    j += 1
                }
                if !found { throw error("Missing end of raw directive", at: i) }
                continue
            }

            let (ts, te) = stripText(pos, i, sign: sign, lstrip: kind != "{", lineStarting: lineStarting)
            emitText(ts, te)

            if kind == "#" {
                // Comment: find the first `#}` (optionally `-#}` / `+#}`).
                var j = afterOpen
                var end: Int? = nil
                while j + 1 < n {
                    if src[j] == "+", at(j + 1, "#}") { end = j + 3; break }
                    if src[j] == "-", at(j + 1, "#}") { end = skipSpaces(j + 3); break }
                    if at(j, "#}") {
                        end = j + 2
                        if trimBlocks && j + 2 < n && src[j + 2] == "\n" { end = j + 3 }
                        break
                    }
                    j += 1
                }
                guard let e = end else { throw error("Missing end of comment tag", at: i) }
                lineStarting = src[e - 1] == "\n"
                pos = e
                continue
            }

            let isBlock = kind == "%"
            tokens.append(JinjaToken(kind: isBlock ? .blockBegin : .variableBegin, pos: position(i)))
            var p = afterOpen
            var balance: [Unicode.Scalar] = []
            var closed = false
            while p < n {
                if balance.isEmpty {
                    if isBlock {
                        if at(p, "+%}") {
                            tokens.append(JinjaToken(kind: .blockEnd, pos: position(p)))
                            p += 3; closed = true; break
                        }
                        if at(p, "-%}") {
                            tokens.append(JinjaToken(kind: .blockEnd, pos: position(p)))
                            p = skipSpaces(p + 3); closed = true; break
                        }
                        if at(p, "%}") {
                            tokens.append(JinjaToken(kind: .blockEnd, pos: position(p)))
                            p += 2
                            if trimBlocks && p < n && src[p] == "\n" { p += 1 }
                            closed = true; break
                        }
                    } else {
                        if at(p, "-}}") {
                            tokens.append(JinjaToken(kind: .variableEnd, pos: position(p)))
                            p = skipSpaces(p + 3); closed = true; break
                        }
                        if at(p, "}}") {
                            tokens.append(JinjaToken(kind: .variableEnd, pos: position(p)))
                            p += 2; closed = true; break
                        }
                    }
                }
                let u = src[p]
                if isPythonWhitespace(u) { p += 1; continue }
                let start = p
                if let (tok, next) = lexNumber(p) {
                    tokens.append(JinjaToken(kind: tok, pos: position(start)))
                    p = next
                    continue
                }
                if u == "_" || u.properties.isAlphabetic {
                    var j = p + 1
                    while j < n, src[j] == "_" || src[j].properties.isAlphabetic || src[j].properties.numericType == .decimal { j += 1 }
                    tokens.append(JinjaToken(kind: .name(String(scalars: src[p..<j])), pos: position(start)))
                    p = j
                    continue
                }
                if u == "'" || u == "\"" {
                    var j = p + 1
                    while j < n && src[j] != u {
                        if src[j] == "\\" { j += 1 }
                        j += 1
                    }
                    guard j < n else { throw error("unterminated string literal", at: p) }
                    let value = try decodePythonEscapes(Array(src[(p + 1)..<j]), at: p)
                    tokens.append(JinjaToken(kind: .string(value), pos: position(start)))
                    p = j + 1
                    continue
                }
                // Operators, longest first.
                var op: String? = nil
                for two in ["//", "**", "==", "!=", ">=", "<="] where at(p, two) { op = two; break }
                if op == nil, "+-/*%~[](){}><=.:|,;".unicodeScalars.contains(u) { op = String(u) }
                guard let o = op else { throw error("unexpected char '\(Character(u))'", at: p) }
                switch o {
                case "{": balance.append("}")
                case "(": balance.append(")")
                case "[": balance.append("]")
                case "}", ")", "]":
                    guard let expected = balance.popLast() else { throw error("unexpected '\(o)'", at: p) }
                    if String(expected) != o { throw error("unexpected '\(o)', expected '\(Character(expected))'", at: p) }
                default: break
                }
                tokens.append(JinjaToken(kind: .op(o), pos: position(start)))
                p += o.unicodeScalars.count
            }
            if !closed {
                throw error(isBlock ? "unexpected end of template, expected end of block statement ('%}')"
                                    : "unexpected end of template, expected end of print statement ('}}')", at: i)
            }
            lineStarting = p > 0 && src[p - 1] == "\n"
            pos = p
        }
        tokens.append(JinjaToken(kind: .eof, pos: position(n)))
        return tokens
    }

    /// `\s*raw\s*(-%}\s*|%})` after `{%[-+]?`; returns the offset after it.
    private func matchRawBegin(_ start: Int) -> Int? {
        var k = skipSpaces(start)
        guard at(k, "raw") else { return nil }
        k += 3
        if k < src.count, src[k] == "_" || src[k].properties.isAlphabetic || src[k].properties.numericType == .decimal { return nil }
        k = skipSpaces(k)
        if at(k, "-%}") { return skipSpaces(k + 3) }
        if at(k, "%}") { return k + 2 }
        return nil
    }

    private func isDigit(_ i: Int) -> Bool { i < src.count && src[i].value >= 48 && src[i].value <= 57 }

    /// Digits with single underscores between them (`(\d+_)*\d+`); returns the end offset.
    private func digitRun(_ i: Int) -> Int? {
        guard isDigit(i) else { return nil }
        var j = i
        while true {
            while isDigit(j) { j += 1 }
            if j < src.count, src[j] == "_", isDigit(j + 1) { j += 1; continue }
            return j
        }
    }

    /// jinja2's float and integer rules (decimal, 0b, 0o, 0x, underscores).
    private func lexNumber(_ p: Int) -> (JinjaToken.Kind, Int)? {
        guard isDigit(p) else { return nil }
        let text: (Int, Int) -> String = { String(scalars: self.src[$0..<$1].filter { $0 != "_" }) }
        // float: (?<!\.)(\d+_)*\d+((\.(\d+_)*\d+)?e[+\-]?(\d+_)*\d+|\.(\d+_)*\d+)
        if p == 0 || src[p - 1] != "." {
            if let intEnd = digitRun(p) {
                var j = intEnd
                var hasFrac = false
                if j < src.count, src[j] == ".", let fracEnd = digitRun(j + 1) { j = fracEnd; hasFrac = true }
                if j < src.count, src[j] == "e" || src[j] == "E" {
                    var k = j + 1
                    if k < src.count, src[k] == "+" || src[k] == "-" { k += 1 }
                    if let expEnd = digitRun(k), let d = Double(text(p, expEnd)) { return (.float(d), expEnd) }
                }
                if hasFrac, let d = Double(text(p, j)) { return (.float(d), j) }
            }
        }
        // integer
        if src[p] == "0", p + 1 < src.count {
            let c = Character(src[p + 1]).lowercased()
            let radix = c == "b" ? 2 : c == "o" ? 8 : c == "x" ? 16 : 0
            if radix != 0 {
                var j = p + 2
                var digits = ""
                while j < src.count {
                    if src[j] == "_", j + 1 < src.count, Int(String(src[j + 1]), radix: radix) != nil { j += 1; continue }
                    guard Int(String(src[j]), radix: radix) != nil else { break }
                    digits.unicodeScalars.append(src[j])
                    j += 1
                }
                if !digits.isEmpty, let v = Int(digits, radix: radix) { return (.integer(v), j) }
            }
        }
        if src[p] == "0" {
            var j = p + 1
            while j < src.count {
                if src[j] == "0" { j += 1 } else if src[j] == "_", j + 1 < src.count, src[j + 1] == "0" { j += 2 } else { break }
            }
            return (.integer(0), j)
        }
        guard let end = digitRun(p), let v = Int(text(p, end)) else { return nil }
        return (.integer(v), end)
    }

    /// jinja2 decodes string literals with Python's `encode("ascii", "backslashreplace")
    /// .decode("unicode-escape")`; this does the same.
    private func decodePythonEscapes(_ raw: [Unicode.Scalar], at offset: Int) throws -> String {
        // backslashreplace: non-ASCII code points become \xhh, \uhhhh or \Uhhhhhhhh.
        var ascii: [Unicode.Scalar] = []
        ascii.reserveCapacity(raw.count)
        var hasNonASCII = false
        for u in raw {
            if u.value < 0x80 {
                ascii.append(u)
            } else {
                hasNonASCII = true
                let hex = String(u.value, radix: 16)
                let (prefix, width) = u.value <= 0xff ? ("\\x", 2) : u.value <= 0xffff ? ("\\u", 4) : ("\\U", 8)
                let padded = String(repeating: "0", count: max(0, width - hex.count)) + hex
                ascii.append(contentsOf: (prefix + padded).unicodeScalars)
            }
        }
        if !hasNonASCII && !raw.contains("\\") { return String(scalars: raw) }
        // unicode-escape decoding.
        var out = String.UnicodeScalarView()
        var i = 0
        func hexValue(_ start: Int, _ count: Int) throws -> UInt32 {
            guard start + count <= ascii.count, let v = UInt32(String(scalars: ascii[start..<(start + count)]), radix: 16) else {
                throw error("truncated \\x, \\u or \\U escape in string literal", at: offset)
            }
            return v
        }
        while i < ascii.count {
            let u = ascii[i]
            guard u == "\\", i + 1 < ascii.count else {
                if u == "\\" { throw error("\\ at end of string literal", at: offset) }
                out.append(u)
                i += 1
                continue
            }
            let e = ascii[i + 1]
            i += 2
            switch e {
            case "\n": break
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append(Unicode.Scalar(7))
            case "b": out.append(Unicode.Scalar(8))
            case "f": out.append(Unicode.Scalar(12))
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            case "v": out.append(Unicode.Scalar(11))
            case "0"..."7":
                var v = e.value - 48
                var k = 0
                while k < 2, i < ascii.count, ascii[i].value >= 48, ascii[i].value <= 55 {
                    v = v * 8 + ascii[i].value - 48
                    i += 1
                    k += 1
                }
                guard let s = Unicode.Scalar(v) else { throw error("invalid octal escape in string literal", at: offset) }
                out.append(s)
            case "x", "u", "U":
                let count = e == "x" ? 2 : e == "u" ? 4 : 8
                let v = try hexValue(i, count)
                i += count
                guard let s = Unicode.Scalar(v) else { throw error("invalid code point in string literal", at: offset) }
                out.append(s)
            case "N":
                throw error("\\N{…} escapes are not supported in string literals", at: offset)
            default:
                out.append("\\")
                out.append(e)
            }
        }
        return String(out)
    }
}
