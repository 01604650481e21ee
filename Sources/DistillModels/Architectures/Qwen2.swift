import DistillNN

/// Qwen2 / Qwen2.5 (and DeepSeek-R1-Distill-Qwen): the Llama layout with biases on the q, k and v
/// projections. Defaults are those of `transformers.Qwen2Config`.
extension Architecture {
    public static let qwen2 = Architecture(
        modelType: "qwen2", className: "Qwen2ForCausalLM", ggufNames: ["qwen2"],
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
                qkvBias: true,
                // Released Qwen2 configs have none (head_dim = hidden / heads); head-pruned models
                // keep the original head size in `head_dim`, which newer transformers read too.
                headDim: try c.int("head_dim"),
                ropeScaling: try c.ropeScaling())
            try c.requireActivation("silu")
            // Sliding-window attention only matters past `sliding_window` tokens with
            // use_sliding_window = true, which released Qwen2 checkpoints leave off.
            try c.refuse("use_sliding_window", "sliding-window attention is not supported")
            try validateAttention(cfg, source: c.source)
            return cfg
        },
        ggufDefaultRopeTheta: 1_000_000,
        ggufExportAsLlama: { c in c.heads * c.headDim != c.hidden })
}
