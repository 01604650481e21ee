import Foundation

/// A byte-level BPE tokenizer (GPT-2, SmolLM2, Llama 3, Qwen2 families) that gives the same ids as
/// Hugging Face `tokenizers`, read from tokenizer.json (+ tokenizer_config.json) or from a GGUF's
/// `tokenizer.ggml.*` arrays.
///
/// Encoding runs as in `tokenizers`: added tokens are cut out of the raw text (leftmost-longest,
/// with their lstrip / rstrip / single_word flags); the rest is normalized (NFC for Qwen2), cut at
/// normalized added tokens, split by the pre-tokenizer (hand-written scanners for the GPT-2, Llama 3
/// and Qwen2 regexes and for Digits), and each piece's bytes are merged by BPE rank, with a cache
/// of pieces already seen. The post-processor's BOS/EOS go around the result.
///
/// Thread-safe: concurrent calls work; the piece cache is used by one call at a time (others run
/// without it).
public final class Tokenizer: @unchecked Sendable {
    let model: BPEModel
    let normalizer: Normalizer
    let preTokenizer: PreTokenizer
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    let decoder: DecoderSpec
    /// Whether added tokens decode as their text (GGUF) rather than through the decoder.
    let addedTokensDecodeRaw: Bool
    /// Decoded bytes of every id (offsets into one arena), and which ids are special.
    private let decodedOffsets: [Int32]
    private let decodedBytes: [UInt8]
    private let specialIds: [Bool]
    private let addedById: [Int: AddedToken]
    private let addedByContent: [String: Int]

    /// All added tokens (special or not), by id.
    public let addedTokens: [AddedToken]
    /// Ids the post-processor puts before / after a single sequence when `addSpecialTokens` is true.
    public let prefixIds: [Int]
    public let suffixIds: [Int]

    public let bosToken: String?
    public let eosToken: String?
    public let padToken: String?
    public let unkToken: String?
    public let bosTokenId: Int?
    /// The end-of-sequence ids (eos, and for GGUF an end-of-turn id when it differs).
    public let eosTokenIds: [Int]
    public let padTokenId: Int?
    public let unkTokenId: Int?
    /// The chat template (tokenizer_config.json `chat_template`, or the GGUF's `tokenizer.chat_template`);
    /// with several named templates, the one named "default".
    public var chatTemplate: String? { chatTemplates["default"] }
    /// Every named chat template.
    public let chatTemplates: [String: String]
    /// transformers' `clean_up_tokenization_spaces` from the config (used by `decode` only when asked).
    public let cleanUpTokenizationSpaces: Bool
    /// Whether `encode` parses special tokens unless told otherwise (config `split_special_tokens` false).
    public let parsesSpecialTokensByDefault: Bool
    /// transformers' tokenizer class from the config, if any.
    public let tokenizerClass: String?
    /// A stable hash of everything that decides ids (vocabulary, merges, added tokens, normalizer,
    /// pre-tokenizer, BPE options): 16 hex digits of FNV-1a 64. Equal for a GGUF and a tokenizer.json
    /// that tokenize alike. For cache headers.
    public let fingerprint: String

    /// Number of ids (one more than the largest id of the vocabulary and the added tokens).
    public let vocabSize: Int

    /// Whether pieces already seen are looked up instead of merged again (off only to measure).
    var usesPieceCache = true

    private let scratchLock = NSLock()
    private let sharedScratch = EncodeScratch()

    // MARK: - Construction

    /// Reads a Hugging Face tokenizer.json, and tokenizer_config.json when given.
    public convenience init(tokenizerJSON url: URL, config configURL: URL? = nil) throws {
        let data: Data, configData: Data?
        do { data = try Data(contentsOf: url) } catch {
            throw FileError(file: url.path, "cannot read the file (\(ioFailureReason(error)))")
        }
        if let c = configURL {
            do { configData = try Data(contentsOf: c) } catch {
                throw FileError(file: c.path, "cannot read the file (\(ioFailureReason(error)))")
            }
        } else {
            configData = nil
        }
        try self.init(tokenizerJSONData: data, file: url.path, configData: configData, configFile: configURL?.path ?? "")
    }

    /// Reads `directory`/tokenizer.json and, when present, `directory`/tokenizer_config.json.
    public convenience init(directory: URL) throws {
        let config = directory.appendingPathComponent("tokenizer_config.json")
        try self.init(tokenizerJSON: directory.appendingPathComponent("tokenizer.json"),
                      config: FileManager.default.fileExists(atPath: config.path) ? config : nil)
    }

    /// Reads tokenizer.json contents (and tokenizer_config.json contents); `file` names them in errors.
    public convenience init(tokenizerJSONData data: Data, file: String = "tokenizer.json",
                            configData: Data? = nil, configFile: String = "tokenizer_config.json") throws {
        var spec = try TokenizerSpec(tokenizerJSON: data, file: file, config: configData, configFile: configFile)
        let ids = { (t: String?) -> Int? in
            guard let t = t else { return nil }
            return spec.addedTokens.first(where: { $0.content == t })?.id ?? spec.vocab[t]
        }
        spec.bosId = ids(spec.bosToken)
        spec.eosIds = ids(spec.eosToken).map { [$0] } ?? []
        spec.padId = ids(spec.padToken)
        spec.unkId = ids(spec.unkTokenName ?? spec.unkToken)
        if spec.unkTokenName == nil { spec.unkTokenName = spec.unkToken }
        try self.init(spec: spec)
    }

    /// Builds a tokenizer from GGUF metadata arrays (`tokenizer.ggml.tokens`, `.merges`, `.token_type`,
    /// `.model`, `.pre`, and the special ids). Token type 3 (control) becomes a special added token, 4
    /// (user-defined) a non-special one; both are matched before BPE. `pre` picks the split:
    /// "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva" (digits one by
    /// one, then GPT-2); "llama-bpe", "llama3", "dbrx", "smaug-bpe" (Llama 3, with ignore_merges); "qwen2", "stablelm2",
    /// "deepseek-r1-qwen" (Qwen2, with NFC as in the Hugging Face files); "gpt2", "default", "mpt",
    /// "olmo", "jais", "gpt-2" (GPT-2).
    public convenience init(ggufTokens tokens: [String], merges: [String], tokenTypes: [Int],
                            model: String = "gpt2", pre: String = "default",
                            bosId: Int? = nil, eosId: Int? = nil, eotId: Int? = nil, padId: Int? = nil, unkId: Int? = nil,
                            addBos: Bool = false, addEos: Bool = false, chatTemplate: String? = nil,
                            file: String = "GGUF") throws {
        guard model == "gpt2" else {
            throw FileError(file: file, location: "tokenizer.ggml.model",
                            "unsupported tokenizer model \(tokenQuoted(model)); Distill reads byte-level BPE (\"gpt2\") tokenizers only")
        }
        guard tokenTypes.isEmpty || tokenTypes.count == tokens.count else {
            throw FileError(file: file, location: "tokenizer.ggml.token_type",
                            "has \(tokenTypes.count) entries for \(tokens.count) tokens")
        }
        var vocab = [String: Int](minimumCapacity: tokens.count)
        for (i, t) in tokens.enumerated() where vocab[t] == nil { vocab[t] = i }
        var pairs: [(String, String)] = []
        pairs.reserveCapacity(merges.count)
        for (i, m) in merges.enumerated() {
            let parts = m.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw FileError(file: file, location: "tokenizer.ggml.merges[\(i)]", "expected two tokens separated by one space, found \(tokenQuoted(m))")
            }
            pairs.append((String(parts[0]), String(parts[1])))
        }
        var spec = TokenizerSpec(file: file, vocab: vocab, merges: pairs)
        spec.mergesLocation = "tokenizer.ggml.merges"
        spec.addedTokensDecodeRaw = true
        switch pre {
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva":
            spec.preTokenizer = PreTokenizer(steps: [.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)])
        case "llama-bpe", "llama3", "dbrx", "smaug-bpe":
            spec.preTokenizer = PreTokenizer(steps: [.split(.llama3), .byteLevel(addPrefixSpace: false, useRegex: false)])
            spec.ignoreMerges = true   // as in the Hugging Face files and llama.cpp
        case "qwen2", "stablelm2", "deepseek-r1-qwen":
            spec.preTokenizer = PreTokenizer(steps: [.split(.qwen2), .byteLevel(addPrefixSpace: false, useRegex: false)])
            spec.normalizer = Normalizer(forms: [.nfc])
        case "gpt2", "gpt-2", "default", "mpt", "olmo", "jais":
            spec.preTokenizer = PreTokenizer(steps: [.byteLevel(addPrefixSpace: false, useRegex: true)])
        default:
            throw FileError(file: file, location: "tokenizer.ggml.pre",
                            "unsupported pre-tokenizer \(tokenQuoted(pre)); supported: smollm, starcoder, llama-bpe, qwen2, gpt2, default and their aliases")
        }
        for (i, type) in tokenTypes.enumerated() where type == 3 || type == 4 {
            spec.addedTokens.append(AddedToken(id: i, content: tokens[i], special: type == 3, normalized: false))
        }
        func check(_ id: Int?, _ key: String) throws -> Int? {
            guard let id = id else { return nil }
            guard id >= 0 && id < tokens.count else {
                throw FileError(file: file, location: key, "id \(id) is outside the vocabulary of \(tokens.count) tokens")
            }
            return id
        }
        spec.bosId = try check(bosId, "tokenizer.ggml.bos_token_id")
        let eos = try check(eosId, "tokenizer.ggml.eos_token_id")
        let eot = try check(eotId, "tokenizer.ggml.eot_token_id")
        spec.eosIds = [eos, eot].compactMap { $0 }.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
        spec.padId = try check(padId, "tokenizer.ggml.padding_token_id")
        spec.unkId = try check(unkId, "tokenizer.ggml.unknown_token_id")
        spec.bosToken = spec.bosId.map { tokens[$0] }
        spec.eosToken = eos.map { tokens[$0] }
        spec.padToken = spec.padId.map { tokens[$0] }
        spec.unkTokenName = spec.unkId.map { tokens[$0] }
        if addBos {
            guard let b = spec.bosId else { throw FileError(file: file, location: "tokenizer.ggml.add_bos_token", "is true but there is no bos_token_id") }
            spec.prefix = [b]
        }
        if addEos {
            guard let e = eos else { throw FileError(file: file, location: "tokenizer.ggml.add_eos_token", "is true but there is no eos_token_id") }
            spec.suffix = [e]
        }
        if let t = chatTemplate { spec.chatTemplates["default"] = t }
        try self.init(spec: spec)
    }

    init(spec: TokenizerSpec) throws {
        let file = spec.file
        model = try BPEModel(vocab: spec.vocab, merges: spec.merges, unkToken: spec.unkToken, fuseUnk: spec.fuseUnk,
                             byteFallback: spec.byteFallback, ignoreMerges: spec.ignoreMerges, file: file,
                             mergesLocation: spec.mergesLocation)
        normalizer = spec.normalizer
        preTokenizer = spec.preTokenizer
        decoder = spec.decoder
        addedTokensDecodeRaw = spec.addedTokensDecodeRaw

        var byId = [Int: AddedToken]()
        for t in spec.addedTokens {
            guard t.id >= 0 && t.id < Int(Int32.max) else {
                throw FileError(file: file, location: "added_tokens", "token \(tokenQuoted(t.content)) has id \(t.id), outside 0..<2^31")
            }
            if byId[t.id] == nil { byId[t.id] = t }
        }
        addedById = byId
        var byContent = [String: Int]()
        for t in byId.values.sorted(by: { $0.id < $1.id }) where byContent[t.content] == nil { byContent[t.content] = t.id }
        addedByContent = byContent
        addedTokens = byId.values.sorted { $0.id < $1.id }
        let raw = addedTokens.filter { !$0.normalized }
        let norm = addedTokens.filter { $0.normalized }
        rawMatcher = AddedTokenMatcher(raw, patterns: raw.map { Array($0.content.unicodeScalars.map(\.value)) })
        normalizedMatcher = AddedTokenMatcher(norm, patterns: norm.map {
            Array(spec.normalizer.normalize($0.content).unicodeScalars.map(\.value))
        })

        let size = max(model.vocabCount, (addedTokens.map(\.id).max() ?? -1) + 1)
        guard size <= model.vocabCount + addedTokens.count + BPEModel.maxIdGaps else {
            throw FileError(file: file, location: "added_tokens",
                            "an added token has id \(size - 1) but the vocabulary holds \(model.vocabCount) tokens and \(addedTokens.count) added ones: "
                            + "ids must number the tokens (with at most \(BPEModel.maxIdGaps) unused ids)")
        }
        vocabSize = size
        for id in spec.prefix + spec.suffix where id < 0 || id >= size {
            throw FileError(file: file, location: "post_processor", "special token id \(id) is outside the vocabulary of \(size)")
        }
        prefixIds = spec.prefix
        suffixIds = spec.suffix

        // decoded bytes per id
        var offsets = [Int32](repeating: 0, count: size + 1)
        var bytes: [UInt8] = []
        var special = [Bool](repeating: false, count: size)
        for id in 0..<size {
            if let a = byId[id] {
                special[id] = a.special
                if spec.addedTokensDecodeRaw {
                    bytes += Array(a.content.utf8)
                } else {
                    bytes += Tokenizer.decodeToken(a.content, spec.decoder)
                }
            } else if id < model.idToToken.count, let t = model.idToToken[id] {
                bytes += Tokenizer.decodeToken(t, spec.decoder)
            }
            offsets[id + 1] = Int32(bytes.count)
        }
        decodedOffsets = offsets
        decodedBytes = bytes
        specialIds = special

        bosToken = spec.bosToken
        eosToken = spec.eosToken
        padToken = spec.padToken
        unkToken = spec.unkTokenName
        bosTokenId = spec.bosId
        eosTokenIds = spec.eosIds
        padTokenId = spec.padId
        unkTokenId = spec.unkId
        chatTemplates = spec.chatTemplates
        cleanUpTokenizationSpaces = spec.cleanUpTokenizationSpaces
        parsesSpecialTokensByDefault = !spec.splitSpecialTokens
        tokenizerClass = spec.tokenizerClass

        var h = FNV1a()
        h.add("distill-bpe-1\u{0}")
        for t in model.idToToken { h.add(t ?? "\u{1}"); h.add(0) }
        h.add("merges\u{0}")
        for (a, b) in spec.merges { h.add(a); h.add(0x20); h.add(b); h.add(0) }
        h.add("added\u{0}")
        for t in addedTokens {
            h.add(t.id); h.add(t.content); h.add(0)
            h.add(UInt8((t.special ? 1 : 0) | (t.lstrip ? 2 : 0) | (t.rstrip ? 4 : 0) | (t.singleWord ? 8 : 0) | (t.normalized ? 16 : 0)))
        }
        h.add("pre\u{0}\(spec.preTokenizer)\u{0}norm\u{0}\(spec.normalizer)\u{0}")
        h.add("bpe\u{0}\(spec.unkToken ?? "")\u{0}\(spec.fuseUnk)\(spec.byteFallback)\(spec.ignoreMerges)")
        fingerprint = String(h.value, radix: 16).leftPadded(to: 16)
    }

    /// Bytes one vocabulary string decodes to.
    static func decodeToken(_ token: String, _ decoder: DecoderSpec) -> [UInt8] {
        switch decoder {
        case .joinWithSpaces:
            return Array(token.utf8)
        case .byteLevel(let replacements, let byteFallback):
            if byteFallback, token.utf8.count == 6, token.hasPrefix("<0x"), token.hasSuffix(">"),
               let b = UInt8(token.dropFirst(3).prefix(2), radix: 16) {
                return [b]
            }
            var t = token
            for r in replacements where !r.pattern.isEmpty { t = t.replacingOccurrences(of: r.pattern, with: r.content) }
            return ByteLevel.decodeOrRaw(t)
        }
    }

    // MARK: - Vocabulary

    /// The id of a token string (added tokens first, then the model vocabulary).
    public func id(for token: String) -> Int? {
        if let a = addedByContent[token] { return a }
        return model.tokenToId[token].map(Int.init)
    }

    /// The token string of an id (as stored: byte-level characters for vocabulary tokens).
    public func token(for id: Int) -> String? {
        if let a = addedById[id] { return a.content }
        guard id >= 0 && id < model.idToToken.count else { return nil }
        return model.idToToken[id]
    }

    /// The contents of the special added tokens (e.g. "<|im_start|>"), by id.
    public var specialTokenStrings: [String] { addedTokens.filter(\.special).map(\.content) }

    /// Whether the id is a special added token (skipped by `decode(skipSpecialTokens: true)`).
    public func isSpecial(_ id: Int) -> Bool { id >= 0 && id < specialIds.count && specialIds[id] }

    /// Whether `encode` puts a BOS / EOS around the text by default.
    public var addsBosToken: Bool { bosTokenId.map { prefixIds.contains($0) } ?? false }
    public var addsEosToken: Bool { eosTokenIds.contains { suffixIds.contains($0) } }

    /// The number of merge rules.
    public var mergeCount: Int { model.mergeCount }

    // MARK: - Encoding

    /// Token ids of `text`, as Hugging Face `tokenizer.encode(text, add_special_tokens=...)` gives them.
    /// - addSpecialTokens: put the post-processor's BOS/EOS (if any) around the ids.
    /// - parseSpecialTokens: match special added tokens in the text (default: the config's
    ///   `split_special_tokens` negated, i.e. true); when false their text is tokenized like any other.
    public func encode(_ text: String, addSpecialTokens: Bool = true, parseSpecialTokens: Bool? = nil) -> [Int] {
        var ids: [Int32] = []
        withScratch { encodeBody(text, parseSpecial: parseSpecialTokens ?? parsesSpecialTokensByDefault, $0, &ids) }
        var out: [Int] = []
        out.reserveCapacity(ids.count + prefixIds.count + suffixIds.count)
        if addSpecialTokens { out += prefixIds }
        for id in ids { out.append(Int(id)) }
        if addSpecialTokens { out += suffixIds }
        return out
    }

    /// The pre-tokenizer's pieces of a text (no added-token matching, no normalization), for inspection.
    public func preTokenize(_ text: String) -> [String] { preTokenizer.pieces(of: text) }

    private func withScratch(_ body: (EncodeScratch) -> Void) {
        if scratchLock.try() {
            defer { scratchLock.unlock() }
            body(sharedScratch)
            sharedScratch.shrinkIfHuge()
        } else {
            body(EncodeScratch())
        }
    }

    private func encodeBody(_ text: String, parseSpecial: Bool, _ w: EncodeScratch, _ out: inout [Int32]) {
        w.buffer.reset()
        w.buffer.append(contentsOf: text.unicodeScalars.lazy.map(\.value))
        let n = w.buffer.scalars.count
        guard n > 0 else { return }
        var segments: [(Int, Int, Int)] = []
        if rawMatcher.isEmpty {
            segments = [(0, n, -1)]
        } else {
            w.buffer.scalars.withUnsafeBufferPointer { rawMatcher.split($0, 0, n, parseSpecial: parseSpecial, into: &segments) }
        }
        for (lo, hi, t) in segments {
            if t >= 0 {
                out.append(Int32(rawMatcher.tokens[t].id))
            } else {
                encodeNormalizing(lo, hi, parseSpecial, w, &out)
            }
        }
    }

    /// Normalizes one stretch between raw added tokens, cuts it at normalized added tokens, and
    /// tokenizes the rest.
    private func encodeNormalizing(_ lo: Int, _ hi: Int, _ parseSpecial: Bool, _ w: EncodeScratch, _ out: inout [Int32]) {
        var lo = lo, hi = hi
        if !normalizer.isEmpty {
            let normalized = w.buffer.scalars.withUnsafeBufferPointer { normalizer.normalize(UnsafeBufferPointer(rebasing: $0[lo..<hi])) }
            if let normalized = normalized {
                lo = w.buffer.scalars.count
                w.buffer.append(contentsOf: normalized)
                hi = w.buffer.scalars.count
            }
        }
        if normalizedMatcher.isEmpty {
            encodePieces(lo, hi, w, &out)
            return
        }
        var segments: [(Int, Int, Int)] = []
        w.buffer.scalars.withUnsafeBufferPointer { normalizedMatcher.split($0, lo, hi, parseSpecial: parseSpecial, into: &segments) }
        for (a, b, t) in segments {
            if t >= 0 { out.append(Int32(normalizedMatcher.tokens[t].id)) } else { encodePieces(a, b, w, &out) }
        }
    }

    /// Pre-tokenizes buffer[lo..<hi] and BPE-encodes each piece, through the cache.
    private func encodePieces(_ lo: Int, _ hi: Int, _ w: EncodeScratch, _ out: inout [Int32]) {
        guard hi > lo else { return }
        preTokenizer.split(&w.buffer, lo, hi, into: &w.pieces, scratch: &w.pieceScratch)
        let pieces = w.pieces
        var p = 0
        while p < pieces.count {
            let a = pieces[p], b = pieces[p + 1]
            p += 2
            w.bytes.removeAll(keepingCapacity: true)
            for q in a..<b { appendUTF8(w.buffer.scalars[q], &w.bytes) }
            w.bytes.withUnsafeBufferPointer { bytes in
                let cacheable = usesPieceCache && bytes.count <= EncodeScratch.maxCachedPieceBytes
                let h = cacheable ? FNV1a.hash(bytes) : 0
                if cacheable, let packed = w.cache.find(bytes, hash: h) {
                    let start = packed >> 12, count = packed & 0xFFF
                    out.append(contentsOf: w.cachedIds[start..<(start + count)])
                    return
                }
                let before = out.count
                model.tokenize(bytes, into: &out, symbols: &w.symbols)
                if cacheable {
                    if w.cache.count >= EncodeScratch.maxCacheEntries || w.cache.arenaBytes >= EncodeScratch.maxCacheBytes {
                        w.clearCache()
                    }
                    let start = w.cachedIds.count
                    w.cachedIds.append(contentsOf: out[before...])
                    w.cache.insert(bytes, hash: h, value: start << 12 | (out.count - before))
                }
            }
        }
    }

    // MARK: - Decoding

    /// The text of `ids`, as Hugging Face `tokenizers` decodes it: each token's bytes, invalid UTF-8
    /// replaced by U+FFFD; ids outside the vocabulary are skipped. `cleanUpTokenizationSpaces` applies
    /// transformers' clean-up (" ." -> ".", " n't" -> "n't", ...), which `transformers.decode` does when
    /// the config's `clean_up_tokenization_spaces` is true.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false, cleanUpTokenizationSpaces: Bool = false) -> String {
        var bytes: [UInt8] = []
        var first = true
        for id in ids { appendDecoded(id, skipSpecialTokens: skipSpecialTokens, first: &first, to: &bytes) }
        let text = String(decoding: bytes, as: UTF8.self)
        return cleanUpTokenizationSpaces ? Tokenizer.cleanUp(text) : text
    }

    /// The raw bytes of `ids` (no UTF-8 repair).
    public func decodeBytes(_ ids: [Int], skipSpecialTokens: Bool = false) -> [UInt8] {
        var bytes: [UInt8] = []
        var first = true
        for id in ids { appendDecoded(id, skipSpecialTokens: skipSpecialTokens, first: &first, to: &bytes) }
        return bytes
    }

    /// `decodeBytes(ids)` and, for each id, the byte length of `decodeBytes(ids[0...i])`: where each
    /// token's text ends in the decoded bytes (a token that decodes to nothing ends where the one
    /// before it does).
    public func decodeBytesWithEnds(_ ids: [Int], skipSpecialTokens: Bool = false) -> (bytes: [UInt8], ends: [Int]) {
        var bytes: [UInt8] = []
        var first = true
        let ends = ids.map { id in
            appendDecoded(id, skipSpecialTokens: skipSpecialTokens, first: &first, to: &bytes)
            return bytes.count
        }
        return (bytes, ends)
    }

    /// A decoder that takes one id at a time and returns only complete characters.
    public func makeStreamingDecoder(skipSpecialTokens: Bool = false) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }

    func appendDecoded(_ id: Int, skipSpecialTokens: Bool, first: inout Bool, to bytes: inout [UInt8]) {
        guard id >= 0 && id < vocabSize else { return }
        if skipSpecialTokens && specialIds[id] { return }
        let a = Int(decodedOffsets[id]), b = Int(decodedOffsets[id + 1])
        if case .joinWithSpaces = decoder {
            if token(for: id) == nil { return }
            if !first { bytes.append(0x20) }
        }
        first = false
        bytes.append(contentsOf: decodedBytes[a..<b])
    }

    /// transformers' `clean_up_tokenization`.
    public static func cleanUp(_ s: String) -> String {
        var t = s
        for (a, b) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                       (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            t = t.replacingOccurrences(of: a, with: b)
        }
        return t
    }
}

/// Working storage for one encode call at a time, and the cache of pieces already tokenized.
final class EncodeScratch {
    static let maxCachedPieceBytes = 256
    static let maxCacheEntries = 200_000
    static let maxCacheBytes = 16 << 20

    var buffer = ScalarBuffer()
    var pieces: [Int] = []
    var pieceScratch: [Int] = []
    var bytes: [UInt8] = []
    var symbols: [Int32] = []
    /// piece bytes -> (start << 12 | count) into cachedIds
    var cache = ByteKeyTable(minimumCapacity: 4096)
    var cachedIds: [Int32] = []

    /// Lets go of text buffers grown by one very long text.
    func shrinkIfHuge() {
        if buffer.scalars.capacity > 1 << 22 { buffer = ScalarBuffer() }
        if pieces.capacity > 1 << 22 { pieces = []; pieceScratch = [] }
    }

    func clearCache() {
        cache.removeAll()
        cachedIds.removeAll(keepingCapacity: true)
    }
}

@inline(__always)
func appendUTF8(_ v: UInt32, _ out: inout [UInt8]) {
    if v < 0x80 {
        out.append(UInt8(v))
    } else if v < 0x800 {
        out.append(UInt8(0xC0 | (v >> 6)))
        out.append(UInt8(0x80 | (v & 0x3F)))
    } else if v < 0x10000 {
        out.append(UInt8(0xE0 | (v >> 12)))
        out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (v & 0x3F)))
    } else {
        out.append(UInt8(0xF0 | (v >> 18)))
        out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (v & 0x3F)))
    }
}

fileprivate extension String {
    func leftPadded(to n: Int) -> String {
        count >= n ? self : String(repeating: "0", count: n - count) + self
    }
}
