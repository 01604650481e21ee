import DistillNN
import Foundation
import XCTest
@testable import DistillModels

/// Tokenizer → tokenizer.json / tokenizer_config.json / special_tokens_map.json → Tokenizer gives
/// the same ids, decodes and fingerprint; a GGUF-built tokenizer written this way tokenizes as
/// Hugging Face does on the fixture texts (scripts/check_tokenizer_json.py checks the files with
/// transformers itself).
final class TokenizerWriterTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("tokwriter-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// Texts that exercise every step: unicode (composed and decomposed, CJK, emoji, RTL), runs of
    /// spaces, tabs and newlines, digits, contractions, special tokens glued to words.
    static let awkwardTexts: [String] = [
        "", " ", "  ", "\n", "\t\t x", "Hello, world!", "  leading and trailing spaces   ",
        "line one\nline two\r\nline three\n\n\n", "tabs\tand\u{000B}vertical\u{000C}feeds",
        "12345 678 9 0.5 3,141,592 1e10 ٣٤٥ ௧௨", "I'm you're they've he'll she'd it's IT'S don'ſ",
        "café café naïve Ångström", "日本語のテキスト、中文文本。한국어", "emoji 😀👍🏽 👨‍👩‍👧‍👦 flags 🇫🇷",
        "مرحبا بالعالم", "Привет, мир!", "x²+y³=z⁴ ½ ⅓", "ﬁnance ﬀ", "\u{00A0}nbsp\u{2003}em\u{3000}ideographic",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
        "text<|endoftext|>more", "<|im_start|><|im_start|>", "<|im_end", "a<|begin_of_text|>b<|eot_id|>",
        "def f(x):\n    return x ** 2  # comment\n", "{\"key\": [1, 2, 3], \"s\": \"\\n\"}",
        "https://example.com/path?q=1&r=2#frag", "____----====", String(repeating: "a", count: 300),
        String(repeating: "🙂", count: 40), "mixed123abc456DEF", "\u{0301}combining first", "\u{FEFF}bom",
    ]

    func texts(_ cases: String) throws -> [String] { Self.awkwardTexts + (try tokCases(cases)).map(\.text) }

    /// Writes `tokenizer` into a fresh directory and reads it back.
    func roundTrip(_ tokenizer: Tokenizer, _ name: String) throws -> (Tokenizer, URL) {
        let dir = tmp.appendingPathComponent(name)
        try tokenizer.save(to: dir, modelMaxLength: 2048)
        for file in Tokenizer.huggingFaceFileNames {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), file)
        }
        return (try Tokenizer(directory: dir), dir)
    }

    func assertSameTokenization(_ a: Tokenizer, _ b: Tokenizer, _ texts: [String],
                                decodes: Bool = true, file: StaticString = #filePath, line: UInt = #line) {
        // GGUF tokenizers decode added tokens as their text (llama.cpp), tokenizer.json ones through
        // the ByteLevel decoder (tokenizers): the two differ on added tokens outside ASCII.
        let rawDiffers = a.addedTokensDecodeRaw != b.addedTokensDecodeRaw
        let nonASCIIAdded = Set(a.addedTokens.filter { !$0.content.unicodeScalars.allSatisfy(\.isASCII) }.map(\.id))
        var failures = 0
        for t in texts {
            let ids = a.encode(t)
            let compareDecodes = decodes && !(rawDiffers && ids.contains { nonASCIIAdded.contains($0) })
            let same = ids == b.encode(t)
                && a.encode(t, addSpecialTokens: false) == b.encode(t, addSpecialTokens: false)
                && a.encode(t, addSpecialTokens: false, parseSpecialTokens: false) == b.encode(t, addSpecialTokens: false, parseSpecialTokens: false)
                && (!compareDecodes || (a.decode(ids) == b.decode(ids) && a.decode(ids, skipSpecialTokens: true) == b.decode(ids, skipSpecialTokens: true)))
            if !same {
                failures += 1
                if failures <= 5 { XCTFail("\(tokShow(t)): \(ids) vs \(b.encode(t))", file: file, line: line) }
            }
        }
        XCTAssertEqual(failures, 0, "\(failures) of \(texts.count) texts differ", file: file, line: line)
    }

    func assertSameDescription(_ a: Tokenizer, _ b: Tokenizer, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.fingerprint, b.fingerprint, "fingerprint", file: file, line: line)
        XCTAssertEqual(a.vocabSize, b.vocabSize, file: file, line: line)
        XCTAssertEqual(a.mergeCount, b.mergeCount, file: file, line: line)
        XCTAssertEqual(a.addedTokens, b.addedTokens, file: file, line: line)
        XCTAssertEqual(a.prefixIds, b.prefixIds, file: file, line: line)
        XCTAssertEqual(a.suffixIds, b.suffixIds, file: file, line: line)
        XCTAssertEqual(a.bosToken, b.bosToken, file: file, line: line)
        XCTAssertEqual(a.eosToken, b.eosToken, file: file, line: line)
        XCTAssertEqual(a.padToken, b.padToken, file: file, line: line)
        XCTAssertEqual(a.unkToken, b.unkToken, file: file, line: line)
        XCTAssertEqual(a.bosTokenId, b.bosTokenId, file: file, line: line)
        XCTAssertEqual(a.eosTokenIds.first, b.eosTokenIds.first, file: file, line: line)
        XCTAssertEqual(a.chatTemplates, b.chatTemplates, file: file, line: line)
        XCTAssertEqual(a.cleanUpTokenizationSpaces, b.cleanUpTokenizationSpaces, file: file, line: line)
        XCTAssertEqual(a.parsesSpecialTokensByDefault, b.parsesSpecialTokensByDefault, file: file, line: line)
    }

    // MARK: - tokenizer.json sources

    func testFixtureTokenizersRoundTrip() throws {
        for (folder, cases) in [("smollm2", "smollm2_cases.json"), ("qwen2_style", "qwen2_style_cases.json"),
                                ("llama3_style", "llama3_style_cases.json")] {
            let original = try tokLoad(folder)
            let (reloaded, _) = try roundTrip(original, folder)
            assertSameDescription(original, reloaded)
            assertSameTokenization(original, reloaded, try texts(cases))
            XCTAssertEqual(reloaded.tokenizerClass, original.tokenizerClass, folder)
        }
    }

    /// The written files equal the fixtures' own in what they decide: Hugging Face's expected ids.
    func testWrittenFilesGiveHuggingFaceIds() throws {
        for (folder, cases) in [("smollm2", "smollm2_cases.json"), ("qwen2_style", "qwen2_style_cases.json"),
                                ("llama3_style", "llama3_style_cases.json")] {
            let (reloaded, _) = try roundTrip(try tokLoad(folder), folder)
            for c in try tokCases(cases) {
                XCTAssertEqual(reloaded.encode(c.text), c.ids, "\(folder) \(tokShow(c.text))")
                XCTAssertEqual(reloaded.encode(c.text, addSpecialTokens: false, parseSpecialTokens: false), c.idsUnparsed,
                               "\(folder) \(tokShow(c.text))")
                XCTAssertEqual(reloaded.decode(c.ids), c.decoded, "\(folder) \(tokShow(c.text))")
            }
        }
    }

    /// Writing twice gives the same bytes; a second round trip gives the same files.
    func testWriteIsDeterministicAndStable() throws {
        let (once, dir1) = try roundTrip(try tokLoad("llama3_style"), "a")
        let (_, dir2) = try roundTrip(once, "b")
        for file in Tokenizer.huggingFaceFileNames {
            XCTAssertEqual(try Data(contentsOf: dir1.appendingPathComponent(file)), try Data(contentsOf: dir2.appendingPathComponent(file)), file)
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir1.appendingPathComponent("tokenizer.json"))) as! [String: Any]
        let model = json["model"] as! [String: Any]
        XCTAssertEqual(model["ignore_merges"] as? Bool, true)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir1.appendingPathComponent("tokenizer_config.json"))) as! [String: Any]
        XCTAssertEqual(config["model_max_length"] as? Int, 2048)
        XCTAssertEqual(config["bos_token"] as? String, "<|begin_of_text|>")
        XCTAssertEqual(config["add_bos_token"] as? Bool, true)
    }

    /// Control characters, quotes and backslashes in tokens survive the JSON escaping.
    func testEscaping() throws {
        let tokens = ["a", "b", "ab", "\"", "\\", "\"\\", "<ctl\u{1}\t\n\">"]
        let tok = try Tokenizer(ggufTokens: tokens, merges: ["a b", "\" \\"], tokenTypes: [1, 1, 1, 1, 1, 1, 3])
        let (back, dir) = try roundTrip(tok, "odd")
        assertSameDescription(tok, back)
        assertSameTokenization(tok, back, ["ab", "ba\"\\", "a<ctl\u{1}\t\n\">b", "aab"], decodes: false)
        let text = try String(contentsOf: dir.appendingPathComponent("tokenizer.json"), encoding: .utf8)
        XCTAssertTrue(text.contains(#""<ctl\u0001\t\n\">""#))
        XCTAssertTrue(text.contains(#""a b""#))
        XCTAssertTrue(text.contains(#""\" \\""#))
    }

    /// A merge of a token holding a space is written with all merges as ["a", "b"] pairs (tokenizers
    /// reads either form, not a mix).
    func testMergesWithSpacesAreWrittenAsPairs() throws {
        let json = #"""
            {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, " ": 3, "a ": 4},
                       "merges": ["a b", ["a", " "]]},
             "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
             "decoder": {"type": "ByteLevel"}}
            """#
        let tok = try Tokenizer(tokenizerJSONData: Data(json.utf8))
        let (back, dir) = try roundTrip(tok, "pairs")
        assertSameDescription(tok, back)
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("tokenizer.json"))) as! [String: Any]
        let merges = (root["model"] as! [String: Any])["merges"] as! [[String]]
        XCTAssertEqual(merges, [["a", "b"], ["a", " "]])
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("tokenizer_config.json"))) as! [String: Any]
        XCTAssertEqual(config["add_prefix_space"] as? Bool, false)
    }

    // MARK: - GGUF sources

    /// SmolLM2's tokenizer as the GGUF arrays give it (no files), written and read back: the ids of
    /// Hugging Face's own tokenizer.json on every fixture text.
    func testGGUFArraysWrittenMatchHuggingFace() throws {
        let meta = try tokJSONFixture("smollm2/gguf_meta.json")
        let tj = try tokJSONFixture("smollm2/tokenizer.json")
        let model = tj["model"] as! [String: Any]
        let vocab = model["vocab"] as! [String: Int]
        var tokens = [String](repeating: "", count: vocab.count)
        for (t, i) in vocab { tokens[i] = t }
        var types = [Int](repeating: 1, count: tokens.count)
        for (k, v) in meta["non_normal_token_types"] as! [String: Int] { types[Int(k)!] = v }
        let gguf = try Tokenizer(ggufTokens: tokens, merges: model["merges"] as! [String], tokenTypes: types,
                                 model: meta["model"] as! String, pre: meta["pre"] as! String,
                                 bosId: meta["bos_token_id"] as? Int, eosId: meta["eos_token_id"] as? Int,
                                 padId: meta["padding_token_id"] as? Int, unkId: meta["unknown_token_id"] as? Int,
                                 addBos: meta["add_bos_token"] as! Bool, addEos: meta["add_eos_token"] as! Bool,
                                 chatTemplate: "{{ messages }}")
        let (back, _) = try roundTrip(gguf, "gguf")
        assertSameDescription(gguf, back)
        assertSameTokenization(gguf, back, try texts("smollm2_cases.json"))
        for c in try tokCases("smollm2_cases.json") {
            XCTAssertEqual(back.encode(c.text), c.idsNoSpecial, tokShow(c.text))
            XCTAssertEqual(back.decode(c.ids, skipSpecialTokens: true), c.decodedSkip, tokShow(c.text))
        }
        XCTAssertEqual(back.tokenizerClass, "PreTrainedTokenizerFast")
        XCTAssertEqual(back.chatTemplate, "{{ messages }}")
    }

    /// GGUF Llama 3 style (`llama-bpe`: Split + ignore_merges, BOS added) and Qwen2 style (NFC):
    /// the fixture vocabularies pushed through the GGUF constructor, written, read back.
    func testGGUFPreTokenizerKindsRoundTrip() throws {
        for (folder, pre, cases) in [("llama3_style", "llama-bpe", "llama3_style_cases.json"), ("qwen2_style", "qwen2", "qwen2_style_cases.json")] {
            let tj = try tokJSONFixture("\(folder)/tokenizer.json")
            let model = tj["model"] as! [String: Any]
            let vocab = model["vocab"] as! [String: Int]
            let added = tj["added_tokens"] as! [[String: Any]]
            let count = max(vocab.values.max()!, added.map { $0["id"] as! Int }.max()!) + 1
            var tokens = (0..<count).map { "<unused\($0)>" }
            var types = [Int](repeating: 1, count: count)
            for (t, i) in vocab { tokens[i] = t }
            for a in added { tokens[a["id"] as! Int] = a["content"] as! String; types[a["id"] as! Int] = 3 }
            let specials = Dictionary(uniqueKeysWithValues: added.map { ($0["content"] as! String, $0["id"] as! Int) })
            let bos = specials["<|begin_of_text|>"], eos = specials["<|eot_id|>"] ?? specials["<|im_end|>"]
            let gguf = try Tokenizer(ggufTokens: tokens, merges: model["merges"] as! [String], tokenTypes: types, pre: pre,
                                     bosId: bos, eosId: eos, addBos: bos != nil)
            let (back, _) = try roundTrip(gguf, "gguf-\(folder)")
            assertSameDescription(gguf, back)
            assertSameTokenization(gguf, back, try texts(cases))
            XCTAssertEqual(back.addsBosToken, bos != nil, folder)
            if let cafe = gguf.id(for: "café"), gguf.addedTokens.contains(where: { $0.id == cafe }) {
                // the known difference: the GGUF decodes the added token as its text, Hugging Face
                // (and the written file) through the byte-level alphabet
                XCTAssertEqual(gguf.decode([cafe]), "café")
                XCTAssertEqual(back.decode([cafe]), String(decoding: ByteLevel.decodeOrRaw("café"), as: UTF8.self))
            }
        }
    }

    /// The real SmolLM2 GGUF, when present: `saveDirectory` writes tokenizer files that read back
    /// as the same tokenizer with the same chat template.
    func testSmolLM2GGUFSaveDirectoryWritesTokenizer() throws {
        let path = try smolLM2Path()
        let m = try PretrainedModel.loadGGUF(path)
        let dir = tmp.appendingPathComponent("smollm2")
        try m.saveDirectory(dir.path, dtype: .bf16)
        let original = try XCTUnwrap(m.tokenizer)
        let back = try Tokenizer(directory: dir)
        assertSameDescription(original, back)
        assertSameTokenization(original, back, try texts("smollm2_cases.json"))
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("tokenizer_config.json"))) as! [String: Any]
        XCTAssertEqual(config["model_max_length"] as? Int, 8192)
        XCTAssertEqual(config["eos_token"] as? String, "<|im_end|>")
        let loaded = try PretrainedModel.loadDirectory(dir.path)
        XCTAssertEqual(loaded.tokenizer?.fingerprint, original.fingerprint)
        XCTAssertNotNil(loaded.chatTemplate)
        XCTAssertEqual(try loaded.applyChatTemplate([ChatMessage(role: "user", content: "Hi")]),
                       try m.applyChatTemplate([ChatMessage(role: "user", content: "Hi")]))
    }

    // MARK: - saveDirectory

    func tinyModel(tokenizer: Tokenizer?, path: String) throws -> PretrainedModel {
        let configURL = try fixtureURL("architectures", "qwen2/config.json")
        let config = try ModelConfig(contentsOf: configURL)
        let lm = TransformerLM(try Architecture.qwen2.decoderConfig(config), seed: 1)
        return PretrainedModel(architecture: .qwen2, config: config, lm: lm, path: path, tokenizer: tokenizer)
    }

    /// A model whose tokenizer came with no files gets them written; stale files of another
    /// tokenizer are replaced; files of the same tokenizer are left alone; a directory source's
    /// files are copied unchanged.
    func testSaveDirectoryWritesOrCopiesTokenizerFiles() throws {
        let smol = try tokLoad("smollm2"), qwen = try tokLoad("qwen2_style")
        let out = tmp.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        // stale files of another tokenizer
        try qwen.save(to: out)
        try Data("{}".utf8).write(to: out.appendingPathComponent("vocab.json"))
        try tinyModel(tokenizer: smol, path: "/nonexistent/model.gguf").saveDirectory(out.path)
        XCTAssertEqual(try Tokenizer(directory: out).fingerprint, smol.fingerprint)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("vocab.json").path))

        // saving again into the same directory leaves the files as they are
        let stamp = out.appendingPathComponent("tokenizer.json")
        let before = try FileManager.default.attributesOfItem(atPath: stamp.path)[.modificationDate] as! Date
        let loaded = try PretrainedModel.loadDirectory(out.path)
        try loaded.saveDirectory(out.path)
        let after = try FileManager.default.attributesOfItem(atPath: stamp.path)[.modificationDate] as! Date
        XCTAssertEqual(before, after)

        // from a directory: its files are copied byte for byte
        let copy = tmp.appendingPathComponent("copy")
        try loaded.saveDirectory(copy.path)
        XCTAssertEqual(try Data(contentsOf: copy.appendingPathComponent("tokenizer.json")), try Data(contentsOf: stamp))

        // no tokenizer, no files
        let none = tmp.appendingPathComponent("none")
        try tinyModel(tokenizer: nil, path: "/nonexistent/model.gguf").saveDirectory(none.path)
        XCTAssertFalse(FileManager.default.fileExists(atPath: none.appendingPathComponent("tokenizer.json").path))
    }
}
