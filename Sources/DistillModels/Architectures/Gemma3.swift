import DistillNN
import Foundation

/// Gemma 3 text (`Gemma3ForCausalLM`, model_type gemma3_text): Gemma 2's GeGLU, (1 + w) and
/// sandwich norms and embedding scale, plus an RMSNorm (1 + w) over each head's queries and keys,
/// sliding-window layers with their own RoPE base (`rope_local_base_freq`, unscaled) beside global
/// layers (`rope_theta` with `rope_scaling`), chosen by `layer_types` (or every
/// `sliding_window_pattern`-th layer global); soft caps only when the config sets them.
/// Defaults are those of `transformers.Gemma3TextConfig`. In GGUF (`gemma3`) norms are stored as 1 + w.
extension Architecture {
    public static let gemma3Text = Architecture(
        modelType: "gemma3_text", className: "Gemma3ForCausalLM", ggufNames: ["gemma3"],
        decoderConfig: { c in
            let layers = try c.positive("num_hidden_layers", default: 26)
            let pattern = try c.positive("sliding_window_pattern", default: 6)
            var cfg = TransformerConfig(
                vocabSize: try c.positive("vocab_size", default: 262_208),
                hidden: try c.positive("hidden_size", default: 2304),
                layers: layers,
                heads: try c.positive("num_attention_heads", default: 8),
                kvHeads: try c.positive("num_key_value_heads", default: 4),
                intermediate: try c.positive("intermediate_size", default: 9216),
                ropeTheta: try c.float("rope_theta") ?? 1_000_000,
                rmsNormEps: try c.float("rms_norm_eps") ?? 1e-6,
                tieEmbeddings: try c.bool("tie_word_embeddings") ?? true,
                qkvBias: false,
                headDim: try c.positive("head_dim", default: 256),
                ropeScaling: try c.ropeScaling(),
                qkNorm: true,
                slidingWindow: try c.optionalPositive("sliding_window", default: 4096))
            cfg.slidingLayers = try c.layerTypes(layers: layers, default: { ($0 + 1) % pattern != 0 })
            cfg.localRopeTheta = try c.float("rope_local_base_freq") ?? 10_000
            try c.applyGemma2Layout(to: &cfg, attentionSoftcap: nil, finalSoftcap: nil)
            try c.refuse("attention_bias", "Gemma 3 with attention biases is not supported")
            try c.refuse("use_bidirectional_attention", "bidirectional attention (EmbeddingGemma) is not supported")
            try validateAttention(cfg, source: c.source)
            return cfg
        },
        ggufBlockNames: gemma2GGUFNames + [("attn_q_norm.weight", "self_attn.q_norm.weight"),
                                           ("attn_k_norm.weight", "self_attn.k_norm.weight")],
        ggufDefaultRopeTheta: 1_000_000,
        ggufNormShift: 1,
        ggufConfig: { file, arch, base in
            // What the metadata does not say llama.cpp fixes: every sixth layer global, local
            // layers with RoPE base 10000 and no scaling (newer files may say both).
            var json = try file.gemmaConfig(arch, base, largeModelLayers: 62)
            let pattern = try file.int("\(arch).attention.sliding_window_pattern") ?? 6
            guard pattern > 0 else {
                throw FileError(file: file.path, location: "\(arch).attention.sliding_window_pattern", "must be positive, found \(pattern)")
            }
            json["layer_types"] = (0..<base.numHiddenLayers).map { ($0 + 1) % pattern == 0 ? "full_attention" : "sliding_attention" }
            json["rope_local_base_freq"] = NSNumber(value: try file.decimal("\(arch).rope.freq_base_swa") ?? 10_000)
            return json
        },
        ggufExportMetadata: { c, arch, path in
            if c.attentionSoftcap != nil {
                throw FileError(file: path, location: "attn_logit_softcapping", "llama.cpp's \(arch) has no attention soft cap")
            }
            return try gemmaExportMetadata(c, arch, path, pattern: 6, largeModelLayers: 62)
        })
}
