import Foundation
import XCTest
@testable import DistillModels

/// Malformed files give a FileError that names the file and the key path at fault.
final class TokenizerErrorTests: XCTestCase {
    /// A minimal valid tokenizer.json: vocabulary a, b, ab, Ġ; one merge "a b".
    func minimal() -> [String: Any] {
        [
            "version": "1.0",
            "added_tokens": [["id": 4, "content": "<|end|>", "special": true, "normalized": false,
                              "lstrip": false, "rstrip": false, "single_word": false]],
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "post_processor": NSNull(),
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "vocab": ["a": 0, "b": 1, "ab": 2, "Ġ": 3], "merges": ["a b"]] as [String: Any],
        ]
    }

    func make(_ root: [String: Any], config: [String: Any]? = nil) throws -> Tokenizer {
        try Tokenizer(tokenizerJSONData: try JSONSerialization.data(withJSONObject: root), file: "tok.json",
                      configData: try config.map { try JSONSerialization.data(withJSONObject: $0) }, configFile: "cfg.json")
    }

    func expectError(_ location: String, _ fragment: String, file: String = "tok.json", line: UInt = #line,
                     _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("no error; expected one at \(location)", line: line)
        } catch let e as FileError {
            XCTAssertEqual(e.file, file, line: line)
            XCTAssertEqual(e.location, location, "\(e)", line: line)
            XCTAssertTrue(e.message.contains(fragment), "\(e)", line: line)
        } catch {
            XCTFail("not a FileError: \(error)", line: line)
        }
    }

    func withModel(_ change: (inout [String: Any]) -> Void) -> [String: Any] {
        var root = minimal()
        var model = root["model"] as! [String: Any]
        change(&model)
        root["model"] = model
        return root
    }

    func testMinimalWorks() throws {
        let t = try make(minimal())
        XCTAssertEqual(t.encode("ab a<|end|>"), [2, 3, 0, 4])
        XCTAssertEqual(t.decode([2, 3, 0, 4]), "ab a<|end|>")
        XCTAssertEqual(t.vocabSize, 5)
    }

    func testMalformedTokenizerJSON() throws {
        expectError("", "not valid JSON") { _ = try Tokenizer(tokenizerJSONData: Data("{\"model\": ".utf8), file: "tok.json") }
        expectError("", "expected an object") { _ = try Tokenizer(tokenizerJSONData: Data("[1]".utf8), file: "tok.json") }
        var root = minimal()
        root["model"] = nil
        expectError("model", "missing") { _ = try make(root) }
        expectError("model.type", "\"Unigram\"") { _ = try make(withModel { $0["type"] = "Unigram" }) }
        expectError("model.type", "\"WordPiece\"") { _ = try make(withModel { $0["type"] = "WordPiece" }) }
        expectError("model.vocab", "missing") { _ = try make(withModel { $0["vocab"] = nil }) }
        expectError("model.vocab", "expected an object, found an array") { _ = try make(withModel { $0["vocab"] = ["a", "b"] }) }
        expectError("model.vocab.a", "expected a non-negative integer id, found a string") {
            _ = try make(withModel { $0["vocab"] = ["a": "zero"] })
        }
        expectError("model.merges", "missing") { _ = try make(withModel { $0["merges"] = nil }) }
        expectError("model.merges", "expected an array, found a string") { _ = try make(withModel { $0["merges"] = "a b" }) }
        expectError("model.merges[1]", "expected \"a b\"") { _ = try make(withModel { $0["merges"] = ["a b", 7] }) }
        expectError("model.merges[0]", "two tokens separated by one space") { _ = try make(withModel { $0["merges"] = ["ab"] }) }
        expectError("model.merges[0]", "uses \"x\", which is not in the vocabulary") { _ = try make(withModel { $0["merges"] = ["x b"] }) }
        expectError("model.merges[0]", "makes \"ba\", which is not in the vocabulary") { _ = try make(withModel { $0["merges"] = ["b a"] }) }
        expectError("model.unk_token", "not in the vocabulary") { _ = try make(withModel { $0["unk_token"] = "<unk>" }) }
        expectError("model.vocab", "id 0 is given to both") { _ = try make(withModel { $0["vocab"] = ["a": 0, "b": 0] }) }
        // Ids far past the count would make huge id tables (the fuzzer's out-of-memory input had
        // one at 200 000 000); ids with a few gaps load.
        expectError("model.vocab", "an id of 200000000 in a vocabulary of 4 tokens") {
            _ = try make(withModel { $0["vocab"] = ["a": 0, "b": 1, "ab": 2, "Ġ": 200_000_000] })
        }
        XCTAssertEqual(try make(withModel { $0["vocab"] = ["a": 0, "b": 1, "ab": 2, "Ġ": 9] }).vocabSize, 10)
        var farAdded = minimal()
        farAdded["added_tokens"] = [["id": 2_000_000_000, "content": "<|end|>", "special": true]]
        expectError("added_tokens", "an added token has id 2000000000") { _ = try make(farAdded) }
        expectError("model.byte_fallback", "expected true or false, found a string") { _ = try make(withModel { $0["byte_fallback"] = "yes" }) }
        expectError("model.continuing_subword_prefix", "\"##\"") { _ = try make(withModel { $0["continuing_subword_prefix"] = "##" }) }
    }

    func testUnsupportedPipelineParts() throws {
        var root = minimal()
        root["pre_tokenizer"] = ["type": "Whitespace"]
        expectError("pre_tokenizer.type", "unsupported pre-tokenizer \"Whitespace\"") { _ = try make(root) }
        root["pre_tokenizer"] = NSNull()
        expectError("pre_tokenizer", "ByteLevel") { _ = try make(root) }
        root["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
            ["type": "Split", "pattern": ["Regex": "\\w+"], "behavior": "Isolated", "invert": false],
            ["type": "ByteLevel", "add_prefix_space": false, "use_regex": false]]]
        expectError("pre_tokenizer.pretokenizers[0].pattern.Regex", "unsupported split regex") { _ = try make(root) }
        root["pre_tokenizer"] = ["type": "Split", "pattern": ["Regex": SplitPattern.byRegex.first { $0.value == .qwen2 }!.key],
                                 "behavior": "Isolated", "invert": false]
        expectError("pre_tokenizer", "must end with a ByteLevel step") { _ = try make(root) }
        root = minimal()
        root["normalizer"] = ["type": "Lowercase"]
        expectError("normalizer.type", "unsupported normalizer \"Lowercase\"") { _ = try make(root) }
        root = minimal()
        root["decoder"] = ["type": "WordPiece"]
        expectError("decoder.type", "unsupported decoder") { _ = try make(root) }
        root = minimal()
        root["post_processor"] = ["type": "TemplateProcessing", "single": [["SpecialToken": ["id": "<s>", "type_id": 0]],
                                                                          ["Sequence": ["id": "A", "type_id": 0]]],
                                  "special_tokens": [String: Any]()]
        expectError("post_processor.special_tokens", "no entry for \"<s>\"") { _ = try make(root) }
        root = minimal()
        root["added_tokens"] = [["id": "4", "content": "<|end|>"]]
        expectError("added_tokens[0].id", "expected an integer, found a string") { _ = try make(root) }
    }

    func testMalformedConfig() throws {
        expectError("bos_token", "expected a token string", file: "cfg.json") { _ = try make(minimal(), config: ["bos_token": 3]) }
        expectError("clean_up_tokenization_spaces", "expected true or false", file: "cfg.json") {
            _ = try make(minimal(), config: ["clean_up_tokenization_spaces": "no"])
        }
        expectError("", "not valid JSON", file: "cfg.json") {
            _ = try Tokenizer(tokenizerJSONData: try JSONSerialization.data(withJSONObject: minimal()), file: "tok.json",
                              configData: Data("{".utf8), configFile: "cfg.json")
        }
        // a Llama-family class rebuilds the template from add_bos_token / add_eos_token
        let t = try make(minimal(), config: ["tokenizer_class": "LlamaTokenizerFast", "bos_token": "b", "eos_token": "<|end|>",
                                             "add_bos_token": true, "add_eos_token": true])
        XCTAssertEqual(t.encode("a"), [1, 0, 4])
        XCTAssertTrue(t.addsBosToken && t.addsEosToken)
        expectError("bos_token", "no bos_token", file: "cfg.json") {
            _ = try make(minimal(), config: ["tokenizer_class": "LlamaTokenizerFast"])
        }
    }

    func testMalformedGGUFArrays() throws {
        let tokens = ["a", "b", "ab", "Ġ", "<|end|>"]
        expectError("tokenizer.ggml.model", "\"llama\"", file: "GGUF") {
            _ = try Tokenizer(ggufTokens: tokens, merges: ["a b"], tokenTypes: [], model: "llama")
        }
        expectError("tokenizer.ggml.pre", "unsupported pre-tokenizer \"tekken\"", file: "GGUF") {
            _ = try Tokenizer(ggufTokens: tokens, merges: ["a b"], tokenTypes: [], pre: "tekken")
        }
        expectError("tokenizer.ggml.merges[0]", "two tokens", file: "GGUF") {
            _ = try Tokenizer(ggufTokens: tokens, merges: ["a b c"], tokenTypes: [])
        }
        expectError("tokenizer.ggml.merges[0]", "uses \"z\"", file: "GGUF") {
            _ = try Tokenizer(ggufTokens: tokens, merges: ["z b"], tokenTypes: [])
        }
        expectError("tokenizer.ggml.token_type", "2 entries for 5 tokens", file: "GGUF") {
            _ = try Tokenizer(ggufTokens: tokens, merges: ["a b"], tokenTypes: [1, 1])
        }
        expectError("tokenizer.ggml.bos_token_id", "outside the vocabulary", file: "GGUF") {
            _ = try Tokenizer(ggufTokens: tokens, merges: ["a b"], tokenTypes: [], bosId: 9)
        }
        expectError("tokenizer.ggml.add_bos_token", "no bos_token_id", file: "GGUF") {
            _ = try Tokenizer(ggufTokens: tokens, merges: ["a b"], tokenTypes: [], addBos: true)
        }
        let t = try Tokenizer(ggufTokens: tokens, merges: ["a b"], tokenTypes: [1, 1, 1, 1, 3], bosId: 4, addBos: true)
        XCTAssertEqual(t.encode("ab<|end|>"), [4, 2, 4])
        XCTAssertEqual(t.encode("ab<|end|>", parseSpecialTokens: false), [4, 2])   // no symbols for "<|end|>": dropped
    }

    func testUnreadableFiles() {
        let missing = URL(fileURLWithPath: "/nonexistent/dir")
        expectError("", "cannot read", file: "/nonexistent/dir/tokenizer.json") { _ = try Tokenizer(directory: missing) }
    }
}
