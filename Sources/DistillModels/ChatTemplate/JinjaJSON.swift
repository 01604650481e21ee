import Foundation

/// JSON in and out of template values. Writing follows Python's `json.dumps` byte for byte (the
/// `tojson` filter transformers installs: `ensure_ascii=False`, optional `indent`, `separators`,
/// `sort_keys`); reading keeps object key order (Python dicts are ordered, and `tojson` of a tool
/// schema must list keys as given).
public enum JinjaJSON {
    public struct Options {
        public var ensureASCII = false
        /// nil: one line; a number of spaces or an indent string: one item per line.
        public var indent: String? = nil
        public var itemSeparator: String? = nil
        public var keySeparator: String? = nil
        public var sortKeys = false
        public init() {}
    }

    /// `json.dumps(value, ensure_ascii=…, indent=…, separators=…, sort_keys=…)`.
    public static func dumps(_ value: JinjaValue, _ options: Options = Options()) throws -> String {
        var out = ""
        let itemSep = options.itemSeparator ?? (options.indent == nil ? ", " : ",")
        let keySep = options.keySeparator ?? ": "
        try write(value, &out, options, itemSep, keySep, level: 0)
        return out
    }

    private static func write(_ v: JinjaValue, _ out: inout String, _ o: Options, _ itemSep: String, _ keySep: String, level: Int) throws {
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += floatJSON(d)
        case .string(let s), .markup(let s): appendJSONString(s, to: &out, ensureASCII: o.ensureASCII)
        case .array(let a), .tuple(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, x) in a.enumerated() {
                if i > 0 { out += itemSep }
                newline(&out, o, level + 1)
                try write(x, &out, o, itemSep, keySep, level: level + 1)
            }
            newline(&out, o, level)
            out += "]"
        case .dict(let d):
            try writeObject(d.pairs, &out, o, itemSep, keySep, level: level)
        case .namespace:
            throw JinjaSignal.runtime("Object of type Namespace is not JSON serializable")
        case .undefined:
            throw JinjaSignal.runtime("Object of type Undefined is not JSON serializable")
        case .function:
            throw JinjaSignal.runtime("Object of type function is not JSON serializable")
        case .loop:
            throw JinjaSignal.runtime("Object of type LoopContext is not JSON serializable")
        case .generator:
            throw JinjaSignal.runtime("Object of type generator is not JSON serializable")
        }
    }

    private static func writeObject(_ pairs: [(JinjaValue, JinjaValue)], _ out: inout String, _ o: Options,
                                    _ itemSep: String, _ keySep: String, level: Int) throws {
        if pairs.isEmpty { out += "{}"; return }
        var items: [(String, JinjaValue)] = []
        for (k, v) in pairs {
            let key: String
            switch k {
            case .string(let s), .markup(let s): key = s
            case .int(let i): key = String(i)
            case .double(let d): key = floatJSON(d)
            case .bool(let b): key = b ? "true" : "false"
            case .none: key = "null"
            default: throw JinjaSignal.runtime("keys must be str, int, float, bool or None, not \(k.typeName)")
            }
            items.append((key, v))
        }
        if o.sortKeys {
            items.sort { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) }
        }
        out += "{"
        for (i, (k, v)) in items.enumerated() {
            if i > 0 { out += itemSep }
            newline(&out, o, level + 1)
            appendJSONString(k, to: &out, ensureASCII: o.ensureASCII)
            out += keySep
            try write(v, &out, o, itemSep, keySep, level: level + 1)
        }
        newline(&out, o, level)
        out += "}"
    }

    private static func newline(_ out: inout String, _ o: Options, _ level: Int) {
        guard let ind = o.indent else { return }
        out += "\n"
        for _ in 0..<level { out += ind }
    }

    private static func floatJSON(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return pythonFloatRepr(d)
    }

    // MARK: reading

    /// Parses JSON text into template values (objects keep their key order; numbers without a
    /// fraction or exponent become integers).
    public static func parse(_ text: String) throws -> JinjaValue {
        var p = Reader(bytes: Array(text.utf8))
        p.skipSpace()
        let v = try p.value()
        p.skipSpace()
        guard p.i == p.bytes.count else { throw p.fail("trailing characters") }
        return v
    }

    private struct Reader {
        let bytes: [UInt8]
        var i = 0

        func fail(_ m: String) -> FileError { FileError(file: "<json>", location: "byte \(i)", m) }

        mutating func skipSpace() {
            while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        }

        mutating func expect(_ lit: String) throws {
            for b in lit.utf8 {
                guard i < bytes.count, bytes[i] == b else { throw fail("expected \(lit)") }
                i += 1
            }
        }

        mutating func value() throws -> JinjaValue {
            guard i < bytes.count else { throw fail("unexpected end") }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var d = JinjaDict()
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .dict(d) }
                while true {
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                    let k = try string()
                    skipSpace()
                    try expect(":")
                    skipSpace()
                    d[k] = try value()
                    skipSpace()
                    guard i < bytes.count else { throw fail("unexpected end") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .dict(d) }
                    throw fail("expected , or }")
                }
            case UInt8(ascii: "["):
                i += 1
                var a: [JinjaValue] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                while true {
                    skipSpace()
                    a.append(try value())
                    skipSpace()
                    guard i < bytes.count else { throw fail("unexpected end") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                    throw fail("expected , or ]")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "n"): try expect("null"); return .none
            default:
                let start = i
                var isFloat = false
                while i < bytes.count, let c = Optional(bytes[i]),
                      (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                    if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { isFloat = true }
                    i += 1
                }
                let text = String(decoding: bytes[start..<i], as: UTF8.self)
                if !isFloat, let v = Int(text) { return .int(v) }
                guard let d = Double(text) else { throw fail("bad number '\(text)'") }
                return .double(d)
            }
        }

        mutating func string() throws -> String {
            i += 1
            var out: [UInt8] = []
            while true {
                guard i < bytes.count else { throw fail("unterminated string") }
                let c = bytes[i]
                i += 1
                if c == UInt8(ascii: "\"") { break }
                if c != UInt8(ascii: "\\") { out.append(c); continue }
                guard i < bytes.count else { throw fail("unterminated string") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"):
                    var v = try hex4()
                    if v >= 0xD800 && v < 0xDC00, i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                        i += 2
                        let lo = try hex4()
                        v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(scalar).utf8))
                default: out.append(e)
                }
            }
            return String(decoding: out, as: UTF8.self)
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<(i + 4)], as: UTF8.self), radix: 16) else {
                throw fail("bad \\u escape")
            }
            i += 4
            return v
        }
    }
}
