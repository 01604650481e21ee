import Foundation

/// A value inside a chat template, with Python's semantics as jinja2 sees them: `none`, booleans,
/// integers, floats, strings (indexed by Unicode code point, as Python's `str`), lists, ordered
/// dictionaries, namespaces, callables and jinja2's default `Undefined`.
public enum JinjaValue {
    /// jinja2's default `Undefined`: falsy, renders as "", iterates as empty; most other uses raise.
    /// The name is the variable or attribute that was missing (for error messages).
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    /// A string marked safe by `|safe` or `|escape` (markupsafe's `Markup`): `+` HTML-escapes a
    /// plain string joined to it. Every other operation treats it as a plain string.
    case markup(String)
    case array([JinjaValue])
    /// A Python tuple: `(a, b)`, `set a, b = …`, the pairs of `items()` and `dictsort`. Prints as
    /// `(a, b)` and never equals a list.
    case tuple([JinjaValue])
    /// What jinja2's `map`, `select`, `selectattr`, `reject`, `unique`, `batch`, `reverse` and
    /// `items` filters return: a Python generator. It iterates like a list, but is always truthy,
    /// has no length, cannot be indexed and is not JSON serializable (pipe it through `list`).
    case generator([JinjaValue])
    case dict(JinjaDict)
    /// `namespace(...)`: the only mutable object in a template (`{% set ns.x = … %}`).
    case namespace(JinjaNamespace)
    case function(JinjaFunction)
    /// The `loop` variable inside a for loop.
    case loop(JinjaLoop)
}

// MARK: - Dictionary

/// Hash key for a dictionary entry; Python's `1 == 1.0 == True` share one key.
enum JinjaHashKey: Hashable {
    case string(String)
    case int(Int)
    case double(Double)
    case none

    init?(_ value: JinjaValue) {
        switch value {
        case .string(let s), .markup(let s): self = .string(s)
        case .int(let i): self = .int(i)
        case .bool(let b): self = .int(b ? 1 : 0)
        case .double(let d):
            if d.rounded() == d, abs(d) < 9.0e18 { self = .int(Int(d)) } else { self = .double(d) }
        case .none: self = .none
        default: return nil
        }
    }
}

/// An insertion-ordered dictionary (Python `dict`), so that `tojson`, `items()` and printing keep
/// the order the keys were given in.
public struct JinjaDict {
    public private(set) var keys: [JinjaValue] = []
    public private(set) var values: [JinjaValue] = []
    private var index: [JinjaHashKey: Int] = [:]

    public init() {}

    public init(_ pairs: [(String, JinjaValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    /// Key/value pairs in insertion order.
    public var pairs: [(JinjaValue, JinjaValue)] { Array(zip(keys, values)) }

    public subscript(key: String) -> JinjaValue? {
        get { self[value: .string(key)] }
        set { self[value: .string(key)] = newValue }
    }

    /// Lookup by any hashable value (strings, numbers, booleans, none); nil when absent or unhashable.
    public subscript(value key: JinjaValue) -> JinjaValue? {
        get {
            guard let h = JinjaHashKey(key), let i = index[h] else { return nil }
            return values[i]
        }
        set {
            guard let h = JinjaHashKey(key) else { return }
            if let i = index[h] {
                if let v = newValue {
                    values[i] = v
                } else {
                    keys.remove(at: i)
                    values.remove(at: i)
                    index = [:]
                    for (j, k) in keys.enumerated() { if let hk = JinjaHashKey(k) { index[hk] = j } }
                }
            } else if let v = newValue {
                index[h] = keys.count
                keys.append(key)
                values.append(v)
            }
        }
    }

    func contains(_ key: JinjaValue) -> Bool {
        guard let h = JinjaHashKey(key) else { return false }
        return index[h] != nil
    }
}

/// The object made by `namespace(...)`; a reference type because `set ns.attr` mutates it.
public final class JinjaNamespace {
    public var attributes: JinjaDict
    public init(_ attributes: JinjaDict = JinjaDict()) {
        self.attributes = attributes
        Self.counter.withLock { $0 += 1 }
    }

    deinit { Self.counter.withLock { $0 -= 1 } }

    /// Namespaces alive in this process (tests check that renders free theirs).
    static var live: Int { counter.withLock { $0 } }
    private static let counter = LockedCount()
}

/// A callable: a global function, a bound method of a string, dict or list, or a macro.
public struct JinjaFunction {
    public typealias Body = (_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue
    public let name: String
    public let body: Body
    public init(name: String, _ body: @escaping Body) {
        self.name = name
        self.body = body
    }
}

/// State of a `{% for %}` loop, read through `loop.index`, `loop.first`, `loop.cycle(...)`, ….
public final class JinjaLoop {
    let items: [JinjaValue]
    var index0: Int = 0
    let depth0: Int
    var lastChanged: [JinjaValue]?
    /// Set for `{% for … recursive %}` loops: `loop(children)` renders the body again.
    var recurse: ((JinjaValue) throws -> String)?

    init(items: [JinjaValue], depth0: Int) {
        self.items = items
        self.depth0 = depth0
    }
}

// MARK: - Literals

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) { self = .dict(JinjaDict(elements)) }
    public init(nilLiteral: ()) { self = .none }
}

// MARK: - Python semantics

extension JinjaValue {
    public var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    public var isNone: Bool {
        if case .none = self { return true }
        return false
    }

    /// Python truthiness.
    public var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s), .markup(let s): return !s.isEmpty
        case .array(let a), .tuple(let a): return !a.isEmpty
        case .dict(let d): return !d.isEmpty
        case .namespace, .function, .loop, .generator: return true
        }
    }

    /// Python's type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .markup: return "Markup"
        case .array: return "list"
        case .tuple: return "tuple"
        case .generator: return "generator"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        case .loop: return "LoopContext"
        }
    }

    var isGenerator: Bool {
        if case .generator = self { return true }
        return false
    }

    /// Items of a list or tuple.
    var sequenceItems: [JinjaValue]? {
        switch self {
        case .array(let a), .tuple(let a): return a
        default: return nil
        }
    }

    /// The value with a `Markup` string turned into a plain one.
    var plain: JinjaValue {
        if case .markup(let s) = self { return .string(s) }
        return self
    }

    /// Numeric view (bool counts as int, as in Python).
    var asNumber: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    var asInt: Int? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return i
        default: return nil
        }
    }

    /// `str(value)` as Python (and so jinja2's output) would write it.
    public var pythonString: String {
        switch self {
        case .undefined: return ""
        case .string(let s), .markup(let s): return s
        default: return pythonRepr
        }
    }

    /// `repr(value)` as Python writes it (used inside printed lists and dicts).
    public var pythonRepr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return pythonFloatRepr(d)
        case .string(let s): return pythonStringRepr(s)
        case .markup(let s): return "Markup(" + pythonStringRepr(s) + ")"
        case .array(let a): return "[" + a.map(\.pythonRepr).joined(separator: ", ") + "]"
        case .tuple(let a): return "(" + a.map(\.pythonRepr).joined(separator: ", ") + (a.count == 1 ? ",)" : ")")
        case .generator: return "<generator object>"
        case .dict(let d):
            return "{" + d.pairs.map { "\($0.0.pythonRepr): \($0.1.pythonRepr)" }.joined(separator: ", ") + "}"
        case .namespace(let ns):
            return "<Namespace " + JinjaValue.dict(ns.attributes).pythonRepr + ">"
        case .function(let f): return "<function \(f.name)>"
        case .loop(let l): return "<LoopContext \(l.index0 + 1)/\(l.items.count)>"
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
func pythonFloatRepr(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description gives the shortest round-trip digits; rebuild Python's layout from them.
    var s = "\(abs(d))"
    var exponent = 0
    if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        exponent = Int(s[s.index(after: e)...]) ?? 0
        s = String(s[..<e])
    }
    var intPart = s
    var frac = ""
    if let dot = s.firstIndex(of: ".") {
        intPart = String(s[..<dot])
        frac = String(s[s.index(after: dot)...])
    }
    // digits and decimal exponent such that value = 0.d1d2d3… × 10^point
    var digits = intPart + frac
    var point = intPart.count + exponent
    while digits.hasPrefix("0") && digits.count > 1 {
        digits.removeFirst()
        point -= 1
    }
    while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
    let sign = d < 0 ? "-" : ""
    let exp10 = point - 1 // scientific exponent
    if exp10 < -4 || exp10 >= 16 {
        var mant = String(digits.first!)
        if digits.count > 1 { mant += "." + digits.dropFirst() }
        let es = exp10 < 0 ? "-" + (abs(exp10) < 10 ? "0" : "") + String(abs(exp10)) : "+" + (exp10 < 10 ? "0" : "") + String(exp10)
        return sign + mant + "e" + es
    }
    if point <= 0 {
        return sign + "0." + String(repeating: "0", count: -point) + digits
    }
    if point >= digits.count {
        return sign + digits + String(repeating: "0", count: point - digits.count) + ".0"
    }
    let i = digits.index(digits.startIndex, offsetBy: point)
    return sign + digits[..<i] + "." + digits[i...]
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote.
func pythonStringRepr(_ s: String) -> String {
    let hasSingle = s.contains("'")
    let hasDouble = s.contains("\"")
    let quote: Character = (hasSingle && !hasDouble) ? "\"" : "'"
    var out = String(quote)
    for u in s.unicodeScalars {
        switch u {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(u) == quote {
                out += "\\" + String(quote)
            } else if u.value < 0x20 || u.value == 0x7f {
                out += String(format: "\\x%02x", u.value)
            } else if u.value >= 0x80 && !isPrintableForRepr(u) {
                if u.value <= 0xff {
                    out += String(format: "\\x%02x", u.value)
                } else if u.value <= 0xffff {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out += String(format: "\\U%08x", u.value)
                }
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    out.append(quote)
    return out
}

/// Python's `str.isprintable` for one non-ASCII code point (approximation by general category:
/// separators other than the ASCII space, controls, formats, surrogates, private use and
/// unassigned code points are escaped by `repr`).
private func isPrintableForRepr(_ u: Unicode.Scalar) -> Bool {
    switch u.properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator, .spaceSeparator:
        return false
    default:
        return true
    }
}

// MARK: - Strings by code point

extension String {
    /// Number of Unicode code points (Python's `len(str)`).
    var pythonCount: Int { unicodeScalars.count }

    /// The string's code points as an array (for indexing and slicing as Python does).
    var scalarArray: [Unicode.Scalar] { Array(unicodeScalars) }

    init<S: Sequence>(scalars: S) where S.Element == Unicode.Scalar {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: scalars)
        self = String(v)
    }
}

/// Python's `str.isspace` for one code point (the characters `str.strip()` removes).
func isPythonWhitespace(_ u: Unicode.Scalar) -> Bool {
    switch u.value {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
        return true
    default:
        return false
    }
}
