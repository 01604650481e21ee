import DistillNN

/// Mistral (7B v0.1–v0.3, Nemo, Small): the Llama layout with sliding-window attention — each
/// query sees itself and the `sliding_window − 1` positions before it (none when the key is null)
/// — and an optional explicit `head_dim`. Defaults are those of `transformers.MistralConfig`.
/// llama.cpp converts Mistral checkpoints to GGUF as `llama` (Q/K rows permuted, no window), and
/// so does `distill export`.
extension Architecture {
    public static let mistral = Architecture(
        modelType: "mistral", className: "MistralForCausalLM", ggufNames: [],
        decoderConfig: { c in
            let heads = try c.positive("num_attention_heads", default: 32)
            let window = try c.int("sliding_window")
            if let window, window < 1 {
                throw FileError(file: c.source, location: "sliding_window", "must be at least 1 (or null), found \(window)")
            }
            let cfg = TransformerConfig(
                vocabSize: try c.positive("vocab_size", default: 32000),
                hidden: try c.positive("hidden_size", default: 4096),
                layers: try c.positive("num_hidden_layers", default: 32),
                heads: heads,
                kvHeads: try c.positive("num_key_value_heads", default: 8),
                intermediate: try c.positive("intermediate_size", default: 14336),
                ropeTheta: try c.float("rope_theta") ?? 10_000,
                rmsNormEps: try c.float("rms_norm_eps") ?? 1e-6,
                tieEmbeddings: try c.bool("tie_word_embeddings") ?? false,
                qkvBias: false,
                headDim: try c.int("head_dim"),
                ropeScaling: try c.ropeScaling(),
                slidingWindow: c.json["sliding_window"] == nil ? 4096 : window)
            try c.requireActivation("silu")
            try validateAttention(cfg, source: c.source)
            return cfg
        },
        ggufExportAsLlama: { _ in true })
}
