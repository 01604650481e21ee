import Foundation
import XCTest
@testable import DistillModels

/// Reference data from scripts/make_tokenizer_fixtures.py (tokenizers 0.20.3, transformers 4.46.3).
struct TokenizerFixtureCase {
    var text: String
    var ids: [Int]
    var idsNoSpecial: [Int]
    var idsUnparsed: [Int]
    var decoded: String
    var decodedSkip: String
    var decodePrefixes: [String]?
}

func tokJSONFixture(_ name: String) throws -> [String: Any] {
    let url = try fixtureURL("tokenizer", name)
    return try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
}

func tokCases(_ name: String) throws -> [TokenizerFixtureCase] {
    let root = try tokJSONFixture(name)
    return (root["cases"] as! [[String: Any]]).map { c in
        TokenizerFixtureCase(text: c["text"] as! String, ids: c["ids"] as! [Int], idsNoSpecial: c["ids_no_special"] as! [Int],
                      idsUnparsed: c["ids_unparsed"] as! [Int], decoded: c["decoded"] as! String,
                      decodedSkip: c["decoded_skip"] as! String, decodePrefixes: c["decode_prefixes"] as? [String])
    }
}

func tokLoad(_ folder: String) throws -> Tokenizer {
    let dir = try fixtureURL("tokenizer", folder)
    return try Tokenizer(directory: dir)
}

/// Shows control characters, so that a failing text can be read in the log.
func tokShow(_ s: String) -> String { tokenQuoted(s) }

final class TokenizerTests: XCTestCase {
    // MARK: ids identical to Hugging Face

    /// Every text of the fixture: ids with and without the post-processor's special tokens, with
    /// special-token parsing off, and both decodes.
    func checkAgainstHF(_ tokenizer: Tokenizer, _ casesFile: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let cases = try tokCases(casesFile)
        XCTAssertGreaterThan(cases.count, 200)
        var failures = 0
        for c in cases {
            let ids = tokenizer.encode(c.text)
            let plain = tokenizer.encode(c.text, addSpecialTokens: false)
            let unparsed = tokenizer.encode(c.text, addSpecialTokens: false, parseSpecialTokens: false)
            let decoded = tokenizer.decode(c.ids)
            let decodedSkip = tokenizer.decode(c.ids, skipSpecialTokens: true)
            if ids != c.ids || plain != c.idsNoSpecial || unparsed != c.idsUnparsed || decoded != c.decoded || decodedSkip != c.decodedSkip {
                failures += 1
                if failures <= 10 {
                    XCTFail("""
                        \(casesFile) \(tokShow(c.text)):
                          ids      \(ids) expected \(c.ids)
                          plain    \(plain) expected \(c.idsNoSpecial)
                          unparsed \(unparsed) expected \(c.idsUnparsed)
                          decode   \(tokShow(decoded)) expected \(tokShow(c.decoded))
                          skip     \(tokShow(decodedSkip)) expected \(tokShow(c.decodedSkip))
                        """, file: file, line: line)
                }
            }
            if let prefixes = c.decodePrefixes {
                for k in 0...c.ids.count {
                    XCTAssertEqual(tokenizer.decode(Array(c.ids[..<k])), prefixes[k], "\(tokShow(c.text)) ids[..<\(k)]", file: file, line: line)
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(failures) of \(cases.count) texts differ", file: file, line: line)
    }

    func testSmolLM2MatchesHuggingFace() throws {
        try checkAgainstHF(try tokLoad("smollm2"), "smollm2_cases.json")
    }

    func testQwen2StyleMatchesHuggingFace() throws {
        try checkAgainstHF(try tokLoad("qwen2_style"), "qwen2_style_cases.json")
    }

    func testLlama3StyleMatchesHuggingFace() throws {
        try checkAgainstHF(try tokLoad("llama3_style"), "llama3_style_cases.json")
    }

    /// The Llama 3 style file with ignore_merges off: the whole-word entries without merges are no
    /// longer reachable ("Ġdistillation" comes out in pieces).
    func testIgnoreMergesOff() throws {
        var root = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixtureURL("tokenizer", "llama3_style/tokenizer.json"))) as! [String: Any]
        var model = root["model"] as! [String: Any]
        model["ignore_merges"] = false
        root["model"] = model
        let tokenizer = try Tokenizer(tokenizerJSONData: try JSONSerialization.data(withJSONObject: root))
        let reference = try tokJSONFixture("llama3_style_cases.json")["ignore_merges_off"] as! [[String: Any]]
        var differs = 0
        let on = try tokLoad("llama3_style")
        for r in reference {
            let text = r["text"] as! String
            XCTAssertEqual(tokenizer.encode(text), r["ids"] as! [Int], tokShow(text))
            if on.encode(text) != tokenizer.encode(text) { differs += 1 }
        }
        XCTAssertGreaterThan(differs, 0, "ignore_merges changes nothing in the fixture")
        let id = try XCTUnwrap(on.id(for: "Ġdistillation"))
        XCTAssertEqual(on.encode(" distillation", addSpecialTokens: false), [id])
        XCTAssertNotEqual(tokenizer.encode(" distillation", addSpecialTokens: false), [id])
    }

    /// A larger differential check, when $DISTILL_TOKENIZER_CORPUS names a JSON file
    /// {"texts": [...], "smollm2": [[ids]], "qwen2_style": [[ids]], "llama3_style": [[ids]]} made with
    /// `Tokenizer.from_file(...).encode(text).ids` (source files, documentation, random code points).
    func testExternalCorpus() throws {
        guard let path = ProcessInfo.processInfo.environment["DISTILL_TOKENIZER_CORPUS"] else {
            throw XCTSkip("set DISTILL_TOKENIZER_CORPUS to run")
        }
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        let texts = root["texts"] as! [String]
        for name in ["smollm2", "qwen2_style", "llama3_style"] {
            guard let expected = root[name] as? [[Int]] else { continue }
            let t = try tokLoad(name)
            var failures = 0
            for (text, ids) in zip(texts, expected) where t.encode(text) != ids {
                failures += 1
                if failures <= 5 { XCTFail("\(name) \(tokShow(String(text.prefix(200)))): \(t.encode(text).prefix(40)) expected \(ids.prefix(40))") }
            }
            print("external corpus: \(name): \(texts.count - failures) of \(texts.count) texts identical")
            XCTAssertEqual(failures, 0, name)
        }
    }

    // MARK: pre-tokenizer scanners against tokenizers' regex splits

    func testPreTokenizerScannersMatchHuggingFaceSplits() throws {
        let root = try tokJSONFixture("pretokenizer_splits.json")
        let patterns = root["patterns"] as! [String: String]
        XCTAssertEqual(SplitPattern.byRegex[patterns["gpt2"]!], .gpt2)
        XCTAssertEqual(SplitPattern.byRegex[patterns["llama3"]!], .llama3)
        XCTAssertEqual(SplitPattern.byRegex[patterns["qwen2"]!], .qwen2)
        let pipelines: [String: PreTokenizer] = [
            "gpt2": PreTokenizer(steps: [.byteLevel(addPrefixSpace: false, useRegex: true)]),
            "smollm": PreTokenizer(steps: [.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)]),
            "llama3": PreTokenizer(steps: [.split(.llama3), .byteLevel(addPrefixSpace: false, useRegex: false)]),
            "qwen2": PreTokenizer(steps: [.split(.qwen2), .byteLevel(addPrefixSpace: false, useRegex: false)]),
            "gpt2_prefix_space": PreTokenizer(steps: [.byteLevel(addPrefixSpace: true, useRegex: true)]),
            "llama3_prefix_space": PreTokenizer(steps: [.split(.llama3), .byteLevel(addPrefixSpace: true, useRegex: false)]),
            "digits_contiguous": PreTokenizer(steps: [.digits(individual: false), .byteLevel(addPrefixSpace: false, useRegex: true)]),
        ]
        let cases = root["cases"] as! [[String: Any]]
        XCTAssertGreaterThan(cases.count, 400)
        var failures = 0
        for c in cases {
            let text = c["text"] as! String
            for (name, p) in pipelines.sorted(by: { $0.key < $1.key }) {
                let expected = c[name] as! [String]
                let got = p.pieces(of: text)
                if got != expected {
                    failures += 1
                    if failures <= 10 { XCTFail("\(name) \(tokShow(text)): \(got.map(tokShow)) expected \(expected.map(tokShow))") }
                }
            }
        }
        XCTAssertEqual(failures, 0)
    }

    /// Hand-checked splits that show what each alternative of the Llama 3 regex does.
    func testLlama3SplitExamples() {
        let p = PreTokenizer(steps: [.split(.llama3), .byteLevel(addPrefixSpace: false, useRegex: false)])
        // contractions are case-insensitive; \p{N}{1,3}; a punctuation run takes following newlines
        XCTAssertEqual(p.pieces(of: "WE'LL pay 12345!\n\nOk"), ["WE", "'LL", " pay", " ", "123", "45", "!\n\n", "Ok"])
        // \s*[\r\n]+ ends at the last newline; \s+(?!\S) leaves one space for the next word
        XCTAssertEqual(p.pieces(of: "a  \n\n  b"), ["a", "  \n\n", " ", " b"])
        let q = PreTokenizer(steps: [.split(.qwen2), .byteLevel(addPrefixSpace: false, useRegex: false)])
        XCTAssertEqual(q.pieces(of: "x 2024"), ["x", " ", "2", "0", "2", "4"])
        let g = PreTokenizer(steps: [.byteLevel(addPrefixSpace: false, useRegex: true)])
        XCTAssertEqual(g.pieces(of: "I'M here   now"), ["I", "'", "M", " here", "  ", " now"])
    }

    // MARK: GGUF construction

    /// The GGUF arrays (equal to tokenizer.json's vocabulary by id and merges, as the fixture script
    /// checked) with the GGUF's token types and `pre = "smollm"` give Hugging Face's ids.
    func testSmolLM2FromGGUFArraysMatchesHuggingFace() throws {
        let meta = try tokJSONFixture("smollm2/gguf_meta.json")
        XCTAssertEqual(meta["tokens_equal_tokenizer_json_vocab_by_id"] as? Bool, true)
        XCTAssertEqual(meta["merges_equal_tokenizer_json_merges"] as? Bool, true)
        let tj = try tokJSONFixture("smollm2/tokenizer.json")
        let model = tj["model"] as! [String: Any]
        let vocab = model["vocab"] as! [String: Int]
        var tokens = [String](repeating: "", count: vocab.count)
        for (t, i) in vocab { tokens[i] = t }
        let merges = model["merges"] as! [String]
        var types = [Int](repeating: 1, count: tokens.count)
        for (k, v) in meta["non_normal_token_types"] as! [String: Int] { types[Int(k)!] = v }
        let gguf = try Tokenizer(ggufTokens: tokens, merges: merges, tokenTypes: types, model: meta["model"] as! String,
                                 pre: meta["pre"] as! String, bosId: meta["bos_token_id"] as? Int, eosId: meta["eos_token_id"] as? Int,
                                 padId: meta["padding_token_id"] as? Int, unkId: meta["unknown_token_id"] as? Int,
                                 addBos: meta["add_bos_token"] as! Bool, addEos: meta["add_eos_token"] as! Bool)
        let json = try tokLoad("smollm2")
        XCTAssertEqual(gguf.fingerprint, json.fingerprint)
        XCTAssertEqual(gguf.vocabSize, 49152)
        XCTAssertEqual(gguf.bosTokenId, 1)
        XCTAssertEqual(gguf.eosTokenIds, [2])
        for c in try tokCases("smollm2_cases.json") {
            XCTAssertEqual(gguf.encode(c.text), c.idsNoSpecial, tokShow(c.text))
            XCTAssertEqual(gguf.encode(c.text, parseSpecialTokens: false), c.idsUnparsed, tokShow(c.text))
            XCTAssertEqual(gguf.decode(c.ids), c.decoded, tokShow(c.text))
            XCTAssertEqual(gguf.decode(c.ids, skipSpecialTokens: true), c.decodedSkip, tokShow(c.text))
        }
    }

    /// The same through the GGUF reader, from the real file, when it is present.
    func testSmolLM2FromGGUFFile() throws {
        let path = try smolLM2Path()
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: path))
        let json = try tokLoad("smollm2")
        XCTAssertEqual(tokenizer.fingerprint, json.fingerprint)
        XCTAssertEqual(tokenizer.chatTemplate, json.chatTemplate)
        for c in try tokCases("smollm2_cases.json") {
            XCTAssertEqual(tokenizer.encode(c.text), c.idsNoSpecial, tokShow(c.text))
        }
    }

    // MARK: vocabulary and config

    func testSmolLM2VocabularyAndConfig() throws {
        let t = try tokLoad("smollm2")
        XCTAssertEqual(t.vocabSize, 49152)
        XCTAssertEqual(t.mergeCount, 48900)
        XCTAssertEqual(t.id(for: "<|im_start|>"), 1)
        XCTAssertEqual(t.token(for: 2), "<|im_end|>")
        XCTAssertEqual(t.id(for: "Ġthe"), t.encode(" the").first)
        XCTAssertNil(t.id(for: "no such token"))
        XCTAssertNil(t.token(for: -1))
        XCTAssertNil(t.token(for: 49152))
        XCTAssertEqual(t.bosToken, "<|im_start|>")
        XCTAssertEqual(t.bosTokenId, 1)
        XCTAssertEqual(t.eosToken, "<|im_end|>")
        XCTAssertEqual(t.eosTokenIds, [2])
        XCTAssertEqual(t.padTokenId, 2)
        XCTAssertEqual(t.unkToken, "<|endoftext|>")
        XCTAssertEqual(t.unkTokenId, 0)
        XCTAssertFalse(t.addsBosToken)
        XCTAssertFalse(t.addsEosToken)
        XCTAssertTrue(t.isSpecial(0))
        XCTAssertFalse(t.isSpecial(100))
        XCTAssertEqual(t.addedTokens.count, 17)
        XCTAssertTrue(t.chatTemplate?.hasPrefix("{% for message in messages %}") ?? false)
        XCTAssertEqual(t.encode(""), [])
        XCTAssertEqual(t.fingerprint.count, 16)

        let l = try tokLoad("llama3_style")
        XCTAssertTrue(l.addsBosToken)
        XCTAssertEqual(l.encode("").count, 1)
        XCTAssertEqual(l.encode("", addSpecialTokens: false), [])
        XCTAssertEqual(l.eosToken, "<|eot_id|>")
        XCTAssertTrue(l.cleanUpTokenizationSpaces)
        XCTAssertEqual(l.decode(l.encode("Hi , there ."), skipSpecialTokens: true, cleanUpTokenizationSpaces: true), "Hi, there.")
        XCTAssertNotEqual(l.fingerprint, t.fingerprint)

        let q = try tokLoad("qwen2_style")
        XCTAssertNil(q.bosTokenId)
        XCTAssertEqual(q.eosTokenIds, [try XCTUnwrap(q.id(for: "<|im_end|>"))])
        XCTAssertEqual(q.padTokenId, q.id(for: "<|endoftext|>"))
    }

    // MARK: round trips and streaming

    func testRoundTrip() throws {
        for name in ["smollm2", "qwen2_style", "llama3_style"] {
            let t = try tokLoad(name)
            for c in try tokCases("\(name)_cases.json") where c.decoded == c.text {
                XCTAssertEqual(t.decode(t.encode(c.text, addSpecialTokens: false)), c.text, "\(name) \(tokShow(c.text))")
            }
        }
        // random text over many scripts (no characters the vocabulary lacks): byte-level BPE is lossless
        let t = try tokLoad("smollm2")
        var rng = TestRNG(seed: 7)
        let pool = Array("abc XYZ 0123 .,;!?'\"\n\t\r éüß ñ ЖЯ ΩΣ אב عربى हि 日本語 한국 🎉👍🏽👨‍👩‍👧 \u{0301}\u{00A0}\u{3000}<|im_start|>".unicodeScalars)
        for _ in 0..<300 {
            var v = String.UnicodeScalarView()
            for _ in 0..<Int(rng.next() % 60) { v.append(pool[Int(rng.next() % UInt64(pool.count))]) }
            let s = String(v)
            XCTAssertEqual(t.decode(t.encode(s)), s, tokShow(s))
        }
    }

    func testStreamingDecodeEqualsFullDecode() throws {
        for name in ["smollm2", "qwen2_style", "llama3_style"] {
            let t = try tokLoad(name)
            for c in try tokCases("\(name)_cases.json") {
                for skip in [false, true] {
                    var d = t.makeStreamingDecoder(skipSpecialTokens: skip)
                    var text = ""
                    for id in c.ids { text += d.add(id) }
                    text += d.finish()
                    XCTAssertEqual(text, t.decode(c.ids, skipSpecialTokens: skip), "\(name) \(tokShow(c.text))")
                }
            }
        }
    }

    /// 👍🏽 is two 4-byte characters spread over several tokens: nothing is returned until a
    /// character is whole, and no U+FFFD ever appears.
    func testStreamingHoldsBackSplitCharacters() throws {
        let t = try tokLoad("smollm2")
        let ids = t.encode("ok 👍🏽 👨‍👩‍👧!", addSpecialTokens: false)
        XCTAssertGreaterThan(ids.count, 6)
        var d = t.makeStreamingDecoder()
        var pieces: [String] = []
        var heldBack = false
        for id in ids {
            let s = d.add(id)
            pieces.append(s)
            XCTAssertFalse(s.unicodeScalars.contains("\u{FFFD}"))
            if d.pendingByteCount > 0 { heldBack = true }
        }
        XCTAssertTrue(heldBack)
        XCTAssertEqual(d.finish(), "")
        XCTAssertEqual(pieces.joined(), "ok 👍🏽 👨‍👩‍👧!")
        // an unfinished character at the end comes out as U+FFFD, as in decode
        var e = t.makeStreamingDecoder()
        let thumb = t.encode("👍", addSpecialTokens: false)
        XCTAssertGreaterThan(thumb.count, 1)
        XCTAssertEqual(e.add(thumb[0]), "")
        XCTAssertEqual(e.finish(), t.decode([thumb[0]]))
        XCTAssertEqual(StreamingDecoder.incompleteTailLength([0x61, 0xF0, 0x9F]), 2)
        XCTAssertEqual(StreamingDecoder.incompleteTailLength([0xF0, 0x9F, 0x91, 0x8D]), 0)
        XCTAssertEqual(StreamingDecoder.incompleteTailLength([0xE0, 0x80]), 0)   // invalid, decided now
        XCTAssertEqual(StreamingDecoder.incompleteTailLength([0xED, 0x9F]), 2)
    }

    /// A stop string is found token by token exactly when the decoded text so far first contains
    /// it: across token boundaries, after a character split over tokens, and not before.
    func testStopStringMatcherAgreesWithDecodingEverything() throws {
        let t = try tokLoad("smollm2")
        let text = "The answer: 👍🏽 is forty-two.\nUser: next question, please. END"
        let ids = t.encode(text, addSpecialTokens: false)
        for stops in [["User:"], ["forty-two"], ["🏽 is"], ["\n"], ["END"], ["nowhere", "ques"], ["-"], ["not in it"]] {
            var m = StopStringMatcher(stops: stops, tokenizer: t)
            var firstByMatcher: Int? = nil
            for (i, id) in ids.enumerated() where firstByMatcher == nil {
                if m.add(id) { firstByMatcher = i }
            }
            let firstByDecoding = ids.indices.first { i in
                let s = t.decode(Array(ids[...i]), skipSpecialTokens: true)
                return stops.contains { s.contains($0) }
            }
            XCTAssertEqual(firstByMatcher, firstByDecoding, "\(stops)")
        }
    }

    // MARK: BPE merge paths agree

    /// The array scan (short pieces) and the heap (long pieces) give what the slow scan gives, on every
    /// piece of the fixture texts and on long random pieces.
    func testMergeStrategiesAgree() throws {
        let t = try tokLoad("smollm2")
        let m = t.model
        var pieces: [String] = []
        for c in try tokCases("smollm2_cases.json") { pieces += t.preTokenize(c.text) }
        var rng = TestRNG(seed: 3)
        let letters = Array("etaoinshrdlucmfwypvbgkqjxz ".utf8)
        for _ in 0..<50 {
            pieces.append(String(decoding: (0..<(50 + Int(rng.next() % 400))).map { _ in letters[Int(rng.next() % 26)] }, as: UTF8.self))
        }
        pieces.append(String(repeating: "a", count: 1000))
        pieces.append(String(repeating: " ", count: 700))
        var symbols: [Int32] = []
        for p in pieces {
            let bytes = Array(p.utf8)
            bytes.withUnsafeBufferPointer { m.initialSymbols($0, &symbols) }
            let reference = m.mergeReference(symbols)
            var scan = symbols, heap = symbols
            m.mergeByScan(&scan)
            m.mergeWithHeap(&heap)
            XCTAssertEqual(scan, reference, tokShow(p))
            XCTAssertEqual(heap, reference, tokShow(p))
        }
    }

    // MARK: robustness

    func testNoCrashOnAwkwardInput() throws {
        let t = try tokLoad("qwen2_style")
        let texts = ["", " ", "\u{0301}", "\u{0301}\u{0301}a", String(repeating: " ", count: 10_000),
                     String(repeating: "\n", count: 5000), String(repeating: "x", count: 20_000),
                     String(repeating: "9", count: 3001), String(repeating: "👍🏽", count: 500),
                     String(repeating: "<|im_start|", count: 100), "\u{10FFFF}\u{E000}\u{FFFE}", "\u{0}\u{1}\u{7F}",
                     String(repeating: "'s", count: 100) + "'", "cafe\u{0301}" + String(repeating: "\u{0301}", count: 50)]
        for s in texts {
            let ids = t.encode(s)
            XCTAssertTrue(ids.allSatisfy { $0 >= 0 && $0 < t.vocabSize })
            _ = t.decode(ids)
        }
        XCTAssertEqual(t.decode([-5, 1 << 40, t.vocabSize]), "")
    }

    func testConcurrentEncodingGivesSameIds() throws {
        let t = try tokLoad("smollm2")
        let cases = try tokCases("smollm2_cases.json")
        var results = [[[Int]]](repeating: [], count: 4)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 4) { k in
            var r: [[Int]] = []
            for _ in 0..<5 { for c in cases { r.append(t.encode(c.text)) } }
            lock.lock(); results[k] = r; lock.unlock()
        }
        let expected = Array(repeating: cases.map(\.ids), count: 5).flatMap { $0 }
        for r in results { XCTAssertEqual(r, expected) }
    }
}
