extension Tokenizer {
    /// Reads the tokenizer a GGUF file carries (`tokenizer.ggml.*`, `tokenizer.chat_template`).
    /// `add_bos_token` defaults as in llama.cpp: on for the Llama 3 pre-tokenizer, off otherwise.
    public convenience init(gguf: GGUFFile) throws {
        func missing(_ key: String) -> FileError { FileError(file: gguf.path, location: key, "missing metadata key") }
        guard let model = try gguf.string("tokenizer.ggml.model") else { throw missing("tokenizer.ggml.model") }
        guard let tokens = try gguf.strings("tokenizer.ggml.tokens") else { throw missing("tokenizer.ggml.tokens") }
        let merges = try gguf.strings("tokenizer.ggml.merges")
        if model == "gpt2" && merges == nil { throw missing("tokenizer.ggml.merges") }
        let pre = try gguf.string("tokenizer.ggml.pre") ?? "default"
        let llama3 = ["llama-bpe", "llama3", "dbrx", "smaug-bpe"].contains(pre)
        try self.init(ggufTokens: tokens, merges: merges ?? [], tokenTypes: try gguf.ints("tokenizer.ggml.token_type") ?? [],
                      model: model, pre: pre,
                      bosId: try gguf.int("tokenizer.ggml.bos_token_id"), eosId: try gguf.int("tokenizer.ggml.eos_token_id"),
                      eotId: try gguf.int("tokenizer.ggml.eot_token_id"), padId: try gguf.int("tokenizer.ggml.padding_token_id"),
                      unkId: try gguf.int("tokenizer.ggml.unknown_token_id"),
                      addBos: try gguf.bool("tokenizer.ggml.add_bos_token") ?? llama3,
                      addEos: try gguf.bool("tokenizer.ggml.add_eos_token") ?? false,
                      chatTemplate: try gguf.string("tokenizer.chat_template"), file: gguf.path)
    }
}

extension Tokenizer {
    /// The `tokenizer.ggml.*` metadata llama.cpp reads, as its converter writes it for a byte-level
    /// BPE tokenizer: model "gpt2", the pre-tokenizer's llama.cpp name, tokens by id (ids past the
    /// tokenizer up to `vocabularySize` as "[PAD<id>]", user-defined), token types (1 normal, 3
    /// control for special added tokens, 4 user-defined for the others), merges, special ids,
    /// add-BOS/EOS flags and the chat template. A pre-tokenizer llama.cpp has no name for is an error.
    public func ggufMetadata(vocabularySize: Int, file: String) throws -> [(key: String, value: GGUFValue)] {
        let pre: String
        switch preTokenizer.steps {
        case [.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)]: pre = "smollm"
        case [.split(.llama3), .byteLevel(addPrefixSpace: false, useRegex: false)]: pre = "llama-bpe"
        case [.split(.qwen2), .byteLevel(addPrefixSpace: false, useRegex: false)]: pre = "qwen2"
        case [.byteLevel(addPrefixSpace: false, useRegex: true)]: pre = "gpt-2"
        default:
            throw FileError(file: file, location: "tokenizer.ggml.pre",
                            "llama.cpp has no pre-tokenizer for \(preTokenizer) (known: smollm, llama-bpe, qwen2, gpt-2)")
        }
        let size = Swift.max(vocabularySize, vocabSize)
        var tokens = [String](repeating: "", count: size), types = [Int32](repeating: 1, count: size)
        for id in 0..<size {
            if id < model.idToToken.count, let t = model.idToToken[id] { tokens[id] = t } else { tokens[id] = "[PAD\(id)]"; types[id] = 4 }
        }
        for t in addedTokens where t.id < size {
            tokens[t.id] = t.content
            types[t.id] = t.special ? 3 : 4
        }
        let merges = model.mergeList.map { model.idToToken[Int($0.0)]! + " " + model.idToToken[Int($0.1)]! }
        var out: [(key: String, value: GGUFValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string(pre)),
            ("tokenizer.ggml.tokens", .array(tokens.map { .string($0) })),
            ("tokenizer.ggml.token_type", .array(types.map { .int32($0) })),
            ("tokenizer.ggml.merges", .array(merges.map { .string($0) })),
        ]
        if let b = bosTokenId { out.append(("tokenizer.ggml.bos_token_id", .uint32(UInt32(b)))) }
        if let e = eosTokenIds.first { out.append(("tokenizer.ggml.eos_token_id", .uint32(UInt32(e)))) }
        if let p = padTokenId { out.append(("tokenizer.ggml.padding_token_id", .uint32(UInt32(p)))) }
        if let u = unkTokenId { out.append(("tokenizer.ggml.unknown_token_id", .uint32(UInt32(u)))) }
        out.append(("tokenizer.ggml.add_bos_token", .bool(addsBosToken)))
        out.append(("tokenizer.ggml.add_eos_token", .bool(addsEosToken)))
        if let t = chatTemplate { out.append(("tokenizer.chat_template", .string(t))) }
        return out
    }
}
