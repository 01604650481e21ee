extension Tokenizer {
    /// A byte-level tokenizer without merges: one token per byte (GPT-2's byte symbols, ids
    /// 0..<256, so ASCII text is one token per character), then `specialTokens` as control tokens
    /// (ids 256…). For small models trained from scratch on a built-in task (the demo); saved with
    /// `save(to:)` it is an ordinary Hugging Face tokenizer.json.
    public static func byteLevel(specialTokens: [String], eosToken: String? = nil, padToken: String? = nil,
                                 chatTemplate: String? = nil) throws -> Tokenizer {
        let bytes = ByteLevel.byteToScalar.map { String(Character($0)) }
        let tokens = bytes + specialTokens
        func id(_ t: String?) -> Int? { t.flatMap { specialTokens.firstIndex(of: $0).map { 256 + $0 } } }
        return try Tokenizer(ggufTokens: tokens, merges: [], tokenTypes: bytes.map { _ in 1 } + specialTokens.map { _ in 3 },
                             model: "gpt2", pre: "gpt2", eosId: id(eosToken), padId: id(padToken), chatTemplate: chatTemplate,
                             file: "byte-level tokenizer")
    }
}
