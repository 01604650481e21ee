import Foundation
import XCTest

@testable import DistillModels

/// Every chat template in Fixtures/chat_template renders every conversation exactly as
/// transformers 4.46.3 did (scripts/make_chat_template_fixtures.py), or fails where it failed:
/// with the same message where the template called raise_exception.
final class ChatTemplateFixtureTests: XCTestCase {
    /// The fixed local time the fixture script gave strftime_now().
    static func fixedNow(_ iso: String) -> Date {
        let parts = iso.split(whereSeparator: { "-T:".contains($0) }).compactMap { Int($0) }
        var c = DateComponents()
        (c.year, c.month, c.day, c.hour, c.minute, c.second) = (parts[0], parts[1], parts[2], parts[3], parts[4], parts[5])
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = .current
        return cal.date(from: c)!
    }

    struct Failure: CustomStringConvertible {
        var file: String, name: String, detail: String
        var description: String { "\(file) [\(name)]: \(detail)" }
    }

    func testAllFixtureCasesRenderLikeTransformers() throws {
        let doc = try JinjaJSON.parse(String(contentsOf: try fixtureURL("chat_template", "cases.json"), encoding: .utf8))
        guard case .dict(let root) = doc, case .array(let templates)? = root["templates"], case .string(let nowISO)? = root["now"] else {
            return XCTFail("cases.json has an unexpected layout")
        }
        let now = Self.fixedNow(nowISO)
        var failures: [Failure] = []
        var checked = 0, primaryChecked = 0, raisedChecked = 0
        for t in templates {
            guard case .dict(let td) = t, case .string(let file)? = td["file"], case .array(let cases)? = td["cases"] else { continue }
            let bos: String? = { if case .string(let s)? = td["bos_token"] { return s }; return nil }()
            let eos: String? = { if case .string(let s)? = td["eos_token"] { return s }; return nil }()
            let primary = td["primary"]?.truthy ?? false
            var template: ChatTemplate
            do {
                template = try ChatTemplate(contentsOf: try fixtureURL("chat_template", file))
            } catch {
                failures.append(Failure(file: file, name: "compile", detail: "\(error)"))
                continue
            }
            template.now = { now }
            for c in cases {
                guard case .dict(let cd) = c, case .string(let name)? = cd["name"], case .array(let messages)? = cd["messages"] else { continue }
                let agp = cd["add_generation_prompt"]?.truthy ?? false
                var extra: [String: JinjaValue] = [:]
                if case .dict(let e)? = cd["extra"] { for (k, v) in e.pairs { extra[k.pythonString] = v } }
                checked += 1
                if primary { primaryChecked += 1 }
                let result: Result<String, Error> = Result {
                    if let plain = Self.plainMessages(messages) {
                        // The public API path: ChatMessage values.
                        return try template.render(messages: plain, addGenerationPrompt: agp, bosToken: bos, eosToken: eos, extra: extra)
                    }
                    var context: [String: JinjaValue] = ["messages": .array(messages), "tools": .none, "documents": .none,
                                                         "add_generation_prompt": .bool(agp)]
                    if let bos { context["bos_token"] = .string(bos) }
                    if let eos { context["eos_token"] = .string(eos) }
                    for (k, v) in extra { context[k] = v }
                    return try template.render(context: context)
                }
                if case .string(let expected)? = cd["expected"] {
                    switch result {
                    case .success(let got):
                        if !got.utf8.elementsEqual(expected.utf8) {
                            failures.append(Failure(file: file, name: name, detail: Self.diff(expected, got)))
                        }
                    case .failure(let e):
                        failures.append(Failure(file: file, name: name, detail: "threw \(e), expected text"))
                    }
                } else if case .dict(let err)? = cd["error"], case .string(let type)? = err["type"], case .string(let message)? = err["message"] {
                    switch result {
                    case .success(let got):
                        failures.append(Failure(file: file, name: name, detail: "rendered \(got.debugDescription), expected \(type): \(message)"))
                    case .failure(let e):
                        guard let te = e as? TemplateError else {
                            failures.append(Failure(file: file, name: name, detail: "threw a non-TemplateError \(e)"))
                            break
                        }
                        if type == "TemplateError" {
                            // raise_exception(message) in the template
                            raisedChecked += 1
                            if te.kind != .raised || te.message != message {
                                failures.append(Failure(file: file, name: name, detail: "threw \(te), expected raise_exception(\(message.debugDescription))"))
                            }
                        } else if te.kind != .render {
                            failures.append(Failure(file: file, name: name, detail: "threw \(te), expected a render error (\(type): \(message))"))
                        }
                    }
                }
            }
        }
        for f in failures.prefix(40) { XCTFail(f.description) }
        XCTAssertTrue(failures.isEmpty, "\(failures.count) of \(checked) cases differ")
        XCTAssertGreaterThan(primaryChecked, 150)
        XCTAssertGreaterThan(raisedChecked, 10)
    }

    /// Messages with only string role and content map onto `ChatMessage`; others (tool calls,
    /// `content: null`) are passed as raw template values.
    static func plainMessages(_ messages: [JinjaValue]) -> [ChatMessage]? {
        var out: [ChatMessage] = []
        for m in messages {
            guard case .dict(let d) = m, d.count == 2, case .string(let role)? = d["role"], case .string(let content)? = d["content"],
                  d.keys.first.map({ pyEqual($0, "role") }) == true else { return nil }
            out.append(ChatMessage(role: role, content: content))
        }
        return out
    }

    static func diff(_ expected: String, _ got: String) -> String {
        let e = Array(expected.unicodeScalars), g = Array(got.unicodeScalars)
        var i = 0
        while i < e.count && i < g.count && e[i] == g[i] { i += 1 }
        let lo = max(0, i - 40)
        let exp = String(scalars: e[lo..<min(e.count, i + 40)])
        let gotS = String(scalars: g[lo..<min(g.count, i + 40)])
        return "first difference at code point \(i) (lengths \(e.count) vs \(g.count)):\n  expected …\(exp.debugDescription)…\n  got      …\(gotS.debugDescription)…"
    }
}

/// The template inside the SmolLM2 GGUF renders like the fixture (skips without the model file).
final class ChatTemplateGGUFTests: XCTestCase {
    func testSmolLM2TemplateFromGGUF() throws {
        let gguf = try GGUFFile(path: try smolLM2Path())
        let template = try ChatTemplate(gguf: gguf)
        let (bos, eos) = try ChatTemplate.specialTokens(gguf: gguf)
        XCTAssertEqual(bos, "<|im_start|>")
        XCTAssertEqual(eos, "<|im_end|>")
        let fixture = try String(contentsOf: try fixtureURL("chat_template", "HuggingFaceTB-SmolLM2-135M-Instruct.jinja"), encoding: .utf8)
        XCTAssertEqual(template.source, fixture)
        let out = try template.render(messages: [ChatMessage(role: "user", content: "Hi")], addGenerationPrompt: true,
                                      bosToken: bos, eosToken: eos)
        XCTAssertEqual(out, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                            + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }
}
