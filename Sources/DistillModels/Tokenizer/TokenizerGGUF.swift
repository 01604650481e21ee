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
