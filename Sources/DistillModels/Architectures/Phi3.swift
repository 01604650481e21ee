import DistillNN

/// Phi-3 / Phi-3.5: the Llama block with the q, k and v projections stored as one
/// `self_attn.qkv_proj` and gate and up as one `mlp.gate_up_proj` (split on load, stacked on save),
/// an optional sliding window (`sliding_window`, e.g. 2047 in Phi-3-mini-4k) and LongRoPE scaling
/// (the 128k models: short factors up to `original_max_position_embeddings`, long ones past it).
/// Defaults are those of `transformers.Phi3Config`. Not yet: partial rotary embeddings (Phi-4-mini).
extension Architecture {
    public static let phi3 = Architecture(
        modelType: "phi3", className: "Phi3ForCausalLM", ggufNames: [],
        decoderConfig: { c in
            let heads = try c.positive("num_attention_heads", default: 32)
            let hidden = try c.positive("hidden_size", default: 3072)
            if let f = try c.float("partial_rotary_factor"), f != 1 {
                throw FileError(file: c.source, location: "partial_rotary_factor", "partial rotary embeddings are not supported yet, found \(f)")
            }
            let cfg = TransformerConfig(
                vocabSize: try c.positive("vocab_size", default: 32064),
                hidden: hidden,
                layers: try c.positive("num_hidden_layers", default: 32),
                heads: heads,
                kvHeads: try c.positive("num_key_value_heads", default: heads),
                intermediate: try c.positive("intermediate_size", default: 8192),
                ropeTheta: try c.float("rope_theta") ?? 10_000,
                rmsNormEps: try c.float("rms_norm_eps") ?? 1e-5,
                tieEmbeddings: try c.bool("tie_word_embeddings") ?? false,
                qkvBias: false,
                headDim: try c.int("head_dim"),
                ropeScaling: try c.ropeScaling(),
                slidingWindow: try c.optionalPositive("sliding_window", default: nil))
            if case let .longrope(short, _, _, _)? = cfg.ropeScaling, short.count != cfg.headDim / 2 {
                throw FileError(file: c.source, location: "rope_scaling.short_factor",
                                "\(short.count) factors, but the head dimension \(cfg.headDim) has \(cfg.headDim / 2) frequencies")
            }
            try c.requireActivation("silu")
            try validateAttention(cfg, source: c.source)
            return cfg
        },
        fusedTensors: { c in
            [FusedTensor("self_attn.qkv_proj.weight", parts: [("self_attn.q_proj.weight", c.heads * c.headDim),
                                                             ("self_attn.k_proj.weight", c.kvHeads * c.headDim),
                                                             ("self_attn.v_proj.weight", c.kvHeads * c.headDim)]),
             FusedTensor("mlp.gate_up_proj.weight", parts: [("mlp.gate_proj.weight", c.intermediate), ("mlp.up_proj.weight", c.intermediate)])]
        })
}
