import DistillNN

/// Gemma (first generation, 2B/7B): GeGLU feed-forward with tanh GELU, RMSNorm applied as
/// (1 + w), embeddings scaled by √hidden, tied output, explicit `head_dim`; otherwise the Llama
/// block (no sandwich norms, soft caps or windows). Defaults are those of `transformers.GemmaConfig`.
/// In GGUF (`gemma`) llama.cpp stores each norm as 1 + w.
extension Architecture {
    public static let gemma = Architecture(
        modelType: "gemma", className: "GemmaForCausalLM", ggufNames: ["gemma"],
        decoderConfig: { c in
            let heads = try c.positive("num_attention_heads", default: 16)
            var cfg = TransformerConfig(
                vocabSize: try c.positive("vocab_size", default: 256_000),
                hidden: try c.positive("hidden_size", default: 3072),
                layers: try c.positive("num_hidden_layers", default: 28),
                heads: heads,
                kvHeads: try c.positive("num_key_value_heads", default: heads),
                intermediate: try c.positive("intermediate_size", default: 24576),
                ropeTheta: try c.float("rope_theta") ?? 10_000,
                rmsNormEps: try c.float("rms_norm_eps") ?? 1e-6,
                tieEmbeddings: try c.bool("tie_word_embeddings") ?? true,
                qkvBias: false,
                headDim: try c.positive("head_dim", default: 256),
                ropeScaling: try c.ropeScaling())
            cfg.mlpKind = .geglu
            cfg.normOffset = 1
            cfg.scaleEmbeddings = true
            // transformers runs the MLP with hidden_act (exact "gelu" in some hub configs, which
            // Distill's GeGLU does not compute).
            try c.requireActivation("gelu_pytorch_tanh")
            try c.refuse("attention_bias", "Gemma with attention biases is not supported")
            try validateAttention(cfg, source: c.source)
            return cfg
        },
        ggufNormShift: 1,
        ggufConfig: { _, _, _ in ["hidden_act": "gelu_pytorch_tanh"] })
}
