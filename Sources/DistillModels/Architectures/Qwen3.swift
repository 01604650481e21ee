import DistillNN

/// Qwen3 (dense): the Qwen2 layout without q/k/v biases, with an RMSNorm over each head's queries
/// and keys before RoPE (`self_attn.q_norm`, `self_attn.k_norm`, weights [head_dim]) and an
/// explicit `head_dim`. Defaults are those of `transformers.Qwen3Config`.
extension Architecture {
    public static let qwen3 = Architecture(
        modelType: "qwen3", className: "Qwen3ForCausalLM", ggufNames: ["qwen3"],
        decoderConfig: { c in
            let cfg = TransformerConfig(
                vocabSize: try c.positive("vocab_size", default: 151_936),
                hidden: try c.positive("hidden_size", default: 4096),
                layers: try c.positive("num_hidden_layers", default: 32),
                heads: try c.positive("num_attention_heads", default: 32),
                kvHeads: try c.positive("num_key_value_heads", default: 32),
                intermediate: try c.positive("intermediate_size", default: 22016),
                ropeTheta: try c.float("rope_theta") ?? 10_000,
                rmsNormEps: try c.float("rms_norm_eps") ?? 1e-6,
                tieEmbeddings: try c.bool("tie_word_embeddings") ?? false,
                qkvBias: false,
                headDim: try c.positive("head_dim", default: 128),
                ropeScaling: try c.ropeScaling(),
                qkNorm: true)
            try c.refuse("attention_bias", "Qwen3 with attention biases is not supported yet")
            try c.requireActivation("silu")
            try c.refuse("use_sliding_window", "sliding-window attention per layer is not supported yet")
            try validateAttention(cfg, source: c.source)
            return cfg
        },
        ggufBlockNames: [("attn_q_norm.weight", "self_attn.q_norm.weight"), ("attn_k_norm.weight", "self_attn.k_norm.weight")],
        ggufDefaultRopeTheta: 1_000_000)
}
