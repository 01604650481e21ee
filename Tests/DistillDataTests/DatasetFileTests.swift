import XCTest
@testable import DistillData

final class DatasetFileTests: XCTestCase {
    func testChatRecordLineAndRoundTrip() throws {
        let r = ChatRecord(system: "Be brief.", user: "Say \"hi\"\tplease", assistant: "<think>\nok\n</think>\n\nhi — 你好 \\o/", id: "p1", source: "gsm8k")
        XCTAssertEqual(r.jsonLine, #"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say \"hi\"\tplease"},{"role":"assistant","content":"<think>\nok\n</think>\n\nhi — 你好 \\o/"}],"id":"p1","source":"gsm8k"}"#)
        XCTAssertEqual(ChatRecord(user: "q", assistant: "a").jsonLine, #"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#)
        let dir = try traceTestDirectory(self)
        let path = dir.appendingPathComponent("out.jsonl").path
        let records = [r, ChatRecord(user: "q\u{1}", assistant: "a\r\n")]
        try ChatRecordFile.write(records, to: path)
        XCTAssertEqual(try ChatRecordFile.read(path: path), records)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8).components(separatedBy: "\n").count, 3)  // 2 lines + final newline
    }

    func testChatRecordErrors() throws {
        let dir = try traceTestDirectory(self)
        let good = #"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#
        func error(_ bad: String) throws -> String {
            // Line 3: a good line, a blank line, then the bad one.
            let p = try traceTestFile(dir, "d.jsonl", good + "\n\n" + bad + "\n")
            return traceErrorText { _ = try ChatRecordFile.read(path: p) }
        }
        let p = dir.appendingPathComponent("d.jsonl").path
        XCTAssertEqual(try error("{\"messages\": [}"), "\(p):3: not valid JSON (expected \"messages\": [{\"role\": …, \"content\": …}, …])")
        XCTAssertEqual(try error("[1, 2]"), "\(p):3: expected a JSON object with \"messages\": [{\"role\": …, \"content\": …}, …], found an array")
        XCTAssertEqual(try error(#"{"text": "hi"}"#), "\(p):3: missing \"messages\" (expected \"messages\": [{\"role\": …, \"content\": …}, …])")
        XCTAssertEqual(try error(#"{"messages": "hi"}"#), "\(p):3: \"messages\" must be an array of {\"role\", \"content\"} objects, found a string")
        XCTAssertEqual(try error(#"{"messages": []}"#), "\(p):3: \"messages\" is empty (expected at least one message)")
        XCTAssertEqual(try error(#"{"messages": [{"content": "q"}]}"#), "\(p):3: messages[0] has no \"role\"")
        XCTAssertEqual(try error(#"{"messages": [{"role": "user", "content": 5}]}"#), "\(p):3: messages[0].content must be a string, found a number")
        XCTAssertEqual(try error(#"{"messages": [{"role": "user", "content": null}]}"#), "\(p):3: messages[0].content must be a string, found null")
        XCTAssertEqual(try error(#"{"messages": [{"role": "bot", "content": "a"}]}"#), "\(p):3: messages[0].role is \"bot\" (expected one of system, user, assistant, tool)")
        XCTAssertEqual(try error(#"{"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}]}"#),
                       "\(p):3: messages[1] is a system message (only the first message may be one)")
        XCTAssertEqual(try error(#"{"messages": [{"role": "user", "content": "q"}], "id": 7}"#), "\(p):3: \"id\" must be a string, found a number")
        try Data([0x7B, 0x7D, 0x0A, 0xFF, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: p))
        XCTAssertEqual(traceErrorText { _ = try ChatRecordFile.read(path: p) }, "\(p):2: not valid UTF-8 text")
        let empty = try traceTestFile(dir, "empty.jsonl", "\n  \n")
        XCTAssertEqual(traceErrorText { _ = try ChatRecordFile.read(path: empty) }, "\(empty): the file holds no records (empty)")
        XCTAssertEqual(traceErrorText { _ = try ChatRecordFile.read(path: "/nonexistent/x.jsonl") }, "/nonexistent/x.jsonl: cannot read the file")
    }

    func testPromptFile() throws {
        let dir = try traceTestDirectory(self)
        let p = try traceTestFile(dir, "prompts.jsonl", """
            {"prompt": "What is 2+2?", "answer": "4", "id": "q1", "source": "arith"}
            {"prompt": "Half of 3?", "answer": 1.5}

            {"prompt": "Count to 3", "answer": 3, "id": 17, "extra": [1, 2]}
            {"prompt": "Open question", "answer": null}\r
            """)
        XCTAssertEqual(try PromptFile.read(path: p), [
            TracePrompt(id: "q1", text: "What is 2+2?", answer: "4", source: "arith"),
            TracePrompt(id: "2", text: "Half of 3?", answer: "1.5"),               // id defaults to the line number
            TracePrompt(id: "17", text: "Count to 3", answer: "3"),
            TracePrompt(id: "5", text: "Open question"),
        ])
        let prompts = try PromptFile.read(path: p)
        XCTAssertEqual(PromptFile.jsonLine(prompts[0]), #"{"prompt":"What is 2+2?","answer":"4","id":"q1","source":"arith"}"#)
        let back = try PromptFile.read(data: Data(prompts.map(PromptFile.jsonLine).joined(separator: "\n").utf8), path: "x")
        XCTAssertEqual(back, prompts)
    }

    func testPromptFileErrors() throws {
        let dir = try traceTestDirectory(self)
        func error(_ text: String) throws -> String {
            let p = try traceTestFile(dir, "p.jsonl", text)
            return traceErrorText { _ = try PromptFile.read(path: p) }
        }
        let p = dir.appendingPathComponent("p.jsonl").path
        XCTAssertEqual(try error("{\"prompt\": \"a\"}\n{\"question\": \"b\"}"),
                       "\(p):2: missing \"prompt\" (expected a JSON object with \"prompt\" (and optional \"answer\", \"id\", \"source\"))")
        XCTAssertEqual(try error(#"{"prompt": ["a"]}"#), "\(p):1: \"prompt\" must be a string, found an array")
        XCTAssertEqual(try error(#"{"prompt": "  "}"#), "\(p):1: \"prompt\" is empty")
        XCTAssertEqual(try error(#"{"prompt": "a", "answer": true}"#), "\(p):1: \"answer\" must be a string or a number, found a boolean")
        XCTAssertEqual(try error(#"{"prompt": "a", "answer": {"x": 1}}"#), "\(p):1: \"answer\" must be a string or a number, found an object")
        XCTAssertEqual(try error(#"{"prompt": "a", "id": 1.5}"#), "\(p):1: \"id\" must be a string or an integer, found a number")
        XCTAssertEqual(try error(#"{"prompt": "a", "source": 3}"#), "\(p):1: \"source\" must be a string, found a number")
        XCTAssertEqual(try error("{\"prompt\": \"a\", \"id\": \"x\"}\n{\"prompt\": \"b\", \"id\": \"x\"}"), "\(p):2: duplicate id \"x\" (first used on line 1)")
        XCTAssertEqual(try error("{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"id\": \"1\"}"), "\(p):2: duplicate id \"1\" (first used on line 1)")
        XCTAssertEqual(try error("{\"prompt\": \"a\""), "\(p):1: not valid JSON (expected \"prompt\" (and optional \"answer\", \"id\", \"source\"))")
        XCTAssertEqual(try error(""), "\(p): the file holds no prompts (empty)")
    }
}
