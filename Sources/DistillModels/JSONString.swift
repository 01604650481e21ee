import Foundation

/// Appends `s` as a JSON string literal escaped the way Python's `json.dumps` and serde_json do:
/// quotes, backslashes, \b \f \n \r \t, other control characters as \u00XX; with `ensureASCII`,
/// everything outside printable ASCII as \uXXXX (surrogate pairs above U+FFFF); with
/// `escapeLineSeparators`, U+2028 and U+2029 as \u2028 and \u2029 too (so a JSONL line stays one
/// line for readers that split on them). Other characters are written as they are, as
/// `json.dumps(…, ensure_ascii=False)` does. Shared by the chat templates' `tojson`, the safetensors
/// header writer and the trace data files (DistillData).
public func appendJSONString(_ s: String, to out: inout String, ensureASCII: Bool = false,
                             escapeLineSeparators: Bool = false) {
    out += "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if u.value < 0x20 || (escapeLineSeparators && (u.value == 0x2028 || u.value == 0x2029)) {
                out += String(format: "\\u%04x", u.value)
            } else if ensureASCII && u.value > 0x7e {
                if u.value > 0xffff {
                    let v = u.value - 0x10000
                    out += String(format: "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff))
                } else {
                    out += String(format: "\\u%04x", u.value)
                }
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    out += "\""
}

/// `s` as a JSON string literal (see `appendJSONString`).
func jsonStringLiteral(_ s: String) -> String {
    var out = ""
    appendJSONString(s, to: &out)
    return out
}
