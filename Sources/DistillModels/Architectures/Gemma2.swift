import DistillNN
import Foundation

/// Gemma 2: GeGLU feed-forward (tanh GELU), RMSNorm applied as (1 + w), embeddings scaled by
/// √hidden, norms before and after both attention and MLP (`pre_feedforward_layernorm`,
/// `post_feedforward_layernorm`), scores scaled by `query_pre_attn_scalar`^−½ and soft-capped
/// (`attn_logit_softcapping`), logits soft-capped (`final_logit_softcapping`), and a sliding
/// window on the layers `layer_types` names (by default every other one, starting with the first).
/// Defaults are those of `transformers.Gemma2Config`.
extension Architecture {
    public static let gemma2 = Architecture(
        modelType: "gemma2", className: "Gemma2ForCausalLM", ggufNames: ["gemma2"],
        decoderConfig: { c in
            let layers = try c.positive("num_hidden_layers", default: 26)
            var cfg = TransformerConfig(
                vocabSize: try c.positive("vocab_size", default: 256_000),
                hidden: try c.positive("hidden_size", default: 2304),
                layers: layers,
                heads: try c.positive("num_attention_heads", default: 8),
                kvHeads: try c.positive("num_key_value_heads", default: 4),
                intermediate: try c.positive("intermediate_size", default: 9216),
                ropeTheta: try c.float("rope_theta") ?? 10_000,
                rmsNormEps: try c.float("rms_norm_eps") ?? 1e-6,
                tieEmbeddings: try c.bool("tie_word_embeddings") ?? true,
                qkvBias: false,
                headDim: try c.positive("head_dim", default: 256),
                ropeScaling: try c.ropeScaling(),
                slidingWindow: try c.optionalPositive("sliding_window", default: 4096))
            cfg.slidingLayers = try c.layerTypes(layers: layers, default: { $0 % 2 == 0 })
            try c.applyGemma2Layout(to: &cfg, attentionSoftcap: 50, finalSoftcap: 30)
            try c.refuse("attention_bias", "Gemma 2 with attention biases is not supported")
            try validateAttention(cfg, source: c.source)
            return cfg
        },
        ggufBlockNames: gemma2GGUFNames,
        ggufNormShift: 1,
        ggufConfig: { file, arch, base in
            // llama.cpp's pattern: every other layer sliding, starting with the first.
            try file.gemmaConfig(arch, base, largeModelLayers: 46)
        },
        ggufExportMetadata: { c, arch, path in
            try gemmaExportMetadata(c, arch, path, pattern: 2, largeModelLayers: 46)
        })

    /// Gemma 2's and Gemma 3's sandwich norms as llama.cpp names them (`ffn_norm` is the norm
    /// before the MLP, not after attention).
    static let gemma2GGUFNames: [(gguf: String, hf: String)] = [
        ("ffn_norm.weight", "pre_feedforward_layernorm.weight"),
        ("post_attention_norm.weight", "post_attention_layernorm.weight"),
        ("post_ffw_norm.weight", "post_feedforward_layernorm.weight"),
    ]
}

/// The Gemma 2/3 settings a GGUF file carries, refusing what llama.cpp would compute otherwise:
/// its own layer pattern (every `pattern`-th layer global), its score scale (head_dim^−½; the
/// 27B model's (hidden / heads)^−½), Gemma 3's local RoPE base of 10000.
func gemmaExportMetadata(_ c: TransformerConfig, _ arch: String, _ path: String, pattern: Int,
                         largeModelLayers: Int) throws -> [(String, GGUFValue)] {
    var m: [(String, GGUFValue)] = []
    if let w = c.slidingWindow {
        let layers = (0..<c.layers).map { i in c.slidingLayers.map { i < $0.count && $0[i] } ?? true }
        guard layers == (0..<c.layers).map({ ($0 + 1) % pattern != 0 }) else {
            throw FileError(file: path, location: "layer_types", "llama.cpp runs \(arch) with every \(pattern == 2 ? "second" : "sixth") layer global; this model's pattern differs")
        }
        m.append(("\(arch).attention.sliding_window", .uint32(UInt32(w))))
    }
    let scale = 1 / Float(c.layers == largeModelLayers ? c.hidden / c.heads : c.headDim).squareRoot()
    if let s = c.attentionScale, abs(s - scale) > 1e-6 * scale {
        throw FileError(file: path, location: "query_pre_attn_scalar",
                        "llama.cpp scales \(arch) scores by \(scale), this model by \(s) (query_pre_attn_scalar \(1 / (s * s)))")
    }
    if let r = c.localRopeTheta, r != 10_000 {
        throw FileError(file: path, location: "rope_local_base_freq", "llama.cpp runs \(arch)'s local layers with RoPE base 10000, this model with \(r)")
    }
    if let cap = c.attentionSoftcap { m.append(("\(arch).attn_logit_softcapping", .float32(cap))) }
    if let cap = c.finalSoftcap { m.append(("\(arch).final_logit_softcapping", .float32(cap))) }
    return m
}

extension GGUFFile {
    /// The Gemma 2/3 keys llama.cpp keeps (`attn_logit_softcapping`, `final_logit_softcapping`,
    /// `attention.sliding_window`) and the one it derives: scores scaled by head_dim^−½, except
    /// the 27B model (`largeModelLayers` blocks) scaled by (hidden / heads)^−½ — the values of
    /// `query_pre_attn_scalar` in the released configs.
    func gemmaConfig(_ arch: String, _ base: GGUFModelConfig, largeModelLayers: Int) throws -> [String: Any] {
        var json: [String: Any] = ["hidden_act": "gelu_pytorch_tanh"]
        let scalar = base.numHiddenLayers == largeModelLayers ? base.hiddenSize / base.numAttentionHeads : base.headDim
        json["query_pre_attn_scalar"] = NSNumber(value: scalar)
        if let v = try decimal("\(arch).attn_logit_softcapping") { json["attn_logit_softcapping"] = NSNumber(value: v) }
        if let v = try decimal("\(arch).final_logit_softcapping") { json["final_logit_softcapping"] = NSNumber(value: v) }
        if let v = try int("\(arch).attention.sliding_window") { json["sliding_window"] = NSNumber(value: v) }
        return json
    }
}

extension ModelConfig {
    /// What Gemma 2 and Gemma 3 share on top of the Llama block: GeGLU with tanh GELU, RMSNorm as
    /// (1 + w), sandwich norms, the √hidden embedding scale, scores scaled by
    /// `query_pre_attn_scalar`^−½ [256], and soft caps on scores and logits (the given defaults
    /// when the keys are absent, none when null).
    func applyGemma2Layout(to cfg: inout TransformerConfig, attentionSoftcap: Float?, finalSoftcap: Float?) throws {
        cfg.mlpKind = .geglu
        cfg.normOffset = 1
        cfg.sandwichNorms = true
        cfg.scaleEmbeddings = true
        let scalar = try float("query_pre_attn_scalar") ?? 256
        guard scalar > 0 else { throw FileError(file: source, location: "query_pre_attn_scalar", "must be positive, found \(scalar)") }
        cfg.attentionScale = 1 / scalar.squareRoot()
        cfg.attentionSoftcap = try optionalPositiveFloat("attn_logit_softcapping", default: attentionSoftcap)
        cfg.finalSoftcap = try optionalPositiveFloat("final_logit_softcapping", default: finalSoftcap)
        try requireActivation("gelu_pytorch_tanh", keys: ["hidden_activation", "hidden_act"])
    }
}
