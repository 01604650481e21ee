import Foundation

/// Positional-or-keyword arguments of a builtin, read by position and name as Python binds them.
struct BuiltinArgs {
    let name: String
    let args: [JinjaValue]
    let kwargs: [(String, JinjaValue)]

    init(name: String, args: [JinjaValue], kwargs: [(String, JinjaValue)]) {
        self.name = name
        self.args = args.map(\.plain)
        self.kwargs = kwargs.map { ($0.0, $0.1.plain) }
    }

    /// Argument `i` (counted after the filter's input) or keyword `key`.
    func get(_ i: Int, _ key: String) -> JinjaValue? {
        if i < args.count { return args[i] }
        return kwargs.first { $0.0 == key }?.1
    }

    func string(_ i: Int, _ key: String) throws -> String? {
        guard let v = get(i, key), !v.isNone else { return nil }
        guard case .string(let s) = v else { throw JinjaSignal.runtime("\(name)() argument '\(key)' must be str, not \(v.typeName)") }
        return s
    }

    func int(_ i: Int, _ key: String) throws -> Int? {
        guard let v = get(i, key), !v.isNone else { return nil }
        guard let n = v.asInt else { throw JinjaSignal.runtime("\(name)() argument '\(key)' must be int, not \(v.typeName)") }
        return n
    }

    func bool(_ i: Int, _ key: String, _ def: Bool) -> Bool { get(i, key)?.truthy ?? def }
}

extension JinjaInterpreter {
    // MARK: globals

    func makeGlobals() -> [String: JinjaValue] {
        var g: [String: JinjaValue] = [:]
        g["raise_exception"] = .function(JinjaFunction(name: "raise_exception") { args, kwargs in
            let msg = args.first ?? kwargs.first { $0.0 == "message" }?.1 ?? .undefined("")
            throw JinjaSignal.raised(msg.pythonString)
        })
        g["strftime_now"] = .function(JinjaFunction(name: "strftime_now") { [now] args, _ in
            guard case .string(let fmt)? = args.first else { throw JinjaSignal.runtime("strftime_now() argument must be str") }
            return .string(try pythonStrftime(fmt, now()))
        })
        g["range"] = .function(JinjaFunction(name: "range") { args, _ in
            let ints = try args.map { v -> Int in
                guard let i = v.asInt else { throw JinjaSignal.runtime("'\(v.typeName)' object cannot be interpreted as an integer") }
                return i
            }
            var start = 0, stop = 0, step = 1
            switch ints.count {
            case 1: stop = ints[0]
            case 2: start = ints[0]; stop = ints[1]
            case 3: start = ints[0]; stop = ints[1]; step = ints[2]
            default: throw JinjaSignal.runtime("range expected at most 3 arguments, got \(ints.count)")
            }
            guard step != 0 else { throw JinjaSignal.runtime("range() arg 3 must not be zero") }
            // Counted in Double so that extreme bounds cannot overflow.
            let span = Double(stop) - Double(start)
            let exact = step > 0 ? (span / Double(step)).rounded(.up) : (-span / -Double(step)).rounded(.up)
            if exact > 100_000 {
                throw JinjaSignal.runtime("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).")
            }
            let count = max(0, Int(exact))
            return .array((0..<count).map { .int(start + $0 * step) })
        })
        g["namespace"] = .function(JinjaFunction(name: "namespace") { [unowned self] args, kwargs in
            var d = JinjaDict()
            for a in args {
                guard case .dict(let init0) = a else { throw JinjaSignal.runtime("namespace() takes a mapping") }
                for (k, v) in init0.pairs { d[value: k] = v }
            }
            for (k, v) in kwargs { d[k] = v }
            return .namespace(self.track(JinjaNamespace(d)))
        })
        g["dict"] = .function(JinjaFunction(name: "dict") { args, kwargs in
            var d = JinjaDict()
            if case .dict(let init0)? = args.first { d = init0 }
            for (k, v) in kwargs { d[k] = v }
            return .dict(d)
        })
        return g
    }

    // MARK: methods of str, dict and list

    /// A Python method of `obj` named `name`, bound to it; nil when the type has no such method.
    func boundMethod(_ obj: JinjaValue, _ name: String) throws -> JinjaValue? {
        func method(_ body: @escaping (BuiltinArgs) throws -> JinjaValue) -> JinjaValue {
            .function(JinjaFunction(name: name) { args, kwargs in try body(BuiltinArgs(name: name, args: args, kwargs: kwargs)) })
        }
        func unsafe(_ type: String) -> JinjaValue {
            .undefined("access to attribute '\(name)' of '\(type)' object is unsafe.")
        }
        switch obj {
        case .string(let s):
            switch name {
            case "strip": return method { .string(PyStr.strip(s, try $0.string(0, "chars"))) }
            case "lstrip": return method { .string(PyStr.strip(s, try $0.string(0, "chars"), right: false)) }
            case "rstrip": return method { .string(PyStr.strip(s, try $0.string(0, "chars"), left: false)) }
            case "split":
                return method { .array(try PyStr.split(s, try $0.string(0, "sep"), maxsplit: try $0.int(1, "maxsplit") ?? -1).map { .string($0) }) }
            case "rsplit":
                return method { .array(try PyStr.rsplit(s, try $0.string(0, "sep"), maxsplit: try $0.int(1, "maxsplit") ?? -1).map { .string($0) }) }
            case "splitlines": return method { a in .array(PyStr.splitlines(s, keepends: a.bool(0, "keepends", false)).map { .string($0) }) }
            case "startswith", "endswith":
                return method { a in
                    guard let p = a.get(0, "prefix") else { throw JinjaSignal.runtime("\(name)() takes at least 1 argument (0 given)") }
                    var target = s
                    if a.get(1, "start") != nil || a.get(2, "end") != nil {
                        guard case .string(let sliced) = try self.slice(obj, a.get(1, "start"), a.get(2, "end"), nil) else { return .bool(false) }
                        target = sliced
                    }
                    let candidates: [JinjaValue]
                    if case .tuple(let xs) = p { candidates = xs } else { candidates = [p] }
                    for c in candidates {
                        guard case .string(let cs) = c else {
                            throw JinjaSignal.runtime("\(name) first arg must be str or a tuple of str, not \(c.typeName)")
                        }
                        if name == "startswith" ? PyStr.hasPrefix(target, cs) : PyStr.hasSuffix(target, cs) { return .bool(true) }
                    }
                    return .bool(false)
                }
            case "upper": return method { _ in .string(s.uppercased()) }
            case "lower": return method { _ in .string(s.lowercased()) }
            case "casefold": return method { _ in .string(s.lowercased()) }
            case "title": return method { _ in .string(PyStr.title(s)) }
            case "capitalize": return method { _ in .string(PyStr.capitalize(s)) }
            case "swapcase": return method { _ in .string(PyStr.swapcase(s)) }
            case "replace":
                return method { a in
                    guard let old = try a.string(0, "old"), let new = try a.string(1, "new") else {
                        throw JinjaSignal.runtime("replace expected at least 2 arguments")
                    }
                    return .string(PyStr.replace(s, old, new, count: try a.int(2, "count") ?? -1))
                }
            case "find", "index", "rfind", "rindex":
                return method { a in
                    guard let sub = try a.string(0, "sub") else { throw JinjaSignal.runtime("\(name)() takes at least 1 argument") }
                    let b = Array(s.utf8), sb = Array(sub.utf8)
                    let byte = name.hasPrefix("r") ? PyStr.rfind(b, sb) : PyStr.find(b, sb, from: 0)
                    guard let off = byte else {
                        if name.hasSuffix("index") { throw JinjaSignal.runtime("substring not found") }
                        return .int(-1)
                    }
                    return .int(String(decoding: b[..<off], as: UTF8.self).unicodeScalars.count)
                }
            case "count": return method { a in .int(PyStr.count(s, try a.string(0, "sub") ?? "")) }
            case "join":
                return method { a in
                    let items = try self.iterate(a.get(0, "iterable") ?? .array([]))
                    return .string(try items.map { v -> String in
                        guard case .string(let x) = v else { throw JinjaSignal.runtime("sequence item: expected str instance, \(v.typeName) found") }
                        return x
                    }.joined(separator: s))
                }
            case "isdigit", "isnumeric", "isdecimal":
                return method { _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType != nil }) }
            case "isalpha": return method { _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic }) }
            case "isalnum":
                return method { _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil }) }
            case "isspace": return method { _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(isPythonWhitespace)) }
            case "islower":
                return method { _ in .bool(s.unicodeScalars.contains { PyStr.isCased($0) } && !s.unicodeScalars.contains { $0.properties.isUppercase }) }
            case "isupper":
                return method { _ in .bool(s.unicodeScalars.contains { PyStr.isCased($0) } && !s.unicodeScalars.contains { $0.properties.isLowercase }) }
            case "partition", "rpartition":
                return method { a in
                    guard let sep = try a.string(0, "sep"), !sep.isEmpty else { throw JinjaSignal.runtime("empty separator") }
                    let parts = name == "partition" ? try PyStr.split(s, sep, maxsplit: 1) : try PyStr.rsplit(s, sep, maxsplit: 1)
                    if parts.count == 2 { return .tuple([.string(parts[0]), .string(sep), .string(parts[1])]) }
                    return name == "partition" ? .tuple([.string(s), "", ""]) : .tuple(["", "", .string(s)])
                }
            case "zfill", "ljust", "rjust", "center":
                return method { a in
                    let width = try a.int(0, "width") ?? 0
                    let fill = try a.string(1, "fillchar") ?? (name == "zfill" ? "0" : " ")
                    let n = s.pythonCount
                    guard width > n else { return .string(s) }
                    let pad = width - n
                    switch name {
                    case "ljust": return .string(s + String(repeating: fill, count: pad))
                    case "rjust": return .string(String(repeating: fill, count: pad) + s)
                    case "center":
                        let left = pad / 2 + (pad & width & 1)
                        return .string(String(repeating: fill, count: left) + s + String(repeating: fill, count: pad - left))
                    default:
                        if let f = s.unicodeScalars.first, f == "+" || f == "-" {
                            return .string(String(f) + String(repeating: "0", count: pad) + String(s.unicodeScalars.dropFirst()))
                        }
                        return .string(String(repeating: "0", count: pad) + s)
                    }
                }
            case "format":
                return method { a in .string(try self.strFormat(s, a.args, a.kwargs)) }
            default: return nil
            }
        case .dict(let d):
            switch name {
            case "items": return method { _ in .array(d.pairs.map { .tuple([$0.0, $0.1]) }) }
            case "keys": return method { _ in .array(d.keys) }
            case "values": return method { _ in .array(d.values) }
            case "get":
                return method { a in
                    guard let k = a.get(0, "key") else { throw JinjaSignal.runtime("get expected at least 1 argument, got 0") }
                    return d[value: k] ?? a.get(1, "default") ?? .none
                }
            case "copy": return method { _ in obj }
            case "pop", "popitem", "setdefault", "update", "clear": return unsafe("dict")
            default: return nil
            }
        case .array(let xs), .tuple(let xs):
            switch name {
            case "index":
                return method { a in
                    guard let x = a.get(0, "value"), let i = xs.firstIndex(where: { pyEqual($0, x) }) else {
                        throw JinjaSignal.runtime("value is not in list")
                    }
                    return .int(i)
                }
            case "count": return method { a in .int(xs.filter { pyEqual($0, a.get(0, "value") ?? .none) }.count) }
            case "copy": return method { _ in obj }
            case "append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear": return unsafe("list")
            default: return nil
            }
        default:
            return nil
        }
    }

    /// Python's `str.format` for `{}`, `{0}`, `{name}` and `{{`/`}}` (no format specs).
    func strFormat(_ fmt: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> String {
        var out = ""
        var auto = 0
        var it = Array(fmt.unicodeScalars)[...]
        while let c = it.popFirst() {
            if c == "{" {
                if it.first == "{" { it.removeFirst(); out += "{"; continue }
                var field = ""
                while let d = it.popFirst(), d != "}" { field.unicodeScalars.append(d) }
                let v: JinjaValue
                if field.isEmpty {
                    guard auto < args.count else { throw JinjaSignal.runtime("Replacement index \(auto) out of range for positional args tuple") }
                    v = args[auto]; auto += 1
                } else if let i = Int(field) {
                    guard i < args.count else { throw JinjaSignal.runtime("Replacement index \(i) out of range for positional args tuple") }
                    v = args[i]
                } else {
                    guard let kv = kwargs.first(where: { $0.0 == field }) else { throw JinjaSignal.runtime("KeyError: '\(field)'") }
                    v = kv.1
                }
                out += v.pythonString
            } else if c == "}" {
                if it.first == "}" { it.removeFirst() }
                out += "}"
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    // MARK: filters

    /// `make_attrgetter`: "a.b.0" walks getitem per dotted part (digits become integers).
    private func attrGetter(_ attribute: JinjaValue?) -> (JinjaValue) throws -> JinjaValue {
        guard let attribute, !attribute.isNone else { return { $0 } }
        let parts: [JinjaValue]
        if case .string(let s) = attribute {
            parts = s.split(separator: ".", omittingEmptySubsequences: false).map { p in Int(p).map { .int($0) } ?? .string(String(p)) }
        } else {
            parts = [attribute]
        }
        return { [unowned self] v in
            var cur = v
            for p in parts { cur = try self.getItem(cur, p) }
            return cur
        }
    }

    func applyFilter(_ name: String, _ original: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        let a = BuiltinArgs(name: name, args: args, kwargs: kwargs)
        let value = original.plain
        func str(_ v: JinjaValue) -> String { v.pythonString }
        switch name {
        case "trim":
            return .string(PyStr.strip(str(value), try a.string(0, "chars")))
        case "length", "count":
            switch value {
            case .string(let s): return .int(s.pythonCount)
            case .array(let x), .tuple(let x): return .int(x.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            case .loop(let l): return .int(l.items.count)
            default: throw JinjaSignal.runtime("object of type '\(value.typeName)' has no len()")
            }
        case "upper": return .string(str(value).uppercased())
        case "lower": return .string(str(value).lowercased())
        case "capitalize": return .string(PyStr.capitalize(str(value)))
        case "title":
            // jinja2: split before runs of [-\s({\[<], capitalise each piece.
            var out = ""
            var piece = ""
            var inSep = false
            func flush() {
                if let f = piece.unicodeScalars.first {
                    out += String(f).uppercased() + String(piece.unicodeScalars.dropFirst()).lowercased()
                }
                piece = ""
            }
            for u in str(value).unicodeScalars {
                let isSep = isPythonWhitespace(u) || "-({[<".unicodeScalars.contains(u)
                if isSep {
                    if !inSep { flush() }
                    out.unicodeScalars.append(u)
                } else {
                    piece.unicodeScalars.append(u)
                }
                inSep = isSep
            }
            flush()
            return .string(out)
        case "string":
            if case .markup = original { return original }
            return .string(str(value))
        case "tojson":
            var o = JinjaJSON.Options()
            o.ensureASCII = a.bool(0, "ensure_ascii", false)
            if let ind = a.get(1, "indent"), !ind.isNone {
                if case .string(let s) = ind { o.indent = s } else if let n = ind.asInt { o.indent = String(repeating: " ", count: max(0, n)) }
            }
            if let sep = a.get(2, "separators"), let parts = sep.sequenceItems, parts.count == 2 {
                o.itemSeparator = parts[0].pythonString
                o.keySeparator = parts[1].pythonString
            }
            o.sortKeys = a.bool(3, "sort_keys", false)
            return .string(try JinjaJSON.dumps(value, o))
        case "join":
            let sep = try a.string(0, "d") ?? ""
            let getter = attrGetter(a.get(1, "attribute"))
            return .string(try iterate(value).map { str(try getter($0)) }.joined(separator: sep))
        case "first":
            let items = try iterate(value)
            return items.first ?? .undefined("No first item, sequence was empty.")
        case "last":
            if case .generator = value { throw JinjaSignal.runtime("'generator' object is not reversible") }
            let items = try iterate(value)
            return items.last ?? .undefined("No last item, sequence was empty.")
        case "default", "d":
            let def = a.get(0, "default_value") ?? .string("")
            if value.isUndefined || (a.bool(1, "boolean", false) && !value.truthy) { return def }
            return original
        case "int":
            let def = a.get(0, "default") ?? .int(0)
            let base = try a.int(1, "base") ?? 10
            switch value {
            case .int, .bool: return .int(value.asInt!)
            case .double(let d): return Int(exactly: d.rounded(.towardZero)).map { .int($0) } ?? def
            case .string(let s):
                let t = PyStr.strip(s, nil).replacingOccurrences(of: "_", with: "")
                if let i = Int(t, radix: base) { return .int(i) }
                if let d = Double(t), let i = Int(exactly: d.rounded(.towardZero)) { return .int(i) }
                return def
            default: return def
            }
        case "float":
            let def = a.get(0, "default") ?? .double(0)
            switch value {
            case .int, .bool: return .double(value.asNumber!)
            case .double: return value
            case .string(let s):
                let t = PyStr.strip(s, nil).lowercased()
                if t == "inf" || t == "+inf" || t == "infinity" { return .double(.infinity) }
                if t == "-inf" || t == "-infinity" { return .double(-.infinity) }
                if let d = Double(t) { return .double(d) }
                return def
            default: return def
            }
        case "abs":
            switch value {
            case .int(let i):
                guard i != .min else { throw JinjaSignal.runtime("integer overflow in abs()") }
                return .int(abs(i))
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return .double(abs(d))
            default: throw JinjaSignal.runtime("bad operand type for abs(): '\(value.typeName)'")
            }
        case "round":
            guard let x = value.asNumber else { throw JinjaSignal.runtime("round() needs a number") }
            let precision = try a.int(0, "precision") ?? 0
            let method = try a.string(1, "method") ?? "common"
            let m = pow(10.0, Double(precision))
            switch method {
            case "common":
                // Python's round(): the exact binary value rounded half-to-even, as printf does.
                if precision == 0 { return .double(x.rounded(.toNearestOrEven)) }
                if precision > 340 || !x.isFinite { return .double(x) }
                if precision > 0, let r = Double(String(format: "%.*f", Int32(precision), x)) { return .double(r) }
                return .double((x * m).rounded(.toNearestOrEven) / m)
            case "ceil": return .double((x * m).rounded(.up) / m)
            case "floor": return .double((x * m).rounded(.down) / m)
            default: throw JinjaSignal.runtime("method must be common, ceil or floor")
            }
        case "replace":
            guard let old = try a.string(0, "old"), let new = try a.string(1, "new") else {
                throw JinjaSignal.runtime("replace() missing required arguments 'old' and 'new'")
            }
            return .string(PyStr.replace(str(value), old, new, count: try a.int(2, "count") ?? -1))
        case "list":
            return .array(try iterate(value))
        case "items":
            switch value {
            case .dict(let d): return .generator(d.pairs.map { .tuple([$0.0, $0.1]) })
            case .undefined: return .generator([])
            default: throw JinjaSignal.runtime("Can only get item pairs from a mapping.")
            }
        case "reverse":
            if case .string(let s) = value { return .string(String(scalars: s.unicodeScalars.reversed())) }
            return .generator(try iterate(value).reversed())
        case "safe":
            return .markup(str(value))
        case "forceescape":
            return .markup(htmlEscape(str(value)))
        case "escape", "e":
            if case .markup = original { return original }
            return .markup(htmlEscape(str(value)))
        case "indent":
            var indention = "    "
            if let w = a.get(0, "width") {
                if case .string(let s) = w { indention = s } else if let n = w.asInt { indention = String(repeating: " ", count: max(0, n)) }
            }
            let first = a.bool(1, "first", false)
            let blank = a.bool(2, "blank", false)
            let s = str(value) + "\n"
            var lines = PyStr.splitlines(s)
            var rv: String
            if blank {
                rv = lines.joined(separator: "\n" + indention)
            } else {
                rv = lines.isEmpty ? "" : lines.removeFirst()
                if !lines.isEmpty {
                    rv += "\n" + lines.map { $0.isEmpty ? $0 : indention + $0 }.joined(separator: "\n")
                }
            }
            if first { rv = indention + rv }
            return .string(rv)
        case "center":
            let width = try a.int(0, "width") ?? 80
            return try callValue(try boundMethod(.string(str(value)), "center")!, [.int(width)], [])
        case "wordcount":
            return .int(try PyStr.split(str(value), nil).count)
        case "unique":
            let getter = attrGetter(a.get(1, "attribute"))
            let caseSensitive = a.bool(0, "case_sensitive", false)
            var seen: [JinjaValue] = []
            var out: [JinjaValue] = []
            for item in try iterate(value) {
                var key = try getter(item)
                if !caseSensitive, case .string(let s) = key { key = .string(s.lowercased()) }
                if !seen.contains(where: { pyEqual($0, key) }) {
                    seen.append(key)
                    out.append(item)
                }
            }
            return .generator(out)
        case "sort":
            let reverse = a.bool(0, "reverse", false)
            let caseSensitive = a.bool(1, "case_sensitive", false)
            let getter = attrGetter(a.get(2, "attribute"))
            let items = try iterate(value)
            let keys = try items.map { item -> JinjaValue in
                let k = try getter(item)
                if !caseSensitive, case .string(let s) = k { return .string(s.lowercased()) }
                return k
            }
            var order = Array(items.indices)
            var failure: Error? = nil
            // A stable merge sort (Python's sort is stable; Swift's sort is not guaranteed to be).
            order = try mergeSort(order) { i, j in
                do { return try pyOrder(keys[i], keys[j], "<") < 0 } catch { failure = error; return false }
            }
            if let f = failure { throw f }
            if reverse {
                // Python: reverse=True keeps equal items in original order.
                order = try mergeSort(Array(items.indices)) { i, j in
                    do { return try pyOrder(keys[j], keys[i], "<") < 0 } catch { failure = error; return false }
                }
                if let f = failure { throw f }
            }
            return .array(order.map { items[$0] })
        case "dictsort":
            guard case .dict(let d) = value else { throw JinjaSignal.runtime("dictsort filter needs a mapping") }
            let caseSensitive = a.bool(0, "case_sensitive", false)
            let byValue = (try a.string(1, "by") ?? "key") == "value"
            let reverse = a.bool(2, "reverse", false)
            let pairs = d.pairs
            let keys = pairs.map { p -> JinjaValue in
                let k = byValue ? p.1 : p.0
                if !caseSensitive, case .string(let s) = k { return .string(s.lowercased()) }
                return k
            }
            var failure: Error? = nil
            let order = try mergeSort(Array(pairs.indices)) { i, j in
                do { return try (reverse ? pyOrder(keys[j], keys[i], "<") : pyOrder(keys[i], keys[j], "<")) < 0 } catch { failure = error; return false }
            }
            if let f = failure { throw f }
            return .array(order.map { .tuple([pairs[$0].0, pairs[$0].1]) })
        case "map":
            // jinja2: `if value: for item in value: …` (a lazy generator, so none maps to nothing)
            let items = value.truthy ? try iterate(value) : []
            if a.args.isEmpty {
                let getter = attrGetter(a.get(99, "attribute"))
                let def = kwargs.first { $0.0 == "default" }?.1
                return .generator(try items.map { item in
                    let v = try getter(item)
                    if v.isUndefined, let def { return def }
                    return v
                })
            }
            guard case .string(let filterName) = a.args[0] else { throw JinjaSignal.runtime("map() needs a filter name") }
            let rest = Array(a.args.dropFirst())
            return .generator(try items.map { try applyFilter(filterName, $0, rest, kwargs) })
        case "select", "reject", "selectattr", "rejectattr":
            let items = value.truthy ? try iterate(value) : []
            let byAttr = name.hasSuffix("attr")
            let keep = name.hasPrefix("select")
            var rest = a.args
            var getter: (JinjaValue) throws -> JinjaValue = { $0 }
            if byAttr {
                guard !rest.isEmpty else { throw JinjaSignal.runtime("Missing parameter for attribute name") }
                getter = attrGetter(rest.removeFirst())
            }
            var testName: String? = nil
            if !rest.isEmpty {
                guard case .string(let t) = rest.removeFirst() else { throw JinjaSignal.runtime("test name must be a string") }
                testName = t
            }
            let scope = JinjaScope(parent: nil)
            return .generator(try items.filter { item in
                let v = try getter(item)
                let ok = try testName.map { try applyTest($0, v, rest, kwargs, scope) } ?? v.truthy
                return ok == keep
            })
        case "sum":
            let getter = attrGetter(a.get(0, "attribute"))
            var total = a.get(1, "start") ?? .int(0)
            for item in try iterate(value) { total = try binaryOp("+", total, try getter(item)) }
            return total
        case "min", "max":
            let caseSensitive = a.bool(0, "case_sensitive", false)
            let getter = attrGetter(a.get(1, "attribute"))
            let items = try iterate(value)
            guard var best = items.first else { return .undefined("No aggregated item, sequence was empty.") }
            func key(_ v: JinjaValue) throws -> JinjaValue {
                let k = try getter(v)
                if !caseSensitive, case .string(let s) = k { return .string(s.lowercased()) }
                return k
            }
            for item in items.dropFirst() {
                let c = try pyOrder(try key(item), try key(best), "<")
                if name == "min" ? c < 0 : c > 0 { best = item }
            }
            return best
        case "attr":
            guard let n = try a.string(0, "name") else { throw JinjaSignal.runtime("attr() needs a name") }
            return try getAttribute(value, n)
        case "batch":
            let size = try a.int(0, "linecount") ?? 1
            guard size > 0 else { throw JinjaSignal.runtime("batch size must be positive") }
            let fill = a.get(1, "fill_with")
            let items = try iterate(value)
            var out: [JinjaValue] = []
            var i = 0
            while i < items.count {
                var chunk = Array(items[i..<(size >= items.count - i ? items.count : i + size)])
                if chunk.count < size, let f = fill, !f.isNone { chunk += Array(repeating: f, count: size - chunk.count) }
                out.append(.array(chunk))
                i += size
            }
            return .generator(out)
        case "format":
            return .string(try binaryOp("%", .string(str(value)), .tuple(args)).pythonString)
        case "striptags":
            var out = ""
            var inTag = false
            for u in str(value).unicodeScalars {
                if u == "<" { inTag = true } else if u == ">" { inTag = false } else if !inTag { out.unicodeScalars.append(u) }
            }
            return .string(try PyStr.split(out, nil).joined(separator: " "))
        case "truncate":
            let s = str(value)
            let length = try a.int(0, "length") ?? 255
            let killwords = a.bool(1, "killwords", false)
            let end = try a.string(2, "end") ?? "..."
            let leeway = try a.int(3, "leeway") ?? 5
            guard length >= end.pythonCount else { throw JinjaSignal.runtime("expected length >= \(end.pythonCount), got \(length)") }
            guard leeway >= 0 else { throw JinjaSignal.runtime("expected leeway >= 0, got \(leeway)") }
            let sc = s.scalarArray
            if sc.count <= length + leeway { return .string(s) }
            let cut = max(0, length - end.pythonCount)
            let upTo = min(cut, sc.count)
            if killwords { return .string(String(scalars: sc[..<upTo]) + end) }
            var head = String(scalars: sc[..<upTo])
            if let r = head.unicodeScalars.lastIndex(of: " ") { head = String(head.unicodeScalars[..<r]) }
            return .string(head + end)
        default:
            throw JinjaSignal.runtime("No filter named '\(name)'.")
        }
    }

    // MARK: tests

    func applyTest(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ scope: JinjaScope) throws -> Bool {
        let a = BuiltinArgs(name: name, args: args, kwargs: kwargs)
        func other() throws -> JinjaValue {
            guard let o = a.get(0, "other") else { throw JinjaSignal.runtime("test '\(name)' needs an argument") }
            return o
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return v.isNone
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "number": return v.asNumber != nil
        case "string": if case .string = v { return true } else { return false }
        case "mapping": if case .dict = v { return true } else { return false }
        case "iterable":
            switch v {
            case .string, .array, .tuple, .dict, .undefined, .loop, .generator: return true
            default: return false
            }
        case "sequence":
            switch v {
            case .string, .array, .tuple, .dict, .loop: return true
            default: return false
            }
        case "callable":
            switch v {
            case .function, .loop: return true
            default: return false
            }
        case "escaped": return false
        case "odd", "even":
            guard let i = v.asInt else { throw JinjaSignal.runtime("test '\(name)' needs an integer") }
            let odd = ((i % 2) + 2) % 2 == 1
            return name == "odd" ? odd : !odd
        case "divisibleby":
            guard let i = v.asInt, let n = try other().asInt, n != 0 else { throw JinjaSignal.runtime("divisibleby needs integers") }
            return i % n == 0
        case "sameas":
            let o = try other()
            switch (v, o) {
            case (.none, .none): return true
            case (.bool(let x), .bool(let y)): return x == y
            case (.int(let x), .int(let y)): return x == y && (-5...256).contains(x) // CPython's small-int cache
            case (.namespace(let x), .namespace(let y)): return x === y
            default: return false
            }
        case "eq", "equalto", "==": return pyEqual(v, try other())
        case "ne", "!=": return !pyEqual(v, try other())
        case "lt", "lessthan", "<": return try pyOrder(v, try other(), "<") < 0
        case "le", "<=": return try pyOrder(v, try other(), "<=") <= 0
        case "gt", "greaterthan", ">": return try pyOrder(v, try other(), ">") > 0
        case "ge", ">=": return try pyOrder(v, try other(), ">=") >= 0
        case "in": return try pyContains(a.get(0, "seq") ?? .array([]), v)
        case "lower":
            let s = v.pythonString
            return s.unicodeScalars.contains { PyStr.isCased($0) } && !s.unicodeScalars.contains { $0.properties.isUppercase }
        case "upper":
            let s = v.pythonString
            return s.unicodeScalars.contains { PyStr.isCased($0) } && !s.unicodeScalars.contains { $0.properties.isLowercase }
        case "filter":
            guard case .string(let f) = v else { return false }
            return knownFilters.contains(f)
        case "test":
            guard case .string(let t) = v else { return false }
            return knownTests.contains(t)
        default:
            throw JinjaSignal.runtime("No test named '\(name)'.")
        }
    }
}

let knownFilters: Set<String> = [
    "trim", "length", "count", "upper", "lower", "capitalize", "title", "string", "tojson", "join", "first", "last",
    "default", "d", "int", "float", "abs", "round", "replace", "list", "items", "reverse", "safe", "forceescape",
    "escape", "e", "indent", "center", "wordcount", "unique", "sort", "dictsort", "map", "select", "reject",
    "selectattr", "rejectattr", "sum", "min", "max", "attr", "batch", "format", "striptags", "truncate",
]

let knownTests: Set<String> = [
    "defined", "undefined", "none", "boolean", "true", "false", "integer", "float", "number", "string", "mapping",
    "iterable", "sequence", "callable", "escaped", "odd", "even", "divisibleby", "sameas", "eq", "equalto", "==",
    "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "lower", "upper",
    "filter", "test",
]

/// A stable merge sort with a throwing-free comparator.
func mergeSort(_ a: [Int], _ less: (Int, Int) -> Bool) throws -> [Int] {
    if a.count <= 1 { return a }
    let mid = a.count / 2
    let l = try mergeSort(Array(a[..<mid]), less), r = try mergeSort(Array(a[mid...]), less)
    var out: [Int] = []
    out.reserveCapacity(a.count)
    var i = 0, j = 0
    while i < l.count && j < r.count {
        if less(r[j], l[i]) { out.append(r[j]); j += 1 } else { out.append(l[i]); i += 1 }
    }
    out += l[i...]
    out += r[j...]
    return out
}

/// markupsafe's escape (also the HTML reports' text escaping).
public func htmlEscape(_ s: String) -> String {
    var out = ""
    for u in s.unicodeScalars {
        switch u {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&#34;"
        case "'": out += "&#39;"
        default: out.unicodeScalars.append(u)
        }
    }
    return out
}

/// Python's `datetime.strftime` in the C locale for the directives chat templates use.
func pythonStrftime(_ format: String, _ date: Date, timeZone: TimeZone = .current) throws -> String {
    var cal = Calendar(identifier: .gregorian)
    cal.timeZone = timeZone
    let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second, .nanosecond, .weekday], from: date)
    let days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
    let year = c.year!, month = c.month!, day = c.day!, hour = c.hour!, minute = c.minute!, second = c.second!
    let weekday0 = c.weekday! - 1 // 0 = Sunday
    let yday = cal.ordinality(of: .day, in: .year, for: date) ?? 1
    func pad(_ v: Int, _ w: Int = 2) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, w - s.count)) + s
    }
    var out = ""
    var it = Array(format.unicodeScalars)[...]
    while let ch = it.popFirst() {
        guard ch == "%", let d0 = it.popFirst() else { out.unicodeScalars.append(ch); continue }
        var d = d0
        var noPad = false
        if d == "-", let next = it.popFirst() { noPad = true; d = next }
        func num(_ v: Int, _ w: Int = 2) -> String { noPad ? String(v) : pad(v, w) }
        switch d {
        case "a": out += String(days[weekday0].prefix(3))
        case "A": out += days[weekday0]
        case "w": out += String(weekday0)
        case "d": out += num(day)
        case "e": out += noPad ? String(day) : (day < 10 ? " " : "") + String(day)
        case "b", "h": out += String(months[month - 1].prefix(3))
        case "B": out += months[month - 1]
        case "m": out += num(month)
        case "y": out += num(year % 100)
        case "Y": out += String(year)
        case "H": out += num(hour)
        case "I": out += num(hour % 12 == 0 ? 12 : hour % 12)
        case "p": out += hour < 12 ? "AM" : "PM"
        case "M": out += num(minute)
        case "S": out += num(second)
        case "f": out += pad((c.nanosecond ?? 0) / 1000, 6)
        case "j": out += num(yday, 3)
        case "z":
            let off = timeZone.secondsFromGMT(for: date)
            out += (off < 0 ? "-" : "+") + pad(abs(off) / 3600) + pad(abs(off) % 3600 / 60)
        case "Z": out += timeZone.abbreviation(for: date) ?? ""
        case "D": out += pad(month) + "/" + pad(day) + "/" + pad(year % 100)
        case "F": out += String(year) + "-" + pad(month) + "-" + pad(day)
        case "T": out += pad(hour) + ":" + pad(minute) + ":" + pad(second)
        case "%": out += "%"
        default:
            throw JinjaSignal.runtime("strftime directive '%\(d)' is not supported")
        }
    }
    return out
}
