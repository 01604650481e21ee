/// Recursive-descent parser following jinja2's `Parser` method by method (parse_condexpr,
/// parse_or, …, parse_unary, parse_primary, parse_postfix, parse_filter_expr), so precedence and
/// odd corners (filters bind tighter than `+`, `-x|f` is `(-x)|f`, `for … in xs if cond`) match.
struct JinjaParser {
    private var tokens: [JinjaToken]
    private var i = 0
    private let file: String
    /// End tags the enclosing blocks are waiting for (for error messages).
    private var endTokenStack: [[String]] = []
    /// jinja2 compiles `if` blocks and `a if b else c` in a "soft" frame, where an unknown filter
    /// or test is an error only when reached at run time; anywhere else it fails compilation.
    private var soft = false
    /// Unknown filters and tests outside soft frames (message, position, token index); reported
    /// after parsing, as jinja2's compiler does.
    private var unknownNames: [(String, SourcePos, Int)] = []
    /// How many `for` bodies enclose the current position (`break`/`continue` need one).
    private var loopDepth = 0
    /// Nesting of expressions and blocks; capped so that hostile input cannot exhaust the stack.
    private var depth = 0
    static let maxDepth = 300

    private mutating func enter() throws {
        depth += 1
        if depth > JinjaParser.maxDepth { throw fail("template nested too deeply (more than \(JinjaParser.maxDepth) levels)") }
    }

    init(tokens: [JinjaToken], file: String) {
        self.tokens = tokens
        self.file = file
    }

    static func parse(source: String, file: String) throws -> [Stmt] {
        let tokens = try JinjaLexer(source: source, file: file).tokenize()
        var parser = JinjaParser(tokens: tokens, file: file)
        return try parser.parseTemplate()
    }

    // MARK: token stream

    private var current: JinjaToken { tokens[i] }
    private func look(_ k: Int = 1) -> JinjaToken { tokens[min(i + k, tokens.count - 1)] }
    private mutating func advance() { if i < tokens.count - 1 { i += 1 } }

    private func fail(_ message: String, _ pos: SourcePos? = nil) -> TemplateError {
        let p = pos ?? current.pos
        return TemplateError(.syntax, message, line: p.line, column: p.column, file: file)
    }

    private func isName(_ name: String, _ t: JinjaToken? = nil) -> Bool {
        if case .name(let n) = (t ?? current).kind { return n == name }
        return false
    }

    private func isOp(_ op: String, _ t: JinjaToken? = nil) -> Bool {
        if case .op(let o) = (t ?? current).kind { return o == op }
        return false
    }

    private mutating func skipName(_ name: String) -> Bool {
        if isName(name) { advance(); return true }
        return false
    }

    private mutating func skipOp(_ op: String) -> Bool {
        if isOp(op) { advance(); return true }
        return false
    }

    private func describe(_ t: JinjaToken) -> String {
        switch t.kind {
        case .text: return "template data"
        case .variableBegin: return "begin of print statement"
        case .variableEnd: return "end of print statement"
        case .blockBegin: return "begin of statement block"
        case .blockEnd: return "end of statement block"
        case .name(let n): return n
        case .string(let s): return "'\(s)'"
        case .integer(let v): return String(v)
        case .float(let v): return pythonFloatRepr(v)
        case .op(let o): return o
        case .eof: return "end of template"
        }
    }

    private mutating func expectOp(_ op: String) throws {
        guard isOp(op) else { throw fail("expected token '\(op)', got '\(describe(current))'") }
        advance()
    }

    private mutating func expectName() throws -> String {
        guard case .name(let n) = current.kind else { throw fail("expected token 'name', got '\(describe(current))'") }
        advance()
        return n
    }

    private mutating func expectBlockEnd() throws {
        guard case .blockEnd = current.kind else {
            throw fail("expected token 'end of statement block', got '\(describe(current))'")
        }
        advance()
    }

    // MARK: statements

    mutating func parseTemplate() throws -> [Stmt] {
        let body = try subparse(endTokens: nil)
        guard case .eof = current.kind else { throw fail("unexpected '\(describe(current))'") }
        if let (message, pos, _) = unknownNames.first { throw fail(message, pos) }
        return body
    }

    /// Parses template data and tags until a block tag whose name is in `endTokens` (left current).
    private mutating func subparse(endTokens: [String]?) throws -> [Stmt] {
        if let e = endTokens { endTokenStack.append(e) }
        defer { if endTokens != nil { endTokenStack.removeLast() } }
        var body: [Stmt] = []
        while true {
            let t = current
            switch t.kind {
            case .text(let s):
                body.append(Stmt(kind: .text(s), pos: t.pos))
                advance()
            case .variableBegin:
                advance()
                let e = try parseTuple(withCondexpr: true)
                guard case .variableEnd = current.kind else {
                    throw fail("expected token 'end of print statement', got '\(describe(current))'")
                }
                advance()
                body.append(Stmt(kind: .output(e), pos: t.pos))
            case .blockBegin:
                advance()
                if let ends = endTokens, case .name(let n) = current.kind, ends.contains(n) { return body }
                body.append(try parseStatement())
                try expectBlockEnd()
            case .eof:
                return body
            default:
                throw fail("unexpected '\(describe(t))'")
            }
        }
    }

    /// `parse_statements`: expects the end of the opening tag, then the body up to an end tag.
    private mutating func parseStatements(_ endTokens: [String], dropNeedle: Bool = false, opener: SourcePos) throws -> [Stmt] {
        try enter()
        defer { depth -= 1 }
        _ = skipOp(":")
        try expectBlockEnd()
        let body = try subparse(endTokens: endTokens)
        if case .eof = current.kind {
            let expected = endTokens.map { "'\($0)'" }.joined(separator: " or ")
            let opened = tokens.first(where: { $0.pos == opener }).map { describe($0) } ?? "block"
            throw fail("Unexpected end of template. Jinja was looking for the following tags: \(expected). The innermost block that needs to be closed is '\(opened)' (opened here).", opener)
        }
        if dropNeedle { advance() }
        return body
    }

    private mutating func parseStatement() throws -> Stmt {
        let t = current
        guard case .name(let keyword) = t.kind else { throw fail("tag name expected") }
        let pos = t.pos
        switch keyword {
        case "if": return try parseIf()
        case "for": return try parseFor()
        case "set": return try parseSet()
        case "macro": return try parseMacro()
        case "call": return try parseCallBlock()
        case "filter":
            advance()
            let savedSoft = soft
            soft = false
            defer { soft = savedSoft }
            let chain = try parseFilter(nil, startInline: true)!
            let body = try parseStatements(["endfilter"], dropNeedle: true, opener: pos)
            return Stmt(kind: .filterBlock(chain, body: body), pos: pos)
        case "with":
            advance()
            let savedSoft = soft
            soft = false
            defer { soft = savedSoft }
            var pairs: [(Target, Expr)] = []
            while true {
                if case .blockEnd = current.kind { break }
                if !pairs.isEmpty { try expectOp(",") }
                let target = try parseAssignTarget(withNamespace: false, extraEnd: [])
                try expectOp("=")
                pairs.append((target, try parseExpression()))
            }
            let body = try parseStatements(["endwith"], dropNeedle: true, opener: pos)
            return Stmt(kind: .with(pairs, body: body), pos: pos)
        case "generation":
            advance()
            let body = try parseStatements(["endgeneration"], dropNeedle: true, opener: pos)
            return Stmt(kind: .generation(body), pos: pos)
        case "break":
            if loopDepth == 0 { throw fail("'break' outside loop") }
            advance()
            return Stmt(kind: .breakLoop, pos: pos)
        case "continue":
            if loopDepth == 0 { throw fail("'continue' outside loop") }
            advance()
            return Stmt(kind: .continueLoop, pos: pos)
        default:
            var msg = "Encountered unknown tag '\(keyword)'."
            if let inner = endTokenStack.last {
                msg += " Jinja was looking for the following tags: " + inner.map { "'\($0)'" }.joined(separator: " or ") + "."
            }
            if ["include", "import", "from", "extends", "block", "autoescape", "do", "print"].contains(keyword) {
                msg = "the tag '\(keyword)' is not supported in chat templates"
            }
            throw fail(msg)
        }
    }

    private mutating func parseIf() throws -> Stmt {
        let pos = current.pos
        advance()
        let savedSoft = soft
        soft = true
        defer { soft = savedSoft }
        var branches: [(Expr, [Stmt])] = []
        var otherwise: [Stmt] = []
        while true {
            let test = try parseTuple(withCondexpr: false)
            let body = try parseStatements(["elif", "else", "endif"], opener: pos)
            branches.append((test, body))
            let tag = try expectName()
            if tag == "elif" { continue }
            if tag == "else" { otherwise = try parseStatements(["endif"], dropNeedle: true, opener: pos) }
            break
        }
        return Stmt(kind: .ifChain(branches, otherwise: otherwise), pos: pos)
    }

    private mutating func parseFor() throws -> Stmt {
        let pos = current.pos
        advance()
        let target = try parseAssignTarget(withNamespace: false, extraEnd: ["in"])
        guard skipName("in") else { throw fail("expected token 'in', got '\(describe(current))'") }
        let iter = try parseTuple(withCondexpr: false, extraEnd: ["recursive"])
        let savedSoft = soft
        soft = false
        defer { soft = savedSoft }
        var filter: Expr? = nil
        if skipName("if") { filter = try parseExpression() }
        let recursive = skipName("recursive")
        loopDepth += 1
        let body = try parseStatements(["endfor", "else"], opener: pos)
        loopDepth -= 1
        var otherwise: [Stmt] = []
        if try expectName() == "else" {
            otherwise = try parseStatements(["endfor"], dropNeedle: true, opener: pos)
        }
        return Stmt(kind: .forLoop(target: target, iter: iter, filter: filter, body: body, otherwise: otherwise, recursive: recursive), pos: pos)
    }

    private mutating func parseSet() throws -> Stmt {
        let pos = current.pos
        advance()
        let target = try parseAssignTarget(withNamespace: true, extraEnd: [])
        if skipOp("=") {
            return Stmt(kind: .set(target, try parseTuple(withCondexpr: true)), pos: pos)
        }
        let savedSoft = soft
        soft = false
        defer { soft = savedSoft }
        let filter = try parseFilter(nil)
        let body = try parseStatements(["endset"], dropNeedle: true, opener: pos)
        return Stmt(kind: .setBlock(target, filter: filter, body: body), pos: pos)
    }

    private mutating func parseSignature() throws -> [(String, Expr?)] {
        try expectOp("(")
        var params: [(String, Expr?)] = []
        var sawDefault = false
        while !isOp(")") {
            if !params.isEmpty { try expectOp(",") }
            let name = try expectName()
            if skipOp("=") {
                params.append((name, try parseExpression()))
                sawDefault = true
            } else {
                if sawDefault { throw fail("non-default argument follows default argument") }
                params.append((name, nil))
            }
        }
        try expectOp(")")
        return params
    }

    private mutating func parseMacro() throws -> Stmt {
        let pos = current.pos
        advance()
        let name = try expectName()
        let savedSoft = soft
        soft = false
        defer { soft = savedSoft }
        let params = try parseSignature()
        let savedLoops = loopDepth
        loopDepth = 0
        defer { loopDepth = savedLoops }
        let body = try parseStatements(["endmacro"], dropNeedle: true, opener: pos)
        return Stmt(kind: .macro(Macro(name: name, params: params, body: body)), pos: pos)
    }

    private mutating func parseCallBlock() throws -> Stmt {
        let pos = current.pos
        advance()
        let params = isOp("(") ? try parseSignature() : []
        let call = try parseExpression()
        guard case .call = call.kind else { throw fail("expected call", pos) }
        let body = try parseStatements(["endcall"], dropNeedle: true, opener: pos)
        return Stmt(kind: .callBlock(call: call, params: params, body: body), pos: pos)
    }

    private mutating func parseAssignTarget(withNamespace: Bool, extraEnd: [String]) throws -> Target {
        // parse_tuple(simplified=True): names (or ns.attr), comma separated.
        var targets: [Target] = []
        var isTuple = false
        while true {
            if !targets.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEnd) { break }
            let pos = current.pos
            if isOp("(") {
                advance()
                let inner = try parseAssignTarget(withNamespace: withNamespace, extraEnd: [])
                try expectOp(")")
                targets.append(inner)
            } else {
                let name = try expectName()
                if ["true", "false", "True", "False", "none", "None"].contains(name) {
                    throw fail("can't assign to 'const'", pos)
                }
                if withNamespace && isOp(".") {
                    advance()
                    targets.append(.namespaceAttr(name, try expectName()))
                } else {
                    targets.append(.name(name))
                }
            }
            if isOp(",") { isTuple = true } else { break }
        }
        if targets.isEmpty { throw fail("expected an assignment target, got '\(describe(current))'") }
        if !isTuple { return targets[0] }
        return .tuple(targets)
    }

    // MARK: expressions

    private func isTupleEnd(_ extra: [String]) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd: return true
        case .op(")"): return true
        case .name(let n): return extra.contains(n)
        default: return false
        }
    }

    private mutating func parseTuple(withCondexpr: Bool = true, extraEnd: [String] = [], explicitParentheses: Bool = false) throws -> Expr {
        let pos = current.pos
        var args: [Expr] = []
        var isTuple = false
        while true {
            if !args.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEnd) { break }
            args.append(try parseExpression(withCondexpr: withCondexpr))
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let first = args.first { return first }
            if !explicitParentheses { throw fail("Expected an expression, got '\(describe(current))'") }
        }
        return Expr(kind: .tuple(args), pos: pos)
    }

    private mutating func parseExpression(withCondexpr: Bool = true) throws -> Expr {
        try enter()
        defer { depth -= 1 }
        return withCondexpr ? try parseCondexpr() : try parseOr()
    }

    private mutating func parseCondexpr() throws -> Expr {
        let start = i
        var expr1 = try parseOr()
        guard isName("if") else { return expr1 }
        // The whole conditional expression compiles in a soft frame.
        unknownNames.removeAll { $0.2 >= start }
        let savedSoft = soft
        soft = true
        defer { soft = savedSoft }
        while isName("if") {
            let pos = current.pos
            advance()
            let test = try parseOr()
            var otherwise: Expr? = nil
            if skipName("else") { otherwise = try parseCondexpr() }
            expr1 = Expr(kind: .condexpr(test: test, then: expr1, otherwise: otherwise), pos: pos)
        }
        return expr1
    }

    private mutating func parseOr() throws -> Expr {
        var left = try parseAnd()
        while isName("or") {
            let pos = current.pos
            advance()
            left = Expr(kind: .or(left, try parseAnd()), pos: pos)
        }
        return left
    }

    private mutating func parseAnd() throws -> Expr {
        var left = try parseNot()
        while isName("and") {
            let pos = current.pos
            advance()
            left = Expr(kind: .and(left, try parseNot()), pos: pos)
        }
        return left
    }

    private mutating func parseNot() throws -> Expr {
        try enter()
        defer { depth -= 1 }
        if isName("not") {
            let pos = current.pos
            advance()
            return Expr(kind: .not(try parseNot()), pos: pos)
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> Expr {
        let pos = current.pos
        let expr = try parseMath1()
        var ops: [(String, Expr)] = []
        while true {
            if case .op(let o) = current.kind, ["==", "!=", "<", "<=", ">", ">="].contains(o) {
                advance()
                ops.append((o, try parseMath1()))
            } else if skipName("in") {
                ops.append(("in", try parseMath1()))
            } else if isName("not") && isName("in", look()) {
                advance(); advance()
                ops.append(("notin", try parseMath1()))
            } else {
                break
            }
        }
        if ops.isEmpty { return expr }
        return Expr(kind: .compare(expr, ops), pos: pos)
    }

    private mutating func parseMath1() throws -> Expr {
        var left = try parseConcat()
        while case .op(let o) = current.kind, o == "+" || o == "-" {
            let pos = current.pos
            advance()
            left = Expr(kind: .binary(o, left, try parseConcat()), pos: pos)
        }
        return left
    }

    private mutating func parseConcat() throws -> Expr {
        let pos = current.pos
        var args = [try parseMath2()]
        while isOp("~") {
            advance()
            args.append(try parseMath2())
        }
        return args.count == 1 ? args[0] : Expr(kind: .concat(args), pos: pos)
    }

    private mutating func parseMath2() throws -> Expr {
        var left = try parsePow()
        while case .op(let o) = current.kind, ["*", "/", "//", "%"].contains(o) {
            let pos = current.pos
            advance()
            left = Expr(kind: .binary(o, left, try parsePow()), pos: pos)
        }
        return left
    }

    private mutating func parsePow() throws -> Expr {
        var left = try parseUnary()
        while isOp("**") {
            let pos = current.pos
            advance()
            left = Expr(kind: .binary("**", left, try parseUnary()), pos: pos)
        }
        return left
    }

    private mutating func parseUnary(withFilter: Bool = true) throws -> Expr {
        try enter()
        defer { depth -= 1 }
        let pos = current.pos
        var node: Expr
        if isOp("-") {
            advance()
            node = Expr(kind: .neg(try parseUnary(withFilter: false)), pos: pos)
        } else if isOp("+") {
            advance()
            node = Expr(kind: .pos(try parseUnary(withFilter: false)), pos: pos)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpr(node) }
        return node
    }

    private mutating func parsePrimary() throws -> Expr {
        let t = current
        switch t.kind {
        case .name(let n):
            advance()
            switch n {
            case "true", "True": return Expr(kind: .literal(.bool(true)), pos: t.pos)
            case "false", "False": return Expr(kind: .literal(.bool(false)), pos: t.pos)
            case "none", "None": return Expr(kind: .literal(.none), pos: t.pos)
            default: return Expr(kind: .name(n), pos: t.pos)
            }
        case .string(var s):
            advance()
            while case .string(let more) = current.kind {
                s += more
                advance()
            }
            return Expr(kind: .literal(.string(s)), pos: t.pos)
        case .integer(let v):
            advance()
            return Expr(kind: .literal(.int(v)), pos: t.pos)
        case .float(let v):
            advance()
            return Expr(kind: .literal(.double(v)), pos: t.pos)
        case .op("("):
            advance()
            let e = try parseTuple(explicitParentheses: true)
            try expectOp(")")
            return e
        case .op("["):
            advance()
            var items: [Expr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            try expectOp("]")
            return Expr(kind: .list(items), pos: t.pos)
        case .op("{"):
            advance()
            var items: [(Expr, Expr)] = []
            while !isOp("}") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                items.append((key, try parseExpression()))
            }
            try expectOp("}")
            return Expr(kind: .dict(items), pos: t.pos)
        default:
            throw fail("unexpected '\(describe(t))'")
        }
    }

    private mutating func parsePostfix(_ start: Expr) throws -> Expr {
        var node = start
        while true {
            if isOp(".") || isOp("[") {
                node = try parseSubscript(node)
            } else if isOp("(") {
                let pos = current.pos
                node = Expr(kind: .call(node, try parseCallArgs()), pos: pos)
            } else {
                return node
            }
        }
    }

    private mutating func parseFilterExpr(_ start: Expr) throws -> Expr {
        var node = start
        while true {
            if isOp("|") {
                node = try parseFilter(node)!
            } else if isName("is") {
                node = try parseTest(node)
            } else if isOp("(") {
                let pos = current.pos
                node = Expr(kind: .call(node, try parseCallArgs()), pos: pos)
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ node: Expr) throws -> Expr {
        let t = current
        advance()
        if case .op(".") = t.kind {
            let a = current
            advance()
            switch a.kind {
            case .name(let n): return Expr(kind: .getattr(node, n), pos: t.pos)
            case .integer(let v): return Expr(kind: .getitem(node, Expr(kind: .literal(.int(v)), pos: a.pos)), pos: t.pos)
            default: throw fail("expected name or number", a.pos)
            }
        }
        // '['
        var args: [Expr] = []
        while !isOp("]") {
            if !args.isEmpty { try expectOp(",") }
            args.append(try parseSubscribed())
        }
        try expectOp("]")
        guard !args.isEmpty else { throw fail("expected subscript expression", t.pos) }
        if args.count == 1 {
            if case .slice = args[0].kind { return args[0].withSliceBase(node) }
            return Expr(kind: .getitem(node, args[0]), pos: t.pos)
        }
        return Expr(kind: .getitem(node, Expr(kind: .tuple(args), pos: t.pos)), pos: t.pos)
    }

    private mutating func parseSubscribed() throws -> Expr {
        let pos = current.pos
        var parts: [Expr?] = []
        if isOp(":") {
            advance()
            parts = [nil]
        } else {
            let node = try parseExpression()
            if !isOp(":") { return node }
            advance()
            parts = [node]
        }
        if isOp(":") {
            parts.append(nil)
        } else if !isOp("]") && !isOp(",") {
            parts.append(try parseExpression())
        } else {
            parts.append(nil)
        }
        if isOp(":") {
            advance()
            if !isOp("]") && !isOp(",") { parts.append(try parseExpression()) } else { parts.append(nil) }
        } else {
            parts.append(nil)
        }
        // The base is filled in by parseSubscript.
        return Expr(kind: .slice(Expr(kind: .literal(.none), pos: pos), parts[0], parts[1], parts[2]), pos: pos)
    }

    private mutating func parseCallArgs() throws -> CallArgs {
        try expectOp("(")
        var result = CallArgs()
        var requireComma = false
        while !isOp(")") {
            if requireComma {
                try expectOp(",")
                if isOp(")") { break }
            }
            if isOp("*") {
                advance()
                result.starArgs = try parseExpression()
            } else if isOp("**") {
                advance()
                result.starKwargs = try parseExpression()
            } else if case .name(let key) = current.kind, isOp("=", look()) {
                advance(); advance()
                result.kwargs.append((key, try parseExpression()))
            } else {
                if !result.kwargs.isEmpty || result.starArgs != nil || result.starKwargs != nil {
                    throw fail("invalid syntax for function call expression")
                }
                result.args.append(try parseExpression())
            }
            requireComma = true
        }
        try expectOp(")")
        return result
    }

    private mutating func parseFilter(_ start: Expr?, startInline: Bool = false) throws -> Expr? {
        var node = start
        var inline = startInline
        while isOp("|") || inline {
            if !inline { advance() }
            let pos = current.pos
            var name = try expectName()
            while isOp(".") {
                advance()
                name += "." + (try expectName())
            }
            if !soft && !knownFilters.contains(name) { unknownNames.append(("No filter named '\(name)'.", pos, i)) }
            let args = isOp("(") ? try parseCallArgs() : CallArgs()
            node = Expr(kind: .filter(node, name, args), pos: pos)
            inline = false
        }
        return node
    }

    private mutating func parseTest(_ node: Expr) throws -> Expr {
        let pos = current.pos
        advance() // 'is'
        let negated = skipName("not")
        let namePos = current.pos
        var name = try expectName()
        while isOp(".") {
            advance()
            name += "." + (try expectName())
        }
        if !soft && !knownTests.contains(name) { unknownNames.append(("No test named '\(name)'.", namePos, i)) }
        var args = CallArgs()
        if isOp("(") {
            args = try parseCallArgs()
        } else {
            var takesArg = false
            switch current.kind {
            case .name(let n): takesArg = !["else", "or", "and"].contains(n)
            case .string, .integer, .float, .op("("), .op("["), .op("{"): takesArg = true
            default: break
            }
            if takesArg {
                if isName("is") { throw fail("You cannot chain multiple tests with is") }
                args.args = [try parsePostfix(try parsePrimary())]
            }
        }
        let test = Expr(kind: .test(node, name, args), pos: pos)
        return negated ? Expr(kind: .not(test), pos: pos) : test
    }
}

extension Expr {
    /// Replaces the placeholder base of a parsed slice with the sliced expression.
    fileprivate func withSliceBase(_ base: Expr) -> Expr {
        guard case .slice(_, let a, let b, let c) = kind else { return self }
        return Expr(kind: .slice(base, a, b, c), pos: pos)
    }
}
