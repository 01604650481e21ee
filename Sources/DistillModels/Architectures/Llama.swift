import DistillNN

/// Llama family (Llama 2/3/3.1, SmolLM, DeepSeek-R1-Distill-Llama): RMSNorm, RoPE (optionally
/// `llama3` scaled), grouped-query attention without biases (unless `attention_bias`), SwiGLU.
/// Defaults are those of `transformers.LlamaConfig`.
extension Architecture {
    public static let llama = Architecture(
        modelType: "llama", className: "LlamaForCausalLM", ggufNames: ["llama"],
        decoderConfig: { c in
            let heads = try c.positive("num_attention_heads", default: 32)
            let cfg = TransformerConfig(
                vocabSize: try c.positive("vocab_size", default: 32000),
                hidden: try c.positive("hidden_size", default: 4096),
                layers: try c.positive("num_hidden_layers", default: 32),
                heads: heads,
                kvHeads: try c.positive("num_key_value_heads", default: heads),
                intermediate: try c.positive("intermediate_size", default: 11008),
                ropeTheta: try c.float("rope_theta") ?? 10_000,
                rmsNormEps: try c.float("rms_norm_eps") ?? 1e-6,
                tieEmbeddings: try c.bool("tie_word_embeddings") ?? false,
                qkvBias: try c.bool("attention_bias") ?? false,
                headDim: try c.int("head_dim"),
                ropeScaling: try c.ropeScaling())
            try c.refuse("attention_bias", "Llama with attention biases is not supported yet")
            try c.refuse("mlp_bias", "Llama with MLP biases is not supported yet")
            try c.requireActivation("silu")
            try validateAttention(cfg, source: c.source)
            return cfg
        },
        ggufPermutesRotary: true)
}
