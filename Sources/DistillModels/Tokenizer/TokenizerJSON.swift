import Foundation

/// Everything a Tokenizer is built from, whichever file it came from (tokenizer.json +
/// tokenizer_config.json, or GGUF arrays).
struct TokenizerSpec {
    var file: String
    var vocab: [String: Int]
    var merges: [(String, String)]
    var mergesLocation = "model.merges"
    var unkToken: String? = nil
    var fuseUnk = false
    var byteFallback = false
    var ignoreMerges = false
    var addedTokens: [AddedToken] = []
    var normalizer = Normalizer(forms: [])
    var preTokenizer = PreTokenizer(steps: [.byteLevel(addPrefixSpace: false, useRegex: true)])
    /// Ids the post-processor puts around a single sequence.
    var prefix: [Int] = []
    var suffix: [Int] = []
    var decoder = DecoderSpec.byteLevel(replacements: [], byteFallback: false)
    /// GGUF: control and user-defined tokens decode as their text (llama.cpp); tokenizer.json: through
    /// the decoder, like every token (tokenizers).
    var addedTokensDecodeRaw = false
    var bosToken: String? = nil
    var eosToken: String? = nil
    var padToken: String? = nil
    var unkTokenName: String? = nil
    var bosId: Int? = nil
    var eosIds: [Int] = []
    var padId: Int? = nil
    var unkId: Int? = nil
    var chatTemplates: [String: String] = [:]
    var cleanUpTokenizationSpaces = false
    var splitSpecialTokens = false
    var tokenizerClass: String? = nil
}

/// The decoders byte-level files use: `ByteLevel`, alone or in a `Sequence` with `Replace` (string
/// patterns), `ByteFallback`, `Fuse` and `Strip`-free chains as transformers' converters write them;
/// or none (tokens joined by spaces, as `tokenizers` does without a decoder).
enum DecoderSpec: Equatable {
    case byteLevel(replacements: [Replacement], byteFallback: Bool)
    case joinWithSpaces

    struct Replacement: Equatable {
        var pattern: String
        var content: String
    }
}

/// A value in a parsed JSON document together with its key path, so that every complaint names
/// the file and the place (`model.merges[12]`).
struct TokenizerJSONNode {
    /// Parses `data` as JSON whose top level must be an object.
    static func parseObject(_ data: Data, file: String) throws -> TokenizerJSONNode {
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw FileError(file: file, "not valid JSON (\(error.localizedDescription))")
        }
        let root = TokenizerJSONNode(value, path: "", file: file)
        _ = try root.object()
        return root
    }

    let value: Any?      // nil when the key is missing
    let path: String
    let file: String

    init(_ value: Any?, path: String, file: String) {
        self.value = value
        self.path = path
        self.file = file
    }

    subscript(key: String) -> TokenizerJSONNode {
        let dict = value as? [String: Any]
        return TokenizerJSONNode(dict?[key], path: path.isEmpty ? key : "\(path).\(key)", file: file)
    }

    var isMissing: Bool { value == nil }
    var isNull: Bool { value == nil || value is NSNull }

    func error(_ message: String) -> FileError { FileError(file: file, location: path, message) }

    static func kind(_ v: Any?) -> String {
        guard let v = v else { return "nothing (the key is missing)" }
        if v is NSNull { return "null" }
        if isBool(v) { return "a boolean" }
        if v is String { return "a string" }
        if v is NSNumber { return "a number" }
        if v is [Any] { return "an array" }
        if v is [String: Any] { return "an object" }
        return "\(type(of: v))"
    }

    static func isBool(_ v: Any) -> Bool {
        String(describing: type(of: v)).contains("Boolean") || type(of: v) == Bool.self
    }

    func object() throws -> [String: Any] {
        guard let d = value as? [String: Any] else { throw error("expected an object, found \(TokenizerJSONNode.kind(value))") }
        return d
    }

    func array() throws -> [TokenizerJSONNode] {
        guard let a = value as? [Any] else { throw error("expected an array, found \(TokenizerJSONNode.kind(value))") }
        return a.enumerated().map { TokenizerJSONNode($1, path: "\(path)[\($0)]", file: file) }
    }

    func string() throws -> String {
        guard let s = value as? String else { throw error("expected a string, found \(TokenizerJSONNode.kind(value))") }
        return s
    }

    func optionalString() throws -> String? { isNull ? nil : try string() }

    func int() throws -> Int {
        guard let v = value, !TokenizerJSONNode.isBool(v), let n = v as? NSNumber, let i = Int(exactly: n.doubleValue) else {
            throw error("expected an integer, found \(TokenizerJSONNode.kind(value))")
        }
        return i
    }

    func bool(default d: Bool) throws -> Bool {
        if isNull { return d }
        guard let v = value, TokenizerJSONNode.isBool(v), let b = v as? Bool else {
            throw error("expected true or false, found \(TokenizerJSONNode.kind(value))")
        }
        return b
    }

    /// A special token in tokenizer_config.json: a string, or an object with "content"; null when absent.
    func tokenContent() throws -> String? {
        if isNull { return nil }
        if value is String { return try string() }
        if value is [String: Any] { return try self["content"].string() }
        throw error("expected a token string or an object with \"content\", found \(TokenizerJSONNode.kind(value))")
    }
}

extension TokenizerSpec {
    /// Reads tokenizer.json (and tokenizer_config.json when given).
    init(tokenizerJSON data: Data, file: String, config: Data?, configFile: String) throws {
        let root = try TokenizerJSONNode.parseObject(data, file: file)

        // model
        let model = root["model"]
        if model.isMissing { throw FileError(file: file, location: "model", "missing: a tokenizer.json has a \"model\" object") }
        _ = try model.object()
        let type = model["type"].isNull ? "BPE" : try model["type"].string()
        guard type == "BPE" else {
            throw model["type"].error("unsupported tokenizer model \(tokenQuoted(type)); Distill reads byte-level BPE tokenizers only")
        }
        let vocabNode = model["vocab"]
        if vocabNode.isMissing { throw vocabNode.error("missing: a BPE model has a \"vocab\" object of token -> id") }
        var vocab = [String: Int]()
        let vocabObject = try vocabNode.object()
        vocab.reserveCapacity(vocabObject.count)
        for (token, id) in vocabObject {
            guard !TokenizerJSONNode.isBool(id), let n = id as? NSNumber, let i = Int(exactly: n.doubleValue), i >= 0 else {
                throw FileError(file: file, location: "model.vocab.\(token)", "expected a non-negative integer id, found \(TokenizerJSONNode.kind(id))")
            }
            vocab[token] = i
        }
        let mergesNode = model["merges"]
        if mergesNode.isMissing { throw mergesNode.error("missing: a BPE model has a \"merges\" array") }
        guard let mergeValues = mergesNode.value as? [Any] else {
            throw mergesNode.error("expected an array, found \(TokenizerJSONNode.kind(mergesNode.value))")
        }
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeValues.count)
        for (i, m) in mergeValues.enumerated() {
            if let s = m as? String {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw FileError(file: file, location: "model.merges[\(i)]", "expected two tokens separated by one space, found \(tokenQuoted(s))")
                }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let a = m as? [Any], a.count == 2, let x = a[0] as? String, let y = a[1] as? String {
                merges.append((x, y))
            } else {
                throw FileError(file: file, location: "model.merges[\(i)]", "expected \"a b\" or [\"a\", \"b\"], found \(TokenizerJSONNode.kind(m))")
            }
        }
        self.init(file: file, vocab: vocab, merges: merges)
        unkToken = try model["unk_token"].optionalString()
        fuseUnk = try model["fuse_unk"].bool(default: false)
        byteFallback = try model["byte_fallback"].bool(default: false)
        ignoreMerges = try model["ignore_merges"].bool(default: false)
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = try model[key].optionalString(), !s.isEmpty {
                throw model[key].error("\(tokenQuoted(s)) is not supported (byte-level BPE files leave it null or empty)")
            }
        }

        // added tokens
        let addedNode = root["added_tokens"]
        if !addedNode.isNull {
            for t in try addedNode.array() {
                addedTokens.append(AddedToken(
                    id: try t["id"].int(), content: try t["content"].string(), special: try t["special"].bool(default: false),
                    lstrip: try t["lstrip"].bool(default: false), rstrip: try t["rstrip"].bool(default: false),
                    singleWord: try t["single_word"].bool(default: false), normalized: try t["normalized"].bool(default: true)))
            }
        }

        normalizer = try TokenizerSpec.parseNormalizer(root["normalizer"])
        preTokenizer = try TokenizerSpec.parsePreTokenizer(root["pre_tokenizer"])
        (prefix, suffix) = try TokenizerSpec.parsePostProcessor(root["post_processor"], vocab: vocab, added: addedTokens)
        decoder = try TokenizerSpec.parseDecoder(root["decoder"])

        if let config = config { try applyConfig(config, file: configFile) }
    }

    static func parseNormalizer(_ node: TokenizerJSONNode) throws -> Normalizer {
        if node.isNull { return Normalizer(forms: []) }
        let type = try node["type"].string()
        switch type {
        case "Sequence":
            var forms: [NormalizationForm] = []
            for n in try node["normalizers"].array() { forms += try parseNormalizer(n).forms }
            return Normalizer(forms: forms)
        default:
            guard let f = NormalizationForm(rawValue: type) else {
                throw node["type"].error("unsupported normalizer \(tokenQuoted(type)); supported: NFC, NFD, NFKC, NFKD, Sequence")
            }
            return Normalizer(forms: [f])
        }
    }

    static func parsePreTokenizer(_ node: TokenizerJSONNode) throws -> PreTokenizer {
        if node.isNull {
            throw node.error("missing: a byte-level BPE tokenizer has a ByteLevel pre-tokenizer")
        }
        var steps: [PreTokenizerStep] = []
        func add(_ n: TokenizerJSONNode) throws {
            let type = try n["type"].string()
            switch type {
            case "Sequence":
                for p in try n["pretokenizers"].array() { try add(p) }
            case "ByteLevel":
                steps.append(.byteLevel(addPrefixSpace: try n["add_prefix_space"].bool(default: true),
                                        useRegex: try n["use_regex"].bool(default: true)))
            case "Digits":
                steps.append(.digits(individual: try n["individual_digits"].bool(default: false)))
            case "Split":
                let behavior = try n["behavior"].string()
                guard behavior == "Isolated" else {
                    throw n["behavior"].error("split behaviour \(tokenQuoted(behavior)) is not supported (only Isolated)")
                }
                if try n["invert"].bool(default: false) { throw n["invert"].error("inverted splits are not supported") }
                let pattern = n["pattern"]
                guard let regex = try pattern["Regex"].optionalString() else {
                    throw pattern.error("only {\"Regex\": ...} patterns are supported")
                }
                guard let known = SplitPattern.byRegex[regex] else {
                    throw pattern["Regex"].error("unsupported split regex \(tokenQuoted(regex)); supported: the GPT-2, Llama 3 and Qwen2 patterns")
                }
                steps.append(.split(known))
            default:
                throw n["type"].error("unsupported pre-tokenizer \(tokenQuoted(type)); supported: ByteLevel, Split, Digits, Sequence")
            }
        }
        try add(node)
        guard let last = steps.last, case .byteLevel = last else {
            throw node.error("not a byte-level BPE tokenizer: the pre-tokenizer must end with a ByteLevel step")
        }
        if steps.dropLast().contains(where: { if case .byteLevel = $0 { return true }; return false }) {
            throw node.error("more than one ByteLevel step is not supported")
        }
        return PreTokenizer(steps: steps)
    }

    /// (prefix, suffix) ids for a single sequence.
    static func parsePostProcessor(_ node: TokenizerJSONNode, vocab: [String: Int], added: [AddedToken]) throws -> ([Int], [Int]) {
        if node.isNull { return ([], []) }
        func idOf(_ token: String, _ n: TokenizerJSONNode) throws -> Int {
            if let a = added.first(where: { $0.content == token }) { return a.id }
            if let id = vocab[token] { return id }
            throw n.error("token \(tokenQuoted(token)) is not in the vocabulary")
        }
        let type = try node["type"].string()
        switch type {
        case "ByteLevel":
            return ([], [])
        case "Sequence":
            var prefix: [Int] = [], suffix: [Int] = []
            for p in try node["processors"].array() {
                let (a, b) = try parsePostProcessor(p, vocab: vocab, added: added)
                prefix = a + prefix
                suffix += b
            }
            return (prefix, suffix)
        case "TemplateProcessing":
            let specials = node["special_tokens"]
            var prefix: [Int] = [], suffix: [Int] = []
            var seenSequence = false
            for item in try node["single"].array() {
                if !item["Sequence"].isMissing {
                    seenSequence = true
                } else if !item["SpecialToken"].isMissing {
                    let name = try item["SpecialToken"]["id"].string()
                    let entry = specials[name]
                    if entry.isMissing { throw specials.error("no entry for \(tokenQuoted(name)), which \(item.path) uses") }
                    let ids = try entry["ids"].array().map { try $0.int() }
                    if seenSequence { suffix += ids } else { prefix += ids }
                } else {
                    throw item.error("expected {\"SpecialToken\": ...} or {\"Sequence\": ...}")
                }
            }
            return (prefix, suffix)
        case "RobertaProcessing", "BertProcessing":
            let cls = try node["cls"].array(), sep = try node["sep"].array()
            guard cls.count == 2, sep.count == 2 else { throw node.error("cls and sep are [token, id] pairs") }
            return ([try cls[1].int()], [try sep[1].int()])
        default:
            throw node["type"].error("unsupported post-processor \(tokenQuoted(type)); supported: ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing, Sequence")
        }
    }

    static func parseDecoder(_ node: TokenizerJSONNode) throws -> DecoderSpec {
        if node.isNull { return .joinWithSpaces }
        var replacements: [DecoderSpec.Replacement] = []
        var byteFallback = false
        var sawByteLevel = false
        func add(_ n: TokenizerJSONNode) throws {
            let type = try n["type"].string()
            switch type {
            case "Sequence": for d in try n["decoders"].array() { try add(d) }
            case "ByteLevel": sawByteLevel = true
            case "ByteFallback": byteFallback = true
            case "Fuse": break
            case "Replace":
                guard let p = try n["pattern"]["String"].optionalString() else {
                    throw n["pattern"].error("only {\"String\": ...} patterns are supported")
                }
                replacements.append(.init(pattern: p, content: try n["content"].string()))
            default:
                throw n["type"].error("unsupported decoder \(tokenQuoted(type)); supported: ByteLevel, ByteFallback, Fuse, Replace, Sequence")
            }
        }
        try add(node)
        guard sawByteLevel else { throw node.error("not a byte-level BPE tokenizer: the decoder has no ByteLevel step") }
        return .byteLevel(replacements: replacements, byteFallback: byteFallback)
    }

    /// tokenizer_config.json: special token strings, add_bos_token / add_eos_token (for the Llama-family
    /// classes, whose transformers tokenizers rebuild the post-processor from them), chat template,
    /// clean_up_tokenization_spaces, split_special_tokens, and special tokens the config declares that
    /// tokenizer.json does not mark as added (transformers adds them).
    mutating func applyConfig(_ data: Data, file: String) throws {
        let root = try TokenizerJSONNode.parseObject(data, file: file)
        tokenizerClass = try root["tokenizer_class"].optionalString()
        bosToken = try root["bos_token"].tokenContent()
        eosToken = try root["eos_token"].tokenContent()
        padToken = try root["pad_token"].tokenContent()
        unkTokenName = try root["unk_token"].tokenContent()
        cleanUpTokenizationSpaces = try root["clean_up_tokenization_spaces"].bool(default: false)
        splitSpecialTokens = try root["split_special_tokens"].bool(default: false)

        let template = root["chat_template"]
        if template.value is String {
            chatTemplates["default"] = try template.string()
        } else if !template.isNull {
            for t in try template.array() { chatTemplates[try t["name"].string()] = try t["template"].string() }
        }

        // added_tokens_decoder entries and declared special tokens that tokenizer.json lacks
        let decoderNode = root["added_tokens_decoder"]
        if !decoderNode.isNull {
            for (key, _) in try decoderNode.object().sorted(by: { (Int($0.key) ?? 0) < (Int($1.key) ?? 0) }) {
                let t = decoderNode[key]
                guard let id = Int(key) else { throw t.error("expected an integer id as key") }
                let content = try t["content"].string()
                if addedTokens.contains(where: { $0.content == content }) { continue }
                addedTokens.append(AddedToken(
                    id: id, content: content, special: try t["special"].bool(default: false),
                    lstrip: try t["lstrip"].bool(default: false), rstrip: try t["rstrip"].bool(default: false),
                    singleWord: try t["single_word"].bool(default: false), normalized: try t["normalized"].bool(default: true)))
            }
        }
        var declared = [bosToken, eosToken, unkTokenName, padToken].compactMap { $0 }
        let extra = root["additional_special_tokens"]
        if !extra.isNull { declared += try extra.array().compactMap { try $0.tokenContent() } }
        for content in declared where !addedTokens.contains(where: { $0.content == content }) {
            if let id = vocab[content] { addedTokens.append(AddedToken(id: id, content: content, special: true)) }
        }

        // LlamaTokenizerFast (and its relatives) rebuild the template: [bos] $A [eos], per the flags
        let cls = (tokenizerClass ?? "").replacingOccurrences(of: "Fast", with: "")
        if ["LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer"].contains(cls) {
            let addBos = try root["add_bos_token"].bool(default: true)
            let addEos = try root["add_eos_token"].bool(default: false)
            func idOf(_ t: String?, _ key: String) throws -> [Int] {
                guard let t = t else { throw root[key].error("add_\(key) is true but there is no \(key)") }
                if let a = addedTokens.first(where: { $0.content == t }) { return [a.id] }
                if let id = vocab[t] { return [id] }
                throw root[key].error("\(tokenQuoted(t)) is not in the vocabulary")
            }
            prefix = addBos ? try idOf(bosToken, "bos_token") : []
            suffix = addEos ? try idOf(eosToken, "eos_token") : []
        }
    }
}
