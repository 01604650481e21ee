/// Syntax tree of a template, one node per jinja2 construct the parser knows.
struct Expr {
    indirect enum Kind {
        case literal(JinjaValue)
        case name(String)
        case list([Expr])
        case tuple([Expr])
        case dict([(Expr, Expr)])
        case getattr(Expr, String)
        case getitem(Expr, Expr)
        /// `x[start:stop:step]`
        case slice(Expr, Expr?, Expr?, Expr?)
        case call(Expr, CallArgs)
        case filter(Expr?, String, CallArgs)
        case test(Expr, String, CallArgs)
        case not(Expr)
        case neg(Expr)
        case pos(Expr)
        case and(Expr, Expr)
        case or(Expr, Expr)
        /// `+ - * / // % **`
        case binary(String, Expr, Expr)
        /// `a ~ b ~ c`
        case concat([Expr])
        /// `a < b == c`, `x in y`, `x not in y` (chained like Python)
        case compare(Expr, [(String, Expr)])
        /// `then if test else otherwise` (`otherwise` absent: undefined)
        case condexpr(test: Expr, then: Expr, otherwise: Expr?)
    }

    var kind: Kind
    var pos: SourcePos
}

struct CallArgs {
    var args: [Expr] = []
    var kwargs: [(String, Expr)] = []
    var starArgs: Expr? = nil
    var starKwargs: Expr? = nil
}

/// Assignment target of `set`, `for` and `with`.
indirect enum Target {
    case name(String)
    case tuple([Target])
    /// `ns.attr`
    case namespaceAttr(String, String)
}

struct Macro {
    var name: String
    var params: [(String, Expr?)]
    var body: [Stmt]
}

struct Stmt {
    indirect enum Kind {
        case text(String)
        case output(Expr)
        case ifChain([(Expr, [Stmt])], otherwise: [Stmt])
        case forLoop(target: Target, iter: Expr, filter: Expr?, body: [Stmt], otherwise: [Stmt], recursive: Bool)
        case set(Target, Expr)
        case setBlock(Target, filter: Expr?, body: [Stmt])
        case macro(Macro)
        /// `{% call(params) macro(args) %}body{% endcall %}`
        case callBlock(call: Expr, params: [(String, Expr?)], body: [Stmt])
        /// `{% filter f(args) | g %}body{% endfilter %}`; the filter chain's innermost input is nil.
        case filterBlock(Expr, body: [Stmt])
        case with([(Target, Expr)], body: [Stmt])
        /// transformers' `{% generation %}…{% endgeneration %}`: renders its body.
        case generation([Stmt])
        case breakLoop
        case continueLoop
    }

    var kind: Kind
    var pos: SourcePos
}
