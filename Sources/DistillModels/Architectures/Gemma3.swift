import DistillNN
import Foundation

/// Gemma 3 text (`Gemma3ForCausalLM`, model_type gemma3_text): Gemma 2's GeGLU, (1 + w) and
/// sandwich norms and embedding scale, plus an RMSNorm (1 + w) over each head's queries and keys,
/// sliding-window layers with their own RoPE base (`rope_local_base_freq`, unscaled) beside global
/// layers (`rope_theta` with `rope_scaling`), chosen by `layer_types` (or every
/// `sliding_window_pattern`-th layer global); soft caps only when the config sets them.
/// Defaults are those of `transformers.Gemma3TextConfig`.
extension Architecture {
    public static let gemma3Text = Architecture(
        modelType: "gemma3_text", className: "Gemma3ForCausalLM", ggufNames: [],
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
            cfg.mlpKind = .geglu
            cfg.normOffset = 1
            cfg.sandwichNorms = true
            cfg.scaleEmbeddings = true
            let scalar = try c.float("query_pre_attn_scalar") ?? 256
            guard scalar > 0 else { throw FileError(file: c.source, location: "query_pre_attn_scalar", "must be positive, found \(scalar)") }
            cfg.attentionScale = 1 / scalar.squareRoot()
            cfg.attentionSoftcap = try c.optionalPositiveFloat("attn_logit_softcapping", default: nil)
            cfg.finalSoftcap = try c.optionalPositiveFloat("final_logit_softcapping", default: nil)
            for key in ["hidden_activation", "hidden_act"] {
                if let act = try c.string(key), act != "gelu_pytorch_tanh" {
                    throw FileError(file: c.source, location: key, "expected gelu_pytorch_tanh, found \(act)")
                }
            }
            if try c.bool("attention_bias") == true {
                throw FileError(file: c.source, location: "attention_bias", "Gemma 3 with attention biases is not supported")
            }
            if try c.bool("use_bidirectional_attention") == true {
                throw FileError(file: c.source, location: "use_bidirectional_attention", "bidirectional attention (EmbeddingGemma) is not supported")
            }
            try validateAttention(cfg, source: c.source)
            return cfg
        })
}
