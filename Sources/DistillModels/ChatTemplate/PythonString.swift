/// Python `str` operations done on code points (UTF-8 bytes or scalars), never on Swift's
/// grapheme clusters: Swift's `==`, `hasPrefix` and `split` treat "e" + U+0301 as one character
/// and canonically-equivalent strings as equal, while Python does neither.
enum PyStr {
    /// Byte offset of the first occurrence of `needle` in `hay` at or after `from`. Because UTF-8
    /// lead bytes never equal continuation bytes, matches only start on code point boundaries.
    static func find(_ hay: [UInt8], _ needle: [UInt8], from: Int) -> Int? {
        let n = hay.count, m = needle.count
        if m == 0 { return from <= n ? from : nil }
        if m > n - from { return nil }
        let first = needle[0]
        var i = from
        let last = n - m
        while i <= last {
            if hay[i] == first {
                var j = 1
                while j < m && hay[i + j] == needle[j] { j += 1 }
                if j == m { return i }
            }
            i += 1
        }
        return nil
    }

    static func rfind(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        let n = hay.count, m = needle.count
        if m > n { return nil }
        var i = n - m
        while i >= 0 {
            if hay[i..<(i + m)].elementsEqual(needle) { return i }
            i -= 1
        }
        return nil
    }

    static func string(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

    static func hasPrefix(_ s: String, _ p: String) -> Bool { s.utf8.starts(with: p.utf8) }

    static func hasSuffix(_ s: String, _ p: String) -> Bool { s.utf8.reversed().starts(with: p.utf8.reversed()) }

    /// `str.split(sep, maxsplit)`; `sep == nil` splits on runs of whitespace.
    static func split(_ s: String, _ sep: String?, maxsplit: Int = -1) throws -> [String] {
        if let sep {
            let sb = Array(sep.utf8)
            guard !sb.isEmpty else { throw JinjaSignal.runtime("empty separator") }
            let b = Array(s.utf8)
            var parts: [String] = []
            var start = 0
            while maxsplit < 0 || parts.count < maxsplit, let i = find(b, sb, from: start) {
                parts.append(string(b[start..<i]))
                start = i + sb.count
            }
            parts.append(string(b[start...]))
            return parts
        }
        let sc = Array(s.unicodeScalars)
        var parts: [String] = []
        var i = 0
        while i < sc.count {
            while i < sc.count && isPythonWhitespace(sc[i]) { i += 1 }
            if i >= sc.count { break }
            if maxsplit >= 0 && parts.count >= maxsplit {
                var end = sc.count
                while end > i && isPythonWhitespace(sc[end - 1]) { end -= 1 }
                parts.append(String(scalars: sc[i..<end]))
                break
            }
            let start = i
            while i < sc.count && !isPythonWhitespace(sc[i]) { i += 1 }
            parts.append(String(scalars: sc[start..<i]))
        }
        return parts
    }

    /// `str.rsplit(sep, maxsplit)`.
    static func rsplit(_ s: String, _ sep: String?, maxsplit: Int = -1) throws -> [String] {
        if maxsplit < 0 { return try split(s, sep) }
        if let sep {
            let sb = Array(sep.utf8)
            guard !sb.isEmpty else { throw JinjaSignal.runtime("empty separator") }
            var b = Array(s.utf8)
            var parts: [String] = []
            while parts.count < maxsplit, let i = rfind(b, sb) {
                parts.insert(string(b[(i + sb.count)...]), at: 0)
                b = Array(b[..<i])
            }
            parts.insert(string(b[...]), at: 0)
            return parts
        }
        let sc = Array(s.unicodeScalars)
        var parts: [String] = []
        var end = sc.count
        while end > 0 {
            while end > 0 && isPythonWhitespace(sc[end - 1]) { end -= 1 }
            if end == 0 { break }
            if parts.count >= maxsplit {
                var start = 0
                while start < end && isPythonWhitespace(sc[start]) { start += 1 }
                parts.insert(String(scalars: sc[start..<end]), at: 0)
                break
            }
            var start = end
            while start > 0 && !isPythonWhitespace(sc[start - 1]) { start -= 1 }
            parts.insert(String(scalars: sc[start..<end]), at: 0)
            end = start
        }
        return parts
    }

    /// `str.replace(old, new, count)`.
    static func replace(_ s: String, _ old: String, _ new: String, count: Int = -1) -> String {
        if old.isEmpty {
            var out = String.UnicodeScalarView()
            var n = 0
            for u in s.unicodeScalars {
                if count < 0 || n < count { out.append(contentsOf: new.unicodeScalars); n += 1 }
                out.append(u)
            }
            if count < 0 || n < count { out.append(contentsOf: new.unicodeScalars) }
            return String(out)
        }
        let b = Array(s.utf8), ob = Array(old.utf8), nb = Array(new.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var start = 0
        var n = 0
        while count < 0 || n < count, let i = find(b, ob, from: start) {
            out.append(contentsOf: b[start..<i])
            out.append(contentsOf: nb)
            start = i + ob.count
            n += 1
        }
        out.append(contentsOf: b[start...])
        return String(decoding: out, as: UTF8.self)
    }

    static func count(_ s: String, _ sub: String) -> Int {
        let b = Array(s.utf8), sb = Array(sub.utf8)
        if sb.isEmpty { return s.unicodeScalars.count + 1 }
        var n = 0, start = 0
        while let i = find(b, sb, from: start) { n += 1; start = i + sb.count }
        return n
    }

    /// `str.strip(chars)`, `lstrip`, `rstrip`; `chars == nil` strips whitespace.
    static func strip(_ s: String, _ chars: String?, left: Bool = true, right: Bool = true) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        let drop: (Unicode.Scalar) -> Bool = { u in set.map { $0.contains(u) } ?? isPythonWhitespace(u) }
        let sc = s.unicodeScalars
        var a = sc.startIndex, b = sc.endIndex
        if left { while a < b && drop(sc[a]) { a = sc.index(after: a) } }
        if right { while b > a && drop(sc[sc.index(before: b)]) { b = sc.index(before: b) } }
        if a == sc.startIndex && b == sc.endIndex { return s }
        return String(sc[a..<b])
    }

    /// `str.splitlines(keepends)`.
    static func splitlines(_ s: String, keepends: Bool = false) -> [String] {
        let sc = Array(s.unicodeScalars)
        var lines: [String] = []
        var start = 0, i = 0
        while i < sc.count {
            let v = sc[i].value
            var eol = 0
            if v == 0x0D && i + 1 < sc.count && sc[i + 1] == "\n" { eol = 2 }
            else if [0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029].contains(v) { eol = 1 }
            if eol > 0 {
                lines.append(String(scalars: sc[start..<(keepends ? i + eol : i)]))
                i += eol
                start = i
            } else {
                i += 1
            }
        }
        if start < sc.count { lines.append(String(scalars: sc[start...])) }
        return lines
    }

    static func isCased(_ u: Unicode.Scalar) -> Bool {
        u.properties.isLowercase || u.properties.isUppercase || u.properties.generalCategory == .titlecaseLetter
    }

    /// `str.capitalize()`: first code point upper (title) case, the rest lower case.
    static func capitalize(_ s: String) -> String {
        guard let first = s.unicodeScalars.first else { return s }
        return first.properties.titlecaseMapping + String(s.unicodeScalars.dropFirst()).lowercased()
    }

    /// `str.title()`.
    static func title(_ s: String) -> String {
        var out = ""
        var prevCased = false
        for u in s.unicodeScalars {
            if isCased(u) {
                out += prevCased ? u.properties.lowercaseMapping : u.properties.titlecaseMapping
                prevCased = true
            } else {
                out.unicodeScalars.append(u)
                prevCased = false
            }
        }
        return out
    }

    /// `str.swapcase()`.
    static func swapcase(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            if u.properties.isUppercase { out += u.properties.lowercaseMapping }
            else if u.properties.isLowercase { out += u.properties.uppercaseMapping }
            else { out.unicodeScalars.append(u) }
        }
        return out
    }
}
