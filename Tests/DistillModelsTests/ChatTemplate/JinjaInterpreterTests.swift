import Foundation
import XCTest

@testable import DistillModels

/// One small template per jinja2 construct. Every expected string was produced by jinja2 3.1.6
/// through transformers 4.46.3's `_compile_jinja_template` (trim_blocks, lstrip_blocks, sandbox,
/// its tojson), so these pin Python's semantics: `str()` of values, floor division and modulo,
/// slicing, undefined handling, whitespace control, generators from `map`/`select`, ….
final class JinjaInterpreterTests: XCTestCase {
    /// Renders `template` with the variables in the JSON object `context` (key order kept).
    func render(_ template: String, _ context: String = "{}") throws -> String {
        guard case .dict(let d) = try JinjaJSON.parse(context) else { throw FileError(file: "context", "not an object") }
        var vars: [String: JinjaValue] = [:]
        for (k, v) in d.pairs { vars[k.pythonString] = v }
        return try ChatTemplate(source: template).render(context: vars)
    }

    /// The template compiles but rendering it fails (as it does in jinja2), or it fails to compile.
    func assertFails(_ template: String, _ context: String = "{}", file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try render(template, context), file: file, line: line) { error in
            XCTAssertTrue(error is TemplateError, "\(error)", file: file, line: line)
        }
    }

    /// Macros (a closure holding the scope that holds it), a namespace inside itself and a
    /// recursive loop make reference cycles; a render frees them all, also when it fails (the
    /// fuzzer's LeakSanitizer found the macro cycle: a server rendered such templates per request).
    func testRendersFreeWhatTheyMake() throws {
        let scopes = JinjaScope.live, namespaces = JinjaNamespace.live
        let template = """
            {%- macro m(x) %}[{{ x }}]{% endmacro -%}
            {%- set ns = namespace(f=m) %}{% set ns.me = ns -%}
            {%- for item in tree recursive %}{{ ns.f(item.name) }}{{ loop(item.children) if item.children }}{% endfor -%}
            {%- call m('c') %}inner{% endcall -%}
            """
        let context = #"{"tree": [{"name": "a", "children": [{"name": "b", "children": []}]}]}"#
        for _ in 0..<3 { XCTAssertEqual(try render(template, context), "[a][b][c]") }
        assertFails(template + "{{ raise_exception('stop') }}", context)
        XCTAssertEqual(JinjaScope.live, scopes)
        XCTAssertEqual(JinjaNamespace.live, namespaces)
    }

    // MARK: generated from jinja2 (see the class comment)

    func testText() throws {
        XCTAssertEqual(try render("Hello, world!\n"),
                       "Hello, world!")
    }

    func testPrintVars() throws {
        XCTAssertEqual(try render("{{ a }}|{{ b }}|{{ c }}|{{ d }}|{{ e }}|{{ f }}", "{\"a\": \"x\", \"b\": 3, \"c\": 2.5, \"d\": true, \"e\": null, \"f\": [1, \"two\", null]}"),
                       "x|3|2.5|True|None|[1, 'two', None]")
    }

    func testUndefinedRendersEmpty() throws {
        XCTAssertEqual(try render("[{{ missing }}][{{ missing | length }}][{{ missing is defined }}][{{ missing is not defined }}]"),
                       "[][0][False][True]")
    }

    func testLiterals() throws {
        XCTAssertEqual(try render("{{ 'a\\tb' }}{{ \"q\\\"q\" }}{{ 'it\\'s' }}{{ 'ｘ\\u00e9\\x41\\101' }}{{ 1_000 }}{{ 0x1f }}{{ 1.5e3 }}{{ true }}{{ True }}{{ none }}{{ [1, [2, 3], {'k': 'v'}] }}{{ {'a': 1, 'b': [none, false]} }}"),
                       "a\tbq\"qit'sｘéAA1000311500.0TrueTrueNone[1, [2, 3], {'k': 'v'}]{'a': 1, 'b': [None, False]}")
    }

    func testArithmetic() throws {
        XCTAssertEqual(try render("{{ 7 + 2 }} {{ 7 - 2 }} {{ 7 * 2 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 + 2.5 }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 10 / 4 * 2 }} {{ -3 }} {{ 0.1 + 0.2 }}"),
                       "9 5 14 3.5 3 -4 1 2 1024 3.5 ababab [1, 2] 5.0 -3 0.30000000000000004")
    }

    func testStringConcat() throws {
        XCTAssertEqual(try render("{{ 'a' + 'b' }}{{ 'n=' ~ 5 ~ none ~ missing }}{{ x ~ y }}", "{\"x\": 1, \"y\": [1]}"),
                       "abn=5None1[1]")
    }

    func testComparisons() throws {
        XCTAssertEqual(try render("{{ 1 < 2 }}{{ 2 <= 1 }}{{ 'a' < 'b' }}{{ 1 == 1.0 }}{{ 1 != 2 }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ [1,2] == [1,2] }}{{ none == none }}{{ 'x' == 'x' }}"),
                       "TrueFalseTrueTrueTrueTrueFalseTrueTrueTrue")
    }

    func testInOperator() throws {
        XCTAssertEqual(try render("{{ 'ell' in 'hello' }}{{ 3 in [1,2,3] }}{{ 'k' in {'k': 1} }}{{ 'z' not in 'abc' }}{{ 'a' in missing }}"),
                       "TrueTrueTrueTrueFalse")
    }

    func testLogic() throws {
        XCTAssertEqual(try render("{{ true and 'yes' }}|{{ false or 'fallback' }}|{{ not 0 }}|{{ '' or [] or 'last' }}|{{ 0 and 1 }}|{{ not missing }}"),
                       "yes|fallback|True|last|0|True")
    }

    func testTernary() throws {
        XCTAssertEqual(try render("{{ 'a' if x else 'b' }}{{ 'a' if not x else 'b' }}[{{ 'only' if false }}]", "{\"x\": 1}"),
                       "ab[]")
    }

    func testAttrAndItem() throws {
        XCTAssertEqual(try render("{{ m.role }}{{ m['role'] }}{{ m.content.upper() }}{{ xs[0] }}{{ xs[-1] }}{{ xs.1 }}[{{ m.missing }}][{{ xs[10] }}]", "{\"m\": {\"role\": \"user\", \"content\": \"hi\"}, \"xs\": [\"a\", \"b\", \"c\"]}"),
                       "useruserHIacb[][]")
    }

    func testSlices() throws {
        XCTAssertEqual(try render("{{ xs[1:] }}{{ xs[:2] }}{{ xs[::-1] }}{{ xs[::2] }}{{ xs[-2:] }}{{ s[1:4] }}{{ s[::-1] }}{{ xs[5:] }}", "{\"xs\": [1, 2, 3, 4], \"s\": \"héllo\"}"),
                       "[2, 3, 4][1, 2][4, 3, 2, 1][1, 3][3, 4]éllolléh[]")
    }

    func testIfElifElse() throws {
        XCTAssertEqual(try render("{% for v in [1, 2, 3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}many{% endif %};{% endfor %}"),
                       "one;two;many;")
    }

    func testForLoopVars() throws {
        XCTAssertEqual(try render("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}", "{\"xs\": [\"a\", \"b\", \"c\"]}"),
                       "1032TrueFalse3|2121FalseFalse3|3210FalseTrue3|")
    }

    func testForPrevNextCycle() throws {
        XCTAssertEqual(try render("{% for x in xs %}{{ loop.previtem }}>{{ x }}>{{ loop.nextitem }}:{{ loop.cycle('odd', 'even') }} {% endfor %}", "{\"xs\": [1, 2, 3]}"),
                       ">1>2:odd 1>2>3:even 2>3>:odd ")
    }

    func testForElse() throws {
        XCTAssertEqual(try render("{% for x in [] %}{{ x }}{% else %}empty{% endfor %}{% for x in [1] %}{{ x }}{% else %}empty{% endfor %}"),
                       "empty1")
    }

    func testForFilter() throws {
        XCTAssertEqual(try render("{% for m in messages if m.role == 'user' %}{{ loop.index }}/{{ loop.length }}:{{ m.content }} {% endfor %}", "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"u1\"}, {\"role\": \"assistant\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"u2\"}]}"),
                       "1/2:u1 2/2:u2 ")
    }

    func testForUnpackItems() throws {
        XCTAssertEqual(try render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d | items %}{{ k }}{% endfor %}{% for k in d %}{{ k }}{% endfor %}{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}", "{\"d\": {\"b\": 1, \"a\": 2}}"),
                       "b=1;a=2;baba37")
    }

    func testForStringAndNested() throws {
        XCTAssertEqual(try render("{% for c in 'ab' %}{% for d in [1, 2] %}{{ c }}{{ d }}{{ loop.index }}{% endfor %}{{ loop.index }} {% endfor %}"),
                       "a11a221 b11b222 ")
    }

    func testLoopScoping() throws {
        XCTAssertEqual(try render("{% set x = 1 %}{% for i in range(2) %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}"),
                       "12121")
    }

    func testIfDoesNotScope() throws {
        XCTAssertEqual(try render("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}"),
                       "2")
    }

    func testBreakContinue() throws {
        XCTAssertEqual(try render("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
                       "0134")
    }

    func testSetAndNamespace() throws {
        XCTAssertEqual(try render("{% set ns = namespace(found=false, n=0) %}{% for x in [1, 2, 3] %}{% if x == 2 %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.found }} {{ ns.n }}{% set a, b = 1, 2 %} {{ a }}{{ b }}{% set t = (1, 2) %}{{ t }}"),
                       "True 6 12(1, 2)")
    }

    func testSetBlock() throws {
        XCTAssertEqual(try render("{% set body %}Hi {{ name }}!{% endset %}[{{ body }}]{% set up | upper %}shout{% endset %}{{ up }}", "{\"name\": \"Ann\"}"),
                       "[Hi Ann!]SHOUT")
    }

    func testMacro() throws {
        XCTAssertEqual(try render("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', greeting='Hi') }} {{ greet('Cy', 'Yo') }}"),
                       "Hello, Ann! Hi, Bob! Yo, Cy!")
    }

    func testMacroRecursionAndCaller() throws {
        XCTAssertEqual(try render("{% macro render(v) %}{% if v is mapping %}{{ '{' }}{% for k, x in v.items() %}{{ k }}:{{ render(x) }}{% endfor %}{{ '}' }}{% else %}{{ v }}{% endif %}{% endmacro %}{{ render({'a': {'b': 1}}) }}{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inner{% endcall %}"),
                       "{a:{b:1}}<inner>")
    }

    func testComments() throws {
        XCTAssertEqual(try render("a{# a comment {{ x }} #}b{#- trimmed -#}   c"),
                       "abc")
    }

    func testWhitespaceControl() throws {
        XCTAssertEqual(try render("  {{- ' x ' -}}  \n  {%- if true -%}  y  {%- endif -%}  \n z"),
                       " x yz")
    }

    func testTrimBlocksLstripBlocks() throws {
        XCTAssertEqual(try render("<ul>\n    {% for x in xs %}\n    <li>{{ x }}</li>\n    {% endfor %}\n</ul>\n", "{\"xs\": [1, 2]}"),
                       "<ul>\n    <li>1</li>\n    <li>2</li>\n</ul>")
    }

    func testLstripOnlyAtLineStart() throws {
        XCTAssertEqual(try render("a {% if true %}b{% endif %} c\n  {# c #}\n  {{ 'v' }}\n"),
                       "a b c\n  v")
    }

    func testPlusDisablesStripping() throws {
        XCTAssertEqual(try render("  {%+ if true +%}\nkept\n  {%+ endif %}"),
                       "  \nkept\n  ")
    }

    func testRawBlock() throws {
        XCTAssertEqual(try render("{% raw %}{{ not evaluated }}{% endraw %}|"),
                       "{{ not evaluated }}|")
    }

    func testFiltersBasic() throws {
        XCTAssertEqual(try render("{{ '  pad  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}|{{ 'hello WORLD' | capitalize }}|{{ 'hello big-world' | title }}|{{ [1, 2] | length }}{{ 'héllo' | length }}{{ {'a': 1} | count }}|{{ 42 | string }}|{{ [1, 'a'] | join(', ') }}|{{ xs | first }}{{ xs | last }}|{{ missing | default('dflt') }}{{ '' | default('e', true) }}{{ none | default('n') }}|{{ '42' | int }}{{ '4.7' | int }}{{ 'x' | int(7) }}{{ 3.9 | int }}|{{ 'aXbX' | replace('X', '-') }}|{{ 'ab' | list }}", "{\"xs\": [3, 4]}"),
                       "pad|hi|ABab|Hello world|Hello Big-World|251|42|1, a|34|dflteNone|42473|a-b-|['a', 'b']")
    }

    func testFiltersMore() throws {
        XCTAssertEqual(try render("{{ [3, 1, 2] | sort }}{{ ['b', 'A', 'c'] | sort }}{{ [3, 1, 2] | sort(reverse=true) }}|{{ [1, 2, 2, 1] | unique | list }}|{{ [1, 2, 3] | sum }}{{ [1, 5, 3] | max }}{{ [4, 2] | min }}|{{ -3 | abs }}{{ 2.567 | round(2) }}{{ 2.5 | round }}|{{ [1, 2, 3] | reverse | list }}{{ 'abc' | reverse }}|{{ 'a b  c' | wordcount }}|{{ {'b': 1, 'a': 2} | dictsort }}|{{ [1,2,3,4,5] | batch(2) | list }}|{{ 'x' | center(5) }}|{{ '<a & b>' | e }}"),
                       "[1, 2, 3]['A', 'b', 'c'][3, 2, 1]|[1, 2]|652|32.572.0|[3, 2, 1]cba|3|[('a', 2), ('b', 1)]|[[1, 2], [3, 4], [5]]|  x  |&lt;a &amp; b&gt;")
    }

    func testSelectattrMap() throws {
        XCTAssertEqual(try render("{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}|{{ ms | rejectattr('role', 'eq', 'user') | list | length }}|{{ ms | map(attribute='role') | unique | list }}|{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3, 4] | reject('even') | list }}|{{ ['a', 'b'] | map('upper') | list }}|{{ ms | selectattr('flag') | list | length }}", "{\"ms\": [{\"role\": \"user\", \"content\": \"u1\"}, {\"role\": \"assistant\", \"content\": \"a1\", \"flag\": true}, {\"role\": \"user\", \"content\": \"u2\"}]}"),
                       "u1,u2|1|['user', 'assistant']|[1, 3]|[1, 3]|['A', 'B']|1")
    }

    func testTojson() throws {
        XCTAssertEqual(try render("{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'é\"\\n' | tojson }}|{{ [1.0, none, true] | tojson }}|{{ d | tojson(sort_keys=true) }}|{{ d | tojson(separators=(',', ':')) }}|{{ {} | tojson(indent=4) }}|{{ 'é' | tojson(ensure_ascii=true) }}", "{\"d\": {\"z\": [1, {\"k\": \"v\"}], \"a\": \"ü 🚀\"}}"),
                       "{\"z\": [1, {\"k\": \"v\"}], \"a\": \"ü 🚀\"}|{\n  \"z\": [\n    1,\n    {\n      \"k\": \"v\"\n    }\n  ],\n  \"a\": \"ü 🚀\"\n}|\"é\\\"\\n\"|[1.0, null, true]|{\"a\": \"ü 🚀\", \"z\": [1, {\"k\": \"v\"}]}|{\"z\":[1,{\"k\":\"v\"}],\"a\":\"ü 🚀\"}|{}|\"\\u00e9\"")
    }

    func testIndentFilter() throws {
        XCTAssertEqual(try render("{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}|{{ 'a\n\nb' | indent('> ', blank=true) }}"),
                       "a\n  b\n\n  c|  a\n  b|a\n> \n> b")
    }

    func testTests() throws {
        XCTAssertEqual(try render("{{ 1 is odd }}{{ 2 is even }}{{ 6 is divisibleby 3 }}{{ x is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ x is not none }}{{ 'a' is in 'cat' }}{{ 3 is gt 2 }}{{ 'A' is upper }}{{ 'a' is lower }}{{ range is callable }}{{ 1 is sameas 1 }}{{ 'x' is eq 'x' }}{{ missing is undefined }}", "{\"x\": null}"),
                       "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrue")
    }

    func testStringMethods() throws {
        XCTAssertEqual(try render("{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ '  a  b '.split() }}|{{ 'a-b-c'.split('-', 1) }}|{{ 'a-b-c'.rsplit('-', 1) }}|{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('x', 'lo')) }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'hello'.find('l') }}{{ 'hello'.count('l') }}|{{ '-'.join(['a', 'b']) }}|{{ 'ab\\ncd'.splitlines() }}|{{ 'hello world'.title() }}{{ 'hELLO'.capitalize() }}|{{ '{} and {}'.format(1, 'two') }}|{{ 'x</think>y</think>z'.split('</think>')[-1] }}", "{\"s\": \"  \\t padded \\n \"}"),
                       "padded|padded \n |  \t padded|['a', 'b', '', 'c']|['a', 'b']|['a', 'b-c']|['a-b', 'c']|TrueTrue|HIhi|bba|22|a-b|['ab', 'cd']|Hello WorldHello|1 and two|z")
    }

    func testDictMethods() throws {
        XCTAssertEqual(try render("{{ d.keys() | list }}{{ d.values() | list }}{{ d.items() | list }}{{ d.get('a') }}{{ d.get('zz', 'dflt') }}{{ d.get('zz') }}", "{\"d\": {\"a\": 1, \"b\": 2}}"),
                       "['a', 'b'][1, 2][('a', 1), ('b', 2)]1dfltNone")
    }

    func testRangeGlobal() throws {
        XCTAssertEqual(try render("{{ range(3) | list }}{{ range(1, 7, 2) | list }}{{ range(5, 0, -2) | list }}"),
                       "[0, 1, 2][1, 3, 5][5, 3, 1]")
    }

    func testFilterBlockAndWith() throws {
        XCTAssertEqual(try render("{% filter upper %}abc {{ x }}{% endfilter %}{% with y = x + 1 %}{{ y }}{% endwith %}[{{ y }}]", "{\"x\": 1}"),
                       "ABC 12[]")
    }

    func testPythonRepr() throws {
        XCTAssertEqual(try render("{{ ['it\\'s', \"say \\\"hi\\\"\", 'both \\' \"', 'nl\\n', 1.5, 1e20, 1e-7, -0.0, 100.0] }}"),
                       "[\"it's\", 'say \"hi\"', 'both \\' \"', 'nl\\n', 1.5, 1e+20, 1e-07, -0.0, 100.0]")
    }

    func testUnicodeStrings() throws {
        XCTAssertEqual(try render("{{ s | length }}{{ s[1] }}{{ s | upper }}{{ s.split('｜') }}{{ '｜' in s }}", "{\"s\": \"a｜é🚀\"}"),
                       "4｜A｜É🚀['a', 'é🚀']True")
    }

    func testGenerationTag() throws {
        XCTAssertEqual(try render("{% for m in ms %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}", "{\"ms\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}"),
                       "qa")
    }

    func testGeneratorTruthiness() throws {
        XCTAssertEqual(try render("{% if [] | select('odd') %}truthy{% endif %}|{{ [] | select('odd') | list | length }}"),
                       "truthy|0")
    }

    func testErrorUndefinedAttribute() throws {
        // jinja2: UndefinedError: 'missing' is undefined
        assertFails("{{ missing.attr }}")
    }

    func testErrorAddStrInt() throws {
        // jinja2: TypeError: can only concatenate str (not "int") to str
        assertFails("{{ 'a' + 1 }}")
    }

    func testErrorUnknownFilter() throws {
        // jinja2: TemplateAssertionError: No filter named 'nosuchfilter'.
        assertFails("{{ 1 | nosuchfilter }}")
    }

    func testErrorIterateNone() throws {
        // jinja2: TypeError: 'NoneType' object is not iterable
        assertFails("{% for x in none %}{% endfor %}")
    }

    func testErrorTojsonGenerator() throws {
        // jinja2: TypeError: Object of type generator is not JSON serializable
        assertFails("{{ [1] | map('string') | tojson }}")
    }

    func testErrorListAppendUnsafe() throws {
        // jinja2: SecurityError: access to attribute 'append' of 'list' object is unsafe.
        assertFails("{{ xs.append(1) }}", "{\"xs\": []}")
    }

    /// Fixtures/chat_template/jinja_cases.json: more corners (whitespace control with CRLF and
    /// trailing newlines, Markup, tuples, macros' varargs/kwargs, sort/dictsort, error cases).
    func testInterpreterCornerCasesMatchJinja2() throws {
        guard case .array(let cases) = try JinjaJSON.parse(String(contentsOf: try fixtureURL("chat_template", "jinja_cases.json"), encoding: .utf8)) else {
            return XCTFail("jinja_cases.json is not a list")
        }
        XCTAssertGreaterThan(cases.count, 50)
        for c in cases {
            guard case .dict(let d) = c, case .string(let template)? = d["template"], case .dict(let ctx)? = d["context"] else {
                return XCTFail("bad case \(c.pythonRepr)")
            }
            var vars: [String: JinjaValue] = [:]
            for (k, v) in ctx.pairs { vars[k.pythonString] = v }
            let result = Result { try ChatTemplate(source: template).render(context: vars) }
            if case .string(let expected)? = d["expected"] {
                switch result {
                case .success(let got): XCTAssertEqual(got, expected, template.debugDescription)
                case .failure(let e): XCTFail("\(template.debugDescription) threw \(e), expected \(expected.debugDescription)")
                }
            } else {
                if case .success(let got) = result {
                    XCTFail("\(template.debugDescription) rendered \(got.debugDescription); jinja2 raised \(d["error"]?.pythonRepr ?? "")")
                }
            }
        }
    }

    // MARK: errors, positions, raise_exception

    func testSyntaxErrorsReportLineAndColumn() {
        // (template, line, column, part of the message)
        let cases: [(String, Int, Int, String)] = [
            ("line one\n{% if x %}\nunclosed", 2, 4, "endif"),
            ("{{ 1 + }}", 1, 8, "unexpected"),
            ("a\nb\n  {% for x in %}{% endfor %}", 3, 15, "Expected an expression"),
            ("{% endfor %}", 1, 4, "Encountered unknown tag 'endfor'"),
            ("{{ 'unterminated }}", 1, 4, "unterminated string"),
            ("x\n{{ a ]] }}", 2, 6, "unexpected ']'"),
            ("{% set = 1 %}", 1, 8, "expected"),
            ("{{ x | nosuchfilter }}", 1, 8, "No filter named 'nosuchfilter'"),
            ("{# never closed", 1, 1, "Missing end of comment tag"),
            ("ok {{ x ", 1, 4, "unexpected end of template"),
            ("{% frobnicate %}", 1, 4, "unknown tag 'frobnicate'"),
            ("{% for x in xs %}{% endfor %}{% break %}", 1, 33, "'break' outside loop"),
        ]
        for (template, line, column, fragment) in cases {
            XCTAssertThrowsError(try ChatTemplate(source: template, file: "t.jinja"), template) { error in
                guard let e = error as? TemplateError else { return XCTFail("\(error)") }
                XCTAssertEqual(e.kind, .syntax, template)
                XCTAssertEqual(e.line, line, "line of \(template.debugDescription): \(e)")
                XCTAssertEqual(e.column, column, "column of \(template.debugDescription): \(e)")
                XCTAssertTrue(e.message.contains(fragment), "\(e.message) should mention \(fragment)")
                XCTAssertTrue(e.description.hasPrefix("t.jinja:\(line):\(column): syntax error:"), e.description)
                XCTAssertEqual(e.fileError.location, "line \(line), column \(column)")
            }
        }
    }

    func testUnknownFilterInsideIfFailsOnlyWhenReached() throws {
        // jinja2 compiles if-blocks and conditional expressions in a "soft" frame.
        XCTAssertEqual(try render("{% if false %}{{ 1 | nosuch }}{% endif %}ok"), "ok")
        XCTAssertEqual(try render("{{ 1 | nosuch if false else 2 }}"), "2")
        assertFails("{% if true %}{{ 1 | nosuch }}{% endif %}")
    }

    func testRaiseExceptionSurfacesTheTemplatesMessage() throws {
        let t = try ChatTemplate(source: """
            {% for m in messages %}
            {% if (m.role == 'user') != (loop.index0 % 2 == 0) %}
              {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
            {% endif %}
            {{ m.content }}
            {% endfor %}
            """, file: "alternate.jinja")
        XCTAssertEqual(try t.render(messages: [ChatMessage(role: "user", content: "a")], addGenerationPrompt: false,
                                    bosToken: nil, eosToken: nil), "a\n")
        XCTAssertThrowsError(try t.render(messages: [ChatMessage(role: "user", content: "a"), ChatMessage(role: "user", content: "b")],
                                          addGenerationPrompt: false, bosToken: nil, eosToken: nil)) { error in
            guard let e = error as? TemplateError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.kind, .raised)
            XCTAssertEqual(e.message, "Conversation roles must alternate user/assistant/user/assistant/...")
            XCTAssertEqual(e.line, 3)
            XCTAssertTrue(e.description.contains("alternate.jinja:3:"), e.description)
        }
    }

    func testRenderErrorsCarryPositions() {
        XCTAssertThrowsError(try render("line\n  {{ 'a' + 1 }}")) { error in
            guard let e = error as? TemplateError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.kind, .render)
            XCTAssertEqual(e.message, "can only concatenate str (not \"int\") to str")
            XCTAssertEqual(e.line, 2)
            XCTAssertEqual(e.column, 10) // the operator
        }
        XCTAssertThrowsError(try render("{{ message.content.strip() }}")) { error in
            XCTAssertEqual((error as? TemplateError)?.message, "'message' is undefined")
        }
        XCTAssertThrowsError(try render("{{ m.tool_calls.function }}", #"{"m": {"role": "user"}}"#)) { error in
            XCTAssertEqual((error as? TemplateError)?.message, "'dict object' has no attribute 'tool_calls'")
        }
    }

    func testHostileInputFailsCleanly() throws {
        // Deep but reasonable nesting works; absurd nesting and runaway recursion are errors, not crashes.
        XCTAssertEqual(try render("{{ " + String(repeating: "(", count: 60) + "1" + String(repeating: ")", count: 60) + " }}"), "1")
        XCTAssertEqual(try render(String(repeating: "{% if true %}", count: 60) + "x" + String(repeating: "{% endif %}", count: 60)), "x")
        XCTAssertThrowsError(try ChatTemplate(source: "{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}")) {
            XCTAssertEqual(($0 as? TemplateError)?.kind, .syntax)
        }
        XCTAssertThrowsError(try render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")) {
            XCTAssertTrue(($0 as? TemplateError)?.message.contains("recursion") ?? false, "\($0)")
        }
        assertFails("{{ (-9223372036854775807 - 1) // -1 }}") // Python has big integers; Distill reports the overflow
        assertFails("{{ range(-9223372036854775807, 9223372036854775807) | length }}")
        XCTAssertEqual(try render("{{ [1, 2, 3][::9223372036854775807] }}"), "[1]")
        assertFails("{{ 'abc' | truncate(1) }}") // jinja2 asserts length >= len(end)
    }

    func testRecursiveLoop() throws {
        XCTAssertEqual(try render("{% for n in tree recursive %}{{ loop.depth }}{{ n.name }}{% if n.children %}[{{ loop(n.children) }}]{% endif %}{% endfor %}",
                                  #"{"tree": [{"name": "a", "children": [{"name": "b", "children": []}, {"name": "c"}]}, {"name": "d"}]}"#),
                       "1a[2b2c]1d")
    }

    // MARK: values and API

    func testChatMessageExtrasAndUndefinedSpecialTokens() throws {
        let t = try ChatTemplate(source: "{{ bos_token }}|{{ bos_token is defined }}|{{ eos_token }}|{{ tools is none }}|"
                                 + "{% for m in messages %}{{ m | tojson }}{% endfor %}|{{ add_generation_prompt }}|{{ custom }}")
        let out = try t.render(messages: [ChatMessage(role: "assistant", content: "x", extras: ["content": nil, "name": "bot"])],
                               addGenerationPrompt: true, bosToken: nil, eosToken: "</s>", extra: ["custom": [1, "a"]])
        XCTAssertEqual(out, #"|False|</s>|True|{"role": "assistant", "content": null, "name": "bot"}|True|[1, 'a']"#)
    }

    func testPythonFloatRepr() {
        let cases: [(Double, String)] = [(1, "1.0"), (0.1, "0.1"), (1e16, "1e+16"), (1e15, "1000000000000000.0"), (1e-5, "1e-05"),
                                         (0.0001, "0.0001"), (123.456, "123.456"), (-2.5e-10, "-2.5e-10"), (1.5e300, "1.5e+300"),
                                         (.infinity, "inf"), (-0.0, "-0.0"), (2.0 / 3.0, "0.6666666666666666")]
        for (d, s) in cases { XCTAssertEqual(pythonFloatRepr(d), s) }
    }

    func testStrftimeNowUsesTheClock() throws {
        var t = try ChatTemplate(source: #"{{ strftime_now("%d %b %Y") }}|{{ strftime_now("%A %B %-d %H:%M:%S %j %y %I%p") }}"#)
        var c = DateComponents()
        (c.year, c.month, c.day, c.hour, c.minute, c.second) = (2024, 7, 6, 15, 4, 5)
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = .current
        let date = cal.date(from: c)!
        t.now = { date }
        XCTAssertEqual(try t.render(context: [:]), "06 Jul 2024|Saturday July 6 15:04:05 188 24 03PM")
    }

    func testJSONRoundTripKeepsKeyOrder() throws {
        let text = #"{"z": 1, "a": [true, null, 2.5, "é\n\"q\""], "m": {}}"#
        XCTAssertEqual(try JinjaJSON.dumps(JinjaJSON.parse(text)), text)
    }

    // MARK: speed

    func testThousandMessageConversationRendersQuickly() throws {
        // The DeepSeek-R1 template touches a namespace and splits every assistant message.
        let url = try fixtureURL("chat_template", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")
        let deepseek = try ChatTemplate(contentsOf: url)
        let qwen = try ChatTemplate(contentsOf: try fixtureURL("chat_template", "Qwen-Qwen2.5-7B-Instruct.jinja"))
        var messages = [ChatMessage(role: "system", content: "You are helpful.")]
        for i in 0..<1000 {
            messages.append(i % 2 == 0 ? ChatMessage(role: "user", content: "Question \(i): what is \(i) + \(i)?")
                                       : ChatMessage(role: "assistant", content: "<think>\nadd them\n</think>\n\nIt is \(2 * i)."))
        }
        let start = Date()
        let a = try deepseek.render(messages: messages, addGenerationPrompt: true, bosToken: "<｜begin▁of▁sentence｜>", eosToken: "<｜end▁of▁sentence｜>")
        let b = try qwen.render(messages: messages, addGenerationPrompt: true, bosToken: nil, eosToken: "<|im_end|>")
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(a.components(separatedBy: "<｜User｜>").count, 501)
        XCTAssertEqual(b.components(separatedBy: "<|im_start|>").count, 1003)
        XCTAssertFalse(a.contains("add them"))
        XCTAssertLessThan(elapsed, 1.0, "rendering 2 × 1001 messages took \(elapsed) s")
        print("rendered 2 × 1001 messages in \(String(format: "%.1f", elapsed * 1000)) ms")
    }
}
