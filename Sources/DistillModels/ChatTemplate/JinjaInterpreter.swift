import Foundation

/// Errors raised inside builtins, before they know where in the template they are; the evaluator
/// turns them into `TemplateError`s at the node that called the builtin.
enum JinjaSignal: Error {
    case runtime(String)
    case raised(String)
}

/// One level of variables: the template's top level, a loop iteration, a macro call, a `with`.
final class JinjaScope {
    var vars: [String: JinjaValue]
    let parent: JinjaScope?

    init(_ vars: [String: JinjaValue] = [:], parent: JinjaScope?) {
        self.vars = vars
        self.parent = parent
        Self.counter.withLock { $0 += 1 }
    }

    deinit { Self.counter.withLock { $0 -= 1 } }

    /// Scopes alive in this process (tests check that renders free theirs).
    static var live: Int { counter.withLock { $0 } }
    private static let counter = LockedCount()

    func lookup(_ name: String) -> JinjaValue? {
        var s: JinjaScope? = self
        while let scope = s {
            if let v = scope.vars[name] { return v }
            s = scope.parent
        }
        return nil
    }
}

/// An integer behind a lock.
final class LockedCount: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func withLock<R>(_ body: (inout Int) -> R) -> R { lock.withLock { body(&value) } }
}

/// Walks the syntax tree and writes the output. One interpreter renders one template once.
final class JinjaInterpreter {
    let file: String
    let now: () -> Date
    private var loopDepth = 0
    /// Nesting of macro calls and recursive loops (Python stops runaway recursion; so do we).
    private var callDepth = 0
    static let maxCallDepth = 64

    init(file: String, now: @escaping () -> Date) {
        self.file = file
        self.now = now
    }

    enum Flow { case normal, breakLoop, continueLoop }

    func render(_ body: [Stmt], context: [String: JinjaValue]) throws -> String {
        defer { releaseObjects() }
        let globals = newScope(makeGlobals(), parent: nil)
        let contextScope = newScope(context, parent: globals)
        let top = newScope(parent: contextScope)
        var out = ""
        _ = try exec(body, top, &out)
        return out
    }

    // MARK: objects of one render

    /// The reference-type objects made while rendering. A macro's closure holds the scope that
    /// holds the macro, `set ns.me = ns` puts a namespace inside itself, a recursive loop's closure
    /// holds its loop: cycles that reference counting never frees. Rendering ends by emptying them
    /// (nothing made during a render outlives it: the result is a string), so that a server
    /// rendering a template with macros for every request does not grow.
    private var madeScopes: [JinjaScope] = []
    private var madeNamespaces: [JinjaNamespace] = []
    private var madeLoops: [JinjaLoop] = []

    func newScope(_ vars: [String: JinjaValue] = [:], parent: JinjaScope?) -> JinjaScope {
        let s = JinjaScope(vars, parent: parent)
        madeScopes.append(s)
        return s
    }

    func track(_ namespace: JinjaNamespace) -> JinjaNamespace {
        madeNamespaces.append(namespace)
        return namespace
    }

    private func releaseObjects() {
        for s in madeScopes { s.vars = [:] }
        for n in madeNamespaces { n.attributes = JinjaDict() }
        for l in madeLoops { l.recurse = nil }
        madeScopes = []
        madeNamespaces = []
        madeLoops = []
    }

    // MARK: errors

    func error(_ message: String, _ pos: SourcePos) -> TemplateError {
        TemplateError(.render, message, line: pos.line, column: pos.column, file: file)
    }

    /// Runs `body`, giving builtin failures the position `pos`.
    @inline(__always)
    func at<T>(_ pos: SourcePos, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let s as JinjaSignal {
            switch s {
            case .runtime(let m): throw error(m, pos)
            case .raised(let m): throw TemplateError(.raised, m, line: pos.line, column: pos.column, file: file)
            }
        }
    }

    // MARK: statements

    func exec(_ body: [Stmt], _ scope: JinjaScope, _ out: inout String) throws -> Flow {
        for stmt in body {
            let flow = try exec(stmt, scope, &out)
            if flow != .normal { return flow }
        }
        return .normal
    }

    func exec(_ stmt: Stmt, _ scope: JinjaScope, _ out: inout String) throws -> Flow {
        switch stmt.kind {
        case .text(let s):
            out += s
        case .output(let e):
            let v = try eval(e, scope)
            try at(e.pos) { try appendString(v, &out) }
        case .ifChain(let branches, let otherwise):
            for (test, body) in branches where try eval(test, scope).truthy {
                return try exec(body, scope, &out)
            }
            return try exec(otherwise, scope, &out)
        case .forLoop(let target, let iter, let filter, let body, let otherwise, let recursive):
            let items = try at(iter.pos) { try iterate(try eval(iter, scope)) }
            return try runLoop(target: target, items: items, filter: filter, body: body, otherwise: otherwise,
                               recursive: recursive, scope: scope, pos: stmt.pos, out: &out)
        case .set(let target, let e):
            let v = try eval(e, scope)
            try assign(target, v, scope, stmt.pos)
        case .setBlock(let target, let filter, let body):
            var buf = ""
            _ = try exec(body, newScope(parent: scope), &buf)
            var v = JinjaValue.string(buf)
            if let f = filter { v = try applyFilterChain(f, input: v, scope) }
            try assign(target, v, scope, stmt.pos)
        case .macro(let m):
            scope.vars[m.name] = .function(makeMacro(m, definedIn: scope))
        case .callBlock(let call, let params, let body):
            let caller = makeMacro(Macro(name: "caller", params: params, body: body), definedIn: scope)
            guard case .call(let callee, let args) = call.kind else { break }
            let f = try eval(callee, scope)
            var (a, k) = try evalArgs(args, scope)
            k.append(("caller", .function(caller)))
            let v = try at(call.pos) { try callValue(f, a, k) }
            try at(call.pos) { try appendString(v, &out) }
        case .filterBlock(let chain, let body):
            var buf = ""
            _ = try exec(body, newScope(parent: scope), &buf)
            let v = try applyFilterChain(chain, input: .string(buf), scope)
            try at(stmt.pos) { try appendString(v, &out) }
        case .with(let pairs, let body):
            let inner = newScope(parent: scope)
            for (target, e) in pairs { try assign(target, try eval(e, scope), inner, stmt.pos) }
            return try exec(body, inner, &out)
        case .generation(let body):
            return try exec(body, scope, &out)
        case .breakLoop:
            guard loopDepth > 0 else { throw error("'break' outside of a loop", stmt.pos) }
            return .breakLoop
        case .continueLoop:
            guard loopDepth > 0 else { throw error("'continue' outside of a loop", stmt.pos) }
            return .continueLoop
        }
        return .normal
    }

    private func appendString(_ v: JinjaValue, _ out: inout String) throws {
        switch v {
        case .string(let s), .markup(let s): out += s
        case .undefined: break
        default: out += v.pythonString
        }
    }

    private func runLoop(target: Target, items: [JinjaValue], filter: Expr?, body: [Stmt], otherwise: [Stmt],
                         recursive: Bool, scope: JinjaScope, pos: SourcePos, out: inout String, depth0: Int = 0) throws -> Flow {
        var kept = items
        if let f = filter {
            kept = []
            let probe = newScope(parent: scope)
            for item in items {
                try assign(target, item, probe, pos)
                if try eval(f, probe).truthy { kept.append(item) }
            }
        }
        if kept.isEmpty {
            return try exec(otherwise, scope, &out)
        }
        let loop = JinjaLoop(items: kept, depth0: depth0)
        madeLoops.append(loop)
        if recursive {
            loop.recurse = { [unowned self] children in
                guard self.callDepth < JinjaInterpreter.maxCallDepth else {
                    throw JinjaSignal.runtime("maximum recursion depth exceeded in a recursive loop")
                }
                self.callDepth += 1
                defer { self.callDepth -= 1 }
                var buf = ""
                let childItems = try self.iterate(children)
                _ = try self.runLoop(target: target, items: childItems, filter: filter, body: body, otherwise: [],
                                     recursive: true, scope: scope, pos: pos, out: &buf, depth0: depth0 + 1)
                return buf
            }
        }
        loopDepth += 1
        defer { loopDepth -= 1 }
        for (i, item) in kept.enumerated() {
            loop.index0 = i
            let iterScope = newScope(["loop": .loop(loop)], parent: scope)
            try assign(target, item, iterScope, pos)
            let flow = try exec(body, iterScope, &out)
            if flow == .breakLoop { break }
        }
        return .normal
    }

    /// Python iteration: lists, dict keys, string code points; Undefined iterates as empty.
    func iterate(_ v: JinjaValue) throws -> [JinjaValue] {
        switch v.plain {
        case .array(let a), .tuple(let a), .generator(let a): return a
        case .dict(let d): return d.keys
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        case .loop(let l): return l.items
        default: throw JinjaSignal.runtime("'\(v.typeName)' object is not iterable")
        }
    }

    func assign(_ target: Target, _ value: JinjaValue, _ scope: JinjaScope, _ pos: SourcePos) throws {
        switch target {
        case .name(let n):
            scope.vars[n] = value
        case .tuple(let targets):
            let parts = try at(pos) { try iterate(value) }
            if parts.count != targets.count {
                throw error(parts.count < targets.count
                    ? "not enough values to unpack (expected \(targets.count), got \(parts.count))"
                    : "too many values to unpack (expected \(targets.count))", pos)
            }
            for (t, v) in zip(targets, parts) { try assign(t, v, scope, pos) }
        case .namespaceAttr(let name, let attr):
            guard case .namespace(let ns)? = scope.lookup(name) else {
                throw error("cannot assign attribute on non-namespace object", pos)
            }
            ns.attributes[attr] = value
        }
    }

    private func makeMacro(_ m: Macro, definedIn scope: JinjaScope) -> JinjaFunction {
        JinjaFunction(name: m.name) { [unowned self] args, kwargs in
            guard self.callDepth < JinjaInterpreter.maxCallDepth else {
                throw JinjaSignal.runtime("maximum recursion depth exceeded in macro '\(m.name)'")
            }
            self.callDepth += 1
            defer { self.callDepth -= 1 }
            let inner = newScope(parent: scope)
            var kw = kwargs
            var extra: [JinjaValue] = []
            for (i, v) in args.enumerated() {
                if i < m.params.count { inner.vars[m.params[i].0] = v } else { extra.append(v) }
            }
            for (i, (name, def)) in m.params.enumerated() where i >= args.count {
                if let k = kw.firstIndex(where: { $0.0 == name }) {
                    inner.vars[name] = kw[k].1
                    kw.remove(at: k)
                } else if let d = def {
                    inner.vars[name] = try self.eval(d, inner)
                } else {
                    inner.vars[name] = .undefined("parameter '\(name)' was not provided")
                }
            }
            if let k = kw.firstIndex(where: { $0.0 == "caller" }) {
                inner.vars["caller"] = kw[k].1
                kw.remove(at: k)
            }
            inner.vars["varargs"] = .tuple(extra)
            inner.vars["kwargs"] = .dict(JinjaDict(kw))
            var buf = ""
            let saved = self.loopDepth
            self.loopDepth = 0
            defer { self.loopDepth = saved }
            _ = try self.exec(m.body, inner, &buf)
            return .string(buf)
        }
    }

    // MARK: expressions

    func eval(_ e: Expr, _ scope: JinjaScope) throws -> JinjaValue {
        switch e.kind {
        case .literal(let v):
            return v
        case .name(let n):
            return scope.lookup(n) ?? .undefined("'\(n)' is undefined")
        case .list(let items):
            return .array(try items.map { try eval($0, scope) })
        case .tuple(let items):
            return .tuple(try items.map { try eval($0, scope) })
        case .dict(let pairs):
            var d = JinjaDict()
            for (k, v) in pairs {
                let key = try eval(k, scope)
                guard JinjaHashKey(key) != nil else { throw error("unhashable type: '\(key.typeName)'", k.pos) }
                d[value: key] = try eval(v, scope)
            }
            return .dict(d)
        case .getattr(let obj, let name):
            let o = try eval(obj, scope).plain
            return try at(e.pos) { try getAttribute(o, name) }
        case .getitem(let obj, let key):
            let o = try eval(obj, scope).plain
            let k = try eval(key, scope).plain
            return try at(e.pos) { try getItem(o, k) }
        case .slice(let obj, let a, let b, let c):
            let o = try eval(obj, scope).plain
            let start = try a.map { try eval($0, scope) }
            let stop = try b.map { try eval($0, scope) }
            let step = try c.map { try eval($0, scope) }
            return try at(e.pos) { try slice(o, start, stop, step) }
        case .call(let callee, let args):
            let f = try eval(callee, scope)
            let (a, k) = try evalArgs(args, scope)
            return try at(e.pos) { try callValue(f, a, k) }
        case .filter(let input, let name, let args):
            let v = try input.map { try eval($0, scope) } ?? .undefined("filter input")
            let (a, k) = try evalArgs(args, scope)
            return try at(e.pos) { try applyFilter(name, v, a, k) }
        case .test(let value, let name, let args):
            let v = try eval(value, scope).plain
            let (a, k) = try evalArgs(args, scope)
            return .bool(try at(e.pos) { try applyTest(name, v, a.map(\.plain), k, scope) })
        case .not(let x):
            return .bool(!(try eval(x, scope).truthy))
        case .neg(let x):
            let v = try eval(x, scope)
            return try at(e.pos) {
                switch v {
                case .int(let i):
                    let (v, o) = Int(0).subtractingReportingOverflow(i)
                    if o { throw JinjaSignal.runtime("integer overflow in unary -") }
                    return .int(v)
                case .bool(let b): return .int(b ? -1 : 0)
                case .double(let d): return .double(-d)
                case .undefined(let m): throw JinjaSignal.runtime(m)
                default: throw JinjaSignal.runtime("bad operand type for unary -: '\(v.typeName)'")
                }
            }
        case .pos(let x):
            let v = try eval(x, scope)
            return try at(e.pos) {
                switch v {
                case .int, .double: return v
                case .bool(let b): return .int(b ? 1 : 0)
                case .undefined(let m): throw JinjaSignal.runtime(m)
                default: throw JinjaSignal.runtime("bad operand type for unary +: '\(v.typeName)'")
                }
            }
        case .and(let l, let r):
            let lv = try eval(l, scope)
            return lv.truthy ? try eval(r, scope) : lv
        case .or(let l, let r):
            let lv = try eval(l, scope)
            return lv.truthy ? lv : try eval(r, scope)
        case .binary(let op, let l, let r):
            let lv = try eval(l, scope)
            let rv = try eval(r, scope)
            return try at(e.pos) { try binaryOp(op, lv, rv) }
        case .concat(let parts):
            var s = ""
            for p in parts {
                let v = try eval(p, scope)
                s += v.pythonString
            }
            return .string(s)
        case .compare(let first, let ops):
            var left = try eval(first, scope)
            for (op, rhs) in ops {
                let right = try eval(rhs, scope)
                let ok = try at(e.pos) { try compare(op, left, right) }
                if !ok { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .condexpr(let test, let then, let otherwise):
            if try eval(test, scope).truthy { return try eval(then, scope) }
            if let o = otherwise { return try eval(o, scope) }
            return .undefined("the inline if-expression on line \(e.pos.line) evaluated to false and no else section was defined.")
        }
    }

    func evalArgs(_ args: CallArgs, _ scope: JinjaScope) throws -> ([JinjaValue], [(String, JinjaValue)]) {
        var a = try args.args.map { try eval($0, scope) }
        var k = try args.kwargs.map { ($0.0, try eval($0.1, scope)) }
        if let s = args.starArgs {
            let v = try eval(s, scope)
            a += try at(s.pos) { try iterate(v) }
        }
        if let s = args.starKwargs {
            guard case .dict(let d) = try eval(s, scope) else { throw error("argument after ** must be a mapping", s.pos) }
            for (key, v) in d.pairs { k.append((key.pythonString, v)) }
        }
        return (a, k)
    }

    func callValue(_ f: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        switch f {
        case .function(let fn): return try fn.body(args, kwargs)
        case .undefined(let m): throw JinjaSignal.runtime(m)
        case .loop(let l):
            guard let r = l.recurse, let first = args.first else {
                throw JinjaSignal.runtime("Tried to call non recursive loop. Maybe you forgot the 'recursive' modifier.")
            }
            return .string(try r(first))
        default: throw JinjaSignal.runtime("'\(f.typeName)' object is not callable")
        }
    }

    /// Applies a filter chain parsed from `{% filter a | b %}` or `{% set x | f %}` to `input`.
    private func applyFilterChain(_ chain: Expr, input: JinjaValue, _ scope: JinjaScope) throws -> JinjaValue {
        guard case .filter(let inner, let name, let args) = chain.kind else { return input }
        let v = try inner.map { try applyFilterChain($0, input: input, scope) } ?? input
        let (a, k) = try evalArgs(args, scope)
        return try at(chain.pos) { try applyFilter(name, v, a, k) }
    }

    // MARK: attribute and item access (jinja2's sandboxed getattr/getitem)

    func getAttribute(_ obj: JinjaValue, _ name: String) throws -> JinjaValue {
        switch obj {
        case .undefined(let m):
            throw JinjaSignal.runtime(m)
        case .dict(let d):
            if let m = try boundMethod(obj, name) { return m }
            return d[name] ?? .undefined("'dict object' has no attribute '\(name)'")
        case .namespace(let ns):
            return ns.attributes[name] ?? .undefined("'Namespace object' has no attribute '\(name)'")
        case .loop(let l):
            return try loopAttribute(l, name)
        default:
            if let m = try boundMethod(obj, name) { return m }
            return .undefined("'\(objectTypeRepr(obj))' has no attribute '\(name)'")
        }
    }

    func getItem(_ obj: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch obj {
        case .undefined(let m):
            throw JinjaSignal.runtime(m)
        case .dict(let d):
            if let v = d[value: key] { return v }
        case .array(let a), .tuple(let a):
            if let i = key.asInt {
                let j = i < 0 ? i + a.count : i
                if j >= 0 && j < a.count { return a[j] }
            }
        case .string(let s):
            if let i = key.asInt {
                let scalars = s.unicodeScalars
                let n = scalars.count
                let j = i < 0 ? i + n : i
                if j >= 0 && j < n { return .string(String(scalars[scalars.index(scalars.startIndex, offsetBy: j)])) }
            }
        case .namespace(let ns):
            if case .string(let k) = key, let v = ns.attributes[k] { return v }
        case .loop(let l):
            if case .string(let k) = key { return try loopAttribute(l, k) }
        default:
            break
        }
        if case .string(let name) = key {
            if let m = try boundMethod(obj, name) { return m }
            return .undefined("'\(objectTypeRepr(obj))' has no attribute '\(name)'")
        }
        return .undefined("'\(objectTypeRepr(obj))' has no element \(key.pythonRepr)")
    }

    private func objectTypeRepr(_ v: JinjaValue) -> String {
        if case .none = v { return "None" }
        return "\(v.typeName) object"
    }

    private func loopAttribute(_ l: JinjaLoop, _ name: String) throws -> JinjaValue {
        let n = l.items.count
        switch name {
        case "index": return .int(l.index0 + 1)
        case "index0": return .int(l.index0)
        case "revindex": return .int(n - l.index0)
        case "revindex0": return .int(n - l.index0 - 1)
        case "first": return .bool(l.index0 == 0)
        case "last": return .bool(l.index0 == n - 1)
        case "length": return .int(n)
        case "depth": return .int(l.depth0 + 1)
        case "depth0": return .int(l.depth0)
        case "previtem": return l.index0 > 0 ? l.items[l.index0 - 1] : .undefined("there is no previous item")
        case "nextitem": return l.index0 + 1 < n ? l.items[l.index0 + 1] : .undefined("there is no next item")
        case "cycle":
            return .function(JinjaFunction(name: "cycle") { args, _ in
                guard !args.isEmpty else { throw JinjaSignal.runtime("no items for cycling given") }
                return args[l.index0 % args.count]
            })
        case "changed":
            return .function(JinjaFunction(name: "changed") { args, _ in
                if let last = l.lastChanged, last.count == args.count, zip(last, args).allSatisfy({ pyEqual($0, $1) }) {
                    return .bool(false)
                }
                l.lastChanged = args
                return .bool(true)
            })
        default:
            return .undefined("'LoopContext object' has no attribute '\(name)'")
        }
    }

    // MARK: slicing

    func slice(_ obj: JinjaValue, _ start: JinjaValue?, _ stop: JinjaValue?, _ step: JinjaValue?) throws -> JinjaValue {
        func intOrNil(_ v: JinjaValue?) throws -> Int? {
            guard let v, !v.isNone else { return nil }
            guard let i = v.asInt else { throw JinjaSignal.runtime("slice indices must be integers or None") }
            return i
        }
        let st = try intOrNil(step) ?? 1
        guard st != 0 else { throw JinjaSignal.runtime("slice step cannot be zero") }
        let s0 = try intOrNil(start), s1 = try intOrNil(stop)
        func indices(_ n: Int) -> [Int] {
            // Python's slice.indices
            func clamp(_ v: Int?, _ def: Int) -> Int {
                guard var x = v else { return def }
                if x < 0 { x += n; if x < 0 { x = st < 0 ? -1 : 0 } } else if x >= n { x = st < 0 ? n - 1 : n }
                return x
            }
            let a = clamp(s0, st < 0 ? n - 1 : 0)
            let b = clamp(s1, st < 0 ? -1 : n)
            var r: [Int] = []
            var i = a
            while st > 0 ? i < b : i > b {
                r.append(i)
                let (next, overflow) = i.addingReportingOverflow(st)
                if overflow { break }
                i = next
            }
            return r
        }
        switch obj {
        case .array(let a):
            if st == 1 {
                let idx = indices(a.count)
                guard let f = idx.first else { return .array([]) }
                return .array(Array(a[f...idx.last!]))
            }
            return .array(indices(a.count).map { a[$0] })
        case .tuple(let a):
            return .tuple(indices(a.count).map { a[$0] })
        case .string(let s):
            let sc = s.scalarArray
            return .string(String(scalars: indices(sc.count).map { sc[$0] }))
        case .undefined(let m):
            throw JinjaSignal.runtime(m)
        default:
            throw JinjaSignal.runtime("'\(obj.typeName)' object is not subscriptable")
        }
    }

    // MARK: operators

    func binaryOp(_ op: String, _ lhs: JinjaValue, _ rhs: JinjaValue) throws -> JinjaValue {
        // markupsafe: Markup + str escapes the str.
        switch (op, lhs, rhs) {
        case ("+", .markup(let a), .markup(let b)): return .markup(a + b)
        case ("+", .markup(let a), .string(let b)): return .markup(a + htmlEscape(b))
        case ("+", .string(let a), .markup(let b)): return .markup(htmlEscape(a) + b)
        default: break
        }
        let l = lhs.plain, r = rhs.plain
        if case .undefined(let m) = l { throw JinjaSignal.runtime(m) }
        if case .undefined(let m) = r { throw JinjaSignal.runtime(m) }
        let unsupported = JinjaSignal.runtime("unsupported operand type(s) for \(op): '\(l.typeName)' and '\(r.typeName)'")
        switch op {
        case "+":
            switch (l, r) {
            case (.string(let a), .string(let b)): return .string(a + b)
            case (.array(let a), .array(let b)): return .array(a + b)
            case (.tuple(let a), .tuple(let b)): return .tuple(a + b)
            case (.tuple, _): throw JinjaSignal.runtime("can only concatenate tuple (not \"\(r.typeName)\") to tuple")
            case (.string, _): throw JinjaSignal.runtime("can only concatenate str (not \"\(r.typeName)\") to str")
            case (.array, _): throw JinjaSignal.runtime("can only concatenate list (not \"\(r.typeName)\") to list")
            default: return try arithmetic(op, l, r, unsupported)
            }
        case "*":
            switch (l, r) {
            case (.string(let s), _) where r.asInt != nil: return .string(String(repeating: s, count: max(0, r.asInt!)))
            case (_, .string(let s)) where l.asInt != nil: return .string(String(repeating: s, count: max(0, l.asInt!)))
            case (.array(let a), _) where r.asInt != nil:
                return .array(Array(repeatElement(a, count: max(0, r.asInt!)).joined()))
            case (_, .array(let a)) where l.asInt != nil:
                return .array(Array(repeatElement(a, count: max(0, l.asInt!)).joined()))
            default: return try arithmetic(op, l, r, unsupported)
            }
        case "%":
            if case .string(let fmt) = l { return .string(try percentFormat(fmt, r)) }
            return try arithmetic(op, l, r, unsupported)
        default:
            return try arithmetic(op, l, r, unsupported)
        }
    }

    private func arithmetic(_ op: String, _ l: JinjaValue, _ r: JinjaValue, _ unsupported: JinjaSignal) throws -> JinjaValue {
        if let a = l.asInt, let b = r.asInt {
            switch op {
            case "+": let (v, o) = a.addingReportingOverflow(b); if !o { return .int(v) }
            case "-": let (v, o) = a.subtractingReportingOverflow(b); if !o { return .int(v) }
            case "*": let (v, o) = a.multipliedReportingOverflow(by: b); if !o { return .int(v) }
            case "/":
                guard b != 0 else { throw JinjaSignal.runtime("division by zero") }
                return .double(Double(a) / Double(b))
            case "//":
                guard b != 0 else { throw JinjaSignal.runtime("integer division or modulo by zero") }
                if b == -1 {
                    let (v, o) = Int(0).subtractingReportingOverflow(a)
                    if o { throw JinjaSignal.runtime("integer overflow in '//'") }
                    return .int(v)
                }
                let q = a / b
                return .int((a % b != 0) && ((a < 0) != (b < 0)) ? q - 1 : q)
            case "%":
                guard b != 0 else { throw JinjaSignal.runtime("integer division or modulo by zero") }
                if b == -1 { return .int(0) }
                let m = a % b
                return .int(m != 0 && ((m < 0) != (b < 0)) ? m + b : m)
            case "**":
                if b >= 0 {
                    var result = 1, base = a, e = b, overflow = false
                    while e > 0 {
                        if e & 1 == 1 { let (v, o) = result.multipliedReportingOverflow(by: base); result = v; overflow = overflow || o }
                        e >>= 1
                        if e > 0 { let (v, o) = base.multipliedReportingOverflow(by: base); base = v; overflow = overflow || o }
                    }
                    if !overflow { return .int(result) }
                }
                return .double(pow(Double(a), Double(b)))
            default: break
            }
            if ["+", "-", "*"].contains(op) { throw JinjaSignal.runtime("integer overflow in '\(op)'") }
        }
        guard let a = l.asNumber, let b = r.asNumber else { throw unsupported }
        switch op {
        case "+": return .double(a + b)
        case "-": return .double(a - b)
        case "*": return .double(a * b)
        case "/":
            guard b != 0 else { throw JinjaSignal.runtime("float division by zero") }
            return .double(a / b)
        case "//":
            guard b != 0 else { throw JinjaSignal.runtime("float floor division by zero") }
            return .double((a / b).rounded(.down))
        case "%":
            guard b != 0 else { throw JinjaSignal.runtime("float modulo") }
            var m = fmod(a, b)
            if m != 0 && ((m < 0) != (b < 0)) { m += b }
            return .double(m)
        case "**": return .double(pow(a, b))
        default: throw unsupported
        }
    }

    func compare(_ op: String, _ l: JinjaValue, _ r: JinjaValue) throws -> Bool {
        switch op {
        case "==": return pyEqual(l, r)
        case "!=": return !pyEqual(l, r)
        case "in": return try pyContains(r, l)
        case "notin": return try !pyContains(r, l)
        default:
            let c = try pyOrder(l, r, op)
            switch op {
            case "<": return c < 0
            case "<=": return c <= 0
            case ">": return c > 0
            default: return c >= 0
            }
        }
    }

    /// Python's `str % args` for the common conversions (%s %r %d %i %f %x %%).
    private func percentFormat(_ fmt: String, _ arg: JinjaValue) throws -> String {
        var args: [JinjaValue]
        if case .tuple(let a) = arg { args = a } else { args = [arg] }
        var out = ""
        var it = Array(fmt.unicodeScalars)[...]
        while let c = it.popFirst() {
            guard c == "%" else { out.unicodeScalars.append(c); continue }
            var spec = ""
            while let d = it.first, "0123456789.-+ #".unicodeScalars.contains(d) { spec.unicodeScalars.append(d); it.removeFirst() }
            guard let conv = it.popFirst() else { throw JinjaSignal.runtime("incomplete format") }
            if conv == "%" { out += "%"; continue }
            guard !args.isEmpty else { throw JinjaSignal.runtime("not enough arguments for format string") }
            let v = args.removeFirst()
            switch conv {
            case "s": out += v.pythonString
            case "r": out += v.pythonRepr
            case "d", "i":
                guard let n = v.asNumber, let i = Int(exactly: n.rounded(.towardZero)) else {
                    throw JinjaSignal.runtime("%d format: a real number is required, not \(v.typeName)")
                }
                out += String(format: "%" + spec + "ld", i)
            case "f", "e", "g", "x", "X", "o":
                guard let n = v.asNumber else { throw JinjaSignal.runtime("must be real number, not \(v.typeName)") }
                if "xXo".unicodeScalars.contains(conv) {
                    guard let i = Int(exactly: n.rounded(.towardZero)) else { throw JinjaSignal.runtime("%\(conv) format: an integer is required") }
                    out += String(format: "%" + spec + "l" + String(conv), i)
                } else {
                    out += String(format: "%" + spec + String(conv), n)
                }
            default: throw JinjaSignal.runtime("unsupported format character '\(conv)'")
            }
        }
        if !args.isEmpty && { if case .tuple = arg { return true } else { return false } }() {
            throw JinjaSignal.runtime("not all arguments converted during string formatting")
        }
        return out
    }
}

// MARK: - Python equality, ordering and membership

/// Python `==`: numbers across int/float/bool, strings by code point, lists and dicts deeply.
func pyEqual(_ lhs: JinjaValue, _ rhs: JinjaValue) -> Bool {
    let a = lhs.plain, b = rhs.plain
    switch (a, b) {
    case (.undefined, .undefined), (.none, .none): return true
    case (.string(let x), .string(let y)): return x.utf8.elementsEqual(y.utf8)
    case (.array(let x), .array(let y)), (.tuple(let x), .tuple(let y)):
        return x.count == y.count && zip(x, y).allSatisfy { pyEqual($0, $1) }
    case (.dict(let x), .dict(let y)):
        guard x.count == y.count else { return false }
        for (k, v) in x.pairs {
            guard let w = y[value: k], pyEqual(v, w) else { return false }
        }
        return true
    case (.namespace(let x), .namespace(let y)): return x === y
    case (.loop(let x), .loop(let y)): return x === y
    default:
        if let x = a.asNumber, let y = b.asNumber {
            if let i = a.asInt, let j = b.asInt { return i == j }
            return x == y
        }
        return false
    }
}

/// Python ordering (`<` and friends): -1, 0 or 1, or a TypeError.
func pyOrder(_ lhs: JinjaValue, _ rhs: JinjaValue, _ op: String) throws -> Int {
    let a = lhs.plain, b = rhs.plain
    if case .undefined(let m) = a { throw JinjaSignal.runtime(m) }
    if case .undefined(let m) = b { throw JinjaSignal.runtime(m) }
    switch (a, b) {
    case (.string(let x), .string(let y)):
        return x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : (x.utf8.elementsEqual(y.utf8) ? 0 : 1)
    case (.array(let x), .array(let y)), (.tuple(let x), .tuple(let y)):
        for (p, q) in zip(x, y) where !pyEqual(p, q) { return try pyOrder(p, q, op) }
        return x.count < y.count ? -1 : (x.count == y.count ? 0 : 1)
    default:
        if let i = a.asInt, let j = b.asInt { return i < j ? -1 : (i == j ? 0 : 1) }
        if let x = a.asNumber, let y = b.asNumber { return x < y ? -1 : (x == y ? 0 : 1) }
        throw JinjaSignal.runtime("'\(op)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
    }
}

/// Python `needle in container`.
func pyContains(_ haystack: JinjaValue, _ item: JinjaValue) throws -> Bool {
    let container = haystack.plain, needle = item.plain
    switch container {
    case .string(let s):
        guard case .string(let n) = needle else {
            if case .undefined(let m) = needle { throw JinjaSignal.runtime(m) }
            throw JinjaSignal.runtime("'in <string>' requires string as left operand, not \(needle.typeName)")
        }
        return PyStr.find(Array(s.utf8), Array(n.utf8), from: 0) != nil
    case .array(let a), .tuple(let a), .generator(let a): return a.contains { pyEqual($0, needle) }
    case .dict(let d): return d.contains(needle)
    case .undefined: return false
    case .loop(let l): return l.items.contains { pyEqual($0, needle) }
    case .namespace(let ns): return ns.attributes.contains(needle)
    default: throw JinjaSignal.runtime("argument of type '\(container.typeName)' is not iterable")
    }
}
