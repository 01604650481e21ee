import Foundation

// Writes a Tokenizer back as Hugging Face files — tokenizer.json, tokenizer_config.json and
// special_tokens_map.json — that `tokenizers` / `transformers.AutoTokenizer` load and that
// tokenize as this Tokenizer does (and as Distill's own reader reads them back, same fingerprint).
// Made for tokenizers built from a GGUF's `tokenizer.ggml.*` arrays, which come with no files.
//
// What is written, in the shape transformers' converters give it:
// - model: BPE with the vocabulary by id, the merges by rank ("a b" strings, or ["a", "b"] pairs
//   when a token holds a space), unk_token / fuse_unk / byte_fallback / ignore_merges.
// - added_tokens with their flags (GGUF control tokens: special, not normalized; user-defined:
//   not special, not normalized).
// - normalizer (NFC… or a Sequence, or null), pre_tokenizer (Split with the known regex, Digits,
//   ByteLevel — one step bare, several in a Sequence), post_processor (ByteLevel, and a
//   TemplateProcessing for the BOS/EOS put around a sequence), decoder (ByteLevel, with Replace /
//   ByteFallback steps when the source had them; null for a decoder-less file).
// - tokenizer_config.json: tokenizer_class (the source's, else PreTrainedTokenizerFast, whose
//   post-processor is the file's own), bos/eos/pad/unk, add_bos_token / add_eos_token and
//   add_prefix_space agreeing with the files, chat template(s), added_tokens_decoder,
//   clean_up_tokenization_spaces, split_special_tokens, model_max_length when known, and
//   model_input_names (input_ids, attention_mask) with PreTrainedTokenizerFast.
//
// One known difference: GGUF tokenizers decode added tokens as their raw text (llama.cpp), the
// Hugging Face files through the ByteLevel decoder (tokenizers); the two differ only for added
// tokens outside printable ASCII. Pair templates are written as transformers' Llama class builds
// them (Distill encodes single sequences only).

extension Tokenizer {
    /// The three files' names, in the order `save(to:)` writes them.
    public static let huggingFaceFileNames = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

    /// Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json into `directory`
    /// (created if needed), each through a temporary file renamed into place.
    /// `modelMaxLength` goes to tokenizer_config.json's `model_max_length` (e.g. the model's
    /// `max_position_embeddings`).
    public func save(to directory: URL, modelMaxLength: Int? = nil) throws {
        do { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw FileError(file: directory.path, "cannot create the directory: \(ioFailureReason(error))")
        }
        let files: [(String, Data)] = [
            ("tokenizer.json", tokenizerJSONData()),
            ("tokenizer_config.json", tokenizerConfigJSONData(modelMaxLength: modelMaxLength)),
            ("special_tokens_map.json", specialTokensMapJSONData()),
        ]
        for (name, data) in files {
            let url = directory.appendingPathComponent(name)
            do { try data.write(to: url, options: .atomic) } catch {
                throw FileError(file: url.path, "cannot write: \(ioFailureReason(error))")
            }
        }
    }

    // MARK: - tokenizer.json

    /// tokenizer.json contents.
    public func tokenizerJSONData() -> Data {
        var vocab: [(String, JSONOut)] = []
        vocab.reserveCapacity(model.idToToken.count)
        for (id, t) in model.idToToken.enumerated() { if let t { vocab.append((t, .int(id))) } }
        let pairs = model.mergeList.map { (model.idToToken[Int($0.0)]!, model.idToToken[Int($0.1)]!) }
        // tokenizers reads either all "a b" strings or all ["a", "b"] pairs.
        let asPairs = pairs.contains { $0.0.contains(" ") || $0.1.contains(" ") }
        let merges: [JSONOut] = pairs.map { asPairs ? .array([.string($0.0), .string($0.1)]) : .string($0.0 + " " + $0.1) }
        let bpe: JSONOut = .object([
            ("type", .string("BPE")),
            ("dropout", .null),
            ("unk_token", model.unkId.map { .string(model.idToToken[Int($0)]!) } ?? .null),
            ("continuing_subword_prefix", .null),
            ("end_of_word_suffix", .null),
            ("fuse_unk", .bool(model.fuseUnk)),
            ("byte_fallback", .bool(model.fallbackIds != nil)),
            ("ignore_merges", .bool(model.ignoreMerges)),
            ("vocab", .object(vocab)),
            ("merges", .array(merges)),
        ])
        let root: JSONOut = .object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array(addedTokens.map { t in
                .object([("id", .int(t.id)), ("content", .string(t.content)), ("single_word", .bool(t.singleWord)),
                         ("lstrip", .bool(t.lstrip)), ("rstrip", .bool(t.rstrip)), ("normalized", .bool(t.normalized)),
                         ("special", .bool(t.special))])
            })),
            ("normalizer", normalizerJSON),
            ("pre_tokenizer", preTokenizerJSON),
            ("post_processor", postProcessorJSON),
            ("decoder", decoderJSON),
            ("model", bpe),
        ])
        return root.data()
    }

    private var normalizerJSON: JSONOut {
        let forms = normalizer.forms.map { JSONOut.object([("type", .string($0.rawValue))]) }
        switch forms.count {
        case 0: return .null
        case 1: return forms[0]
        default: return .object([("type", .string("Sequence")), ("normalizers", .array(forms))])
        }
    }

    private var preTokenizerJSON: JSONOut {
        let steps: [JSONOut] = preTokenizer.steps.map { step in
            switch step {
            case .split(let pattern):
                let regex = SplitPattern.byRegex.first { $0.value == pattern }!.key
                return .object([("type", .string("Split")), ("pattern", .object([("Regex", .string(regex))])),
                                ("behavior", .string("Isolated")), ("invert", .bool(false))])
            case .digits(let individual):
                return .object([("type", .string("Digits")), ("individual_digits", .bool(individual))])
            case .byteLevel(let addPrefixSpace, let useRegex):
                return .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(addPrefixSpace)),
                                ("trim_offsets", .bool(true)), ("use_regex", .bool(useRegex))])
            }
        }
        return steps.count == 1 ? steps[0] : .object([("type", .string("Sequence")), ("pretokenizers", .array(steps))])
    }

    /// The ByteLevel step's add_prefix_space (false when there is none).
    private var addsPrefixSpace: Bool {
        for step in preTokenizer.steps { if case .byteLevel(let a, _) = step { return a } }
        return false
    }

    private var postProcessorJSON: JSONOut {
        let byteLevel: JSONOut = .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(true)),
                                          ("trim_offsets", .bool(false)), ("use_regex", .bool(true))])
        if prefixIds.isEmpty && suffixIds.isEmpty { return byteLevel }
        func special(_ id: Int, _ typeId: Int) -> JSONOut {
            .object([("SpecialToken", .object([("id", .string(token(for: id) ?? "")), ("type_id", .int(typeId))]))])
        }
        func sequence(_ name: String, _ typeId: Int) -> JSONOut {
            .object([("Sequence", .object([("id", .string(name)), ("type_id", .int(typeId))]))])
        }
        let single = prefixIds.map { special($0, 0) } + [sequence("A", 0)] + suffixIds.map { special($0, 0) }
        let pair = single + prefixIds.map { special($0, 1) } + [sequence("B", 1)] + suffixIds.map { special($0, 1) }
        var specials: [(String, JSONOut)] = []
        for id in prefixIds + suffixIds {
            let t = token(for: id) ?? ""
            if specials.contains(where: { $0.0 == t }) { continue }
            specials.append((t, .object([("id", .string(t)), ("ids", .array([.int(id)])), ("tokens", .array([.string(t)]))])))
        }
        let template: JSONOut = .object([("type", .string("TemplateProcessing")), ("single", .array(single)),
                                         ("pair", .array(pair)), ("special_tokens", .object(specials))])
        return .object([("type", .string("Sequence")), ("processors", .array([byteLevel, template]))])
    }

    private var decoderJSON: JSONOut {
        let byteLevel: JSONOut = .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(true)),
                                          ("trim_offsets", .bool(true)), ("use_regex", .bool(true))])
        switch decoder {
        case .joinWithSpaces:
            return .null
        case .byteLevel(let replacements, let byteFallback):
            if replacements.isEmpty && !byteFallback { return byteLevel }
            var steps: [JSONOut] = replacements.map {
                .object([("type", .string("Replace")), ("pattern", .object([("String", .string($0.pattern))])),
                         ("content", .string($0.content))])
            }
            if byteFallback { steps.append(.object([("type", .string("ByteFallback"))])) }
            steps.append(byteLevel)
            return .object([("type", .string("Sequence")), ("decoders", .array(steps))])
        }
    }

    // MARK: - tokenizer_config.json and special_tokens_map.json

    /// tokenizer_config.json contents.
    public func tokenizerConfigJSONData(modelMaxLength: Int? = nil) -> Data {
        var items: [(String, JSONOut)] = []
        items.append(("add_bos_token", .bool(bosTokenId.map { prefixIds == [$0] } ?? false)))
        items.append(("add_eos_token", .bool(eosTokenIds.first.map { suffixIds == [$0] } ?? false)))
        items.append(("add_prefix_space", .bool(addsPrefixSpace)))
        items.append(("added_tokens_decoder", .object(addedTokens.map { t in
            ("\(t.id)", .object([("content", .string(t.content)), ("lstrip", .bool(t.lstrip)), ("normalized", .bool(t.normalized)),
                                 ("rstrip", .bool(t.rstrip)), ("single_word", .bool(t.singleWord)), ("special", .bool(t.special))]))
        })))
        items.append(("bos_token", bosToken.map(JSONOut.string) ?? .null))
        if chatTemplates.count == 1, let t = chatTemplates["default"] {
            items.append(("chat_template", .string(t)))
        } else if !chatTemplates.isEmpty {
            items.append(("chat_template", .array(chatTemplates.keys.sorted().map {
                .object([("name", .string($0)), ("template", .string(chatTemplates[$0]!))])
            })))
        }
        items.append(("clean_up_tokenization_spaces", .bool(cleanUpTokenizationSpaces)))
        items.append(("eos_token", eosToken.map(JSONOut.string) ?? .null))
        // PreTrainedTokenizerFast would also return token_type_ids, which no decoder-only model
        // takes (transformers' generate refuses them, e.g. optimum's ONNX models).
        if tokenizerClass == nil { items.append(("model_input_names", .array([.string("input_ids"), .string("attention_mask")]))) }
        if let modelMaxLength { items.append(("model_max_length", .int(modelMaxLength))) }
        items.append(("pad_token", padToken.map(JSONOut.string) ?? .null))
        items.append(("split_special_tokens", .bool(!parsesSpecialTokensByDefault)))
        items.append(("tokenizer_class", .string(tokenizerClass ?? "PreTrainedTokenizerFast")))
        items.append(("unk_token", unkToken.map(JSONOut.string) ?? .null))
        return JSONOut.object(items).data()
    }

    /// special_tokens_map.json contents: bos/eos/pad/unk with their added-token flags.
    public func specialTokensMapJSONData() -> Data {
        var items: [(String, JSONOut)] = []
        for (key, content) in [("bos_token", bosToken), ("eos_token", eosToken), ("pad_token", padToken), ("unk_token", unkToken)] {
            guard let content else { continue }
            let t = addedTokens.first { $0.content == content } ?? AddedToken(id: -1, content: content, special: true)
            items.append((key, .object([("content", .string(content)), ("lstrip", .bool(t.lstrip)), ("normalized", .bool(t.normalized)),
                                        ("rstrip", .bool(t.rstrip)), ("single_word", .bool(t.singleWord))])))
        }
        return JSONOut.object(items).data()
    }
}

/// A JSON value whose objects keep their key order (tokenizer.json lists the vocabulary by id),
/// printed as Python's `json.dumps(indent=2, ensure_ascii=False)` does.
enum JSONOut {
    case null
    case bool(Bool)
    case int(Int)
    case string(String)
    case array([JSONOut])
    case object([(String, JSONOut)])

    func data() -> Data {
        var out: [UInt8] = []
        write(to: &out, indent: 0)
        out.append(0x0A)
        return Data(out)
    }

    private func write(to out: inout [UInt8], indent: Int) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .int(let i): out += Array(String(i).utf8)
        case .string(let s): JSONOut.writeString(s, to: &out)
        case .array(let items):
            if items.isEmpty { out += Array("[]".utf8); return }
            out.append(UInt8(ascii: "["))
            for (i, v) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONOut.newline(&out, indent + 2)
                v.write(to: &out, indent: indent + 2)
            }
            JSONOut.newline(&out, indent)
            out.append(UInt8(ascii: "]"))
        case .object(let items):
            if items.isEmpty { out += Array("{}".utf8); return }
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONOut.newline(&out, indent + 2)
                JSONOut.writeString(k, to: &out)
                out += Array(": ".utf8)
                v.write(to: &out, indent: indent + 2)
            }
            JSONOut.newline(&out, indent)
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func newline(_ out: inout [UInt8], _ indent: Int) {
        out.append(0x0A)
        out += [UInt8](repeating: 0x20, count: indent)
    }

    /// A JSON string: `"` and `\` escaped, control characters as \n, \t, … or \u00XX, the rest as UTF-8.
    static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0x08: out += [0x5C, UInt8(ascii: "b")]
            case 0x0C: out += [0x5C, UInt8(ascii: "f")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
