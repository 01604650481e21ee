import DistillNN
import Foundation

/// Phi-3 / Phi-3.5: the Llama block with the q, k and v projections stored as one
/// `self_attn.qkv_proj` and gate and up as one `mlp.gate_up_proj` (split on load, stacked on save),
/// an optional sliding window (`sliding_window`, e.g. 2047 in Phi-3-mini-4k) and LongRoPE scaling
/// (the 128k models: short factors up to `original_max_position_embeddings`, long ones past it).
/// Defaults are those of `transformers.Phi3Config`. In GGUF (`phi3`) the fused tensors are
/// `attn_qkv` and `ffn_up`, and LongRoPE's factors are tensors. Phi-4-mini's partial rotary
/// embeddings (`partial_rotary_factor`; GGUF: `rope.dimension_count` below the head size) rotate
/// only the first dimensions of each head.
extension Architecture {
    public static let phi3 = Architecture(
        modelType: "phi3", className: "Phi3ForCausalLM", ggufNames: ["phi3"],
        decoderConfig: { c in
            let heads = try c.positive("num_attention_heads", default: 32)
            let hidden = try c.positive("hidden_size", default: 3072)
            var cfg = TransformerConfig(
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
            // Phi-4-mini rotates the first partial_rotary_factor · head_dim dimensions of each head
            // (transformers: int(head_dim · factor)).
            let factor = try c.float("partial_rotary_factor") ?? 1
            let rotary = Int(Float(cfg.headDim) * factor)
            guard factor > 0, factor <= 1, rotary >= 2, rotary % 2 == 0 else {
                throw FileError(file: c.source, location: "partial_rotary_factor",
                                "must be in (0, 1] and give an even number of rotary dimensions of the head's \(cfg.headDim), found \(factor)")
            }
            if rotary < cfg.headDim { cfg.rotaryDim = rotary }
            if case let .longrope(short, _, _, _)? = cfg.ropeScaling, short.count != rotary / 2 {
                throw FileError(file: c.source, location: "rope_scaling.short_factor",
                                "\(short.count) factors, but the \(rotary) rotary dimensions have \(rotary / 2) frequencies")
            }
            try c.requireActivation("silu")
            try validateAttention(cfg, source: c.source)
            return cfg
        },
        ggufBlockNames: [("attn_qkv.weight", "self_attn.qkv_proj.weight"), ("ffn_up.weight", "mlp.gate_up_proj.weight")],
        ggufPartialRotary: true,
        ggufConfig: { file, arch, base in
            // llama.cpp keeps LongRoPE's factors as tensors and a window of 0 for "none".
            var json: [String: Any] = [:]
            if let w = try file.int("\(arch).attention.sliding_window") { json["sliding_window"] = w > 0 ? NSNumber(value: w) : NSNull() }
            guard file.contains("rope_factors_long.weight") || file.contains("rope_factors_short.weight") else { return json }
            func factors(_ name: String) throws -> [NSNumber] {
                guard file.contains(name) else { throw FileError(file: file.path, location: name, "missing (the file has the other LongRoPE factors)") }
                return try file.tensor(named: name).scalars.map { NSNumber(value: Double($0)) }
            }
            // ("type", and no attention factor where it is the one transformers derives: the
            // form Phi3Config of transformers 4.46 accepts.)
            var scaling: [String: Any] = ["type": "longrope", "short_factor": try factors("rope_factors_short.weight"),
                                          "long_factor": try factors("rope_factors_long.weight")]
            let original = try file.int("\(arch).rope.scaling.original_context_length") ?? base.maxPositionEmbeddings
            json["original_max_position_embeddings"] = NSNumber(value: original)
            let scale = Double(base.maxPositionEmbeddings) / Double(original)
            let derived = scale > 1 ? (1 + Foundation.log(scale) / Foundation.log(Double(original))).squareRoot() : 1
            if let a = try file.decimal("\(arch).rope.scaling.attn_factor"), abs(a - derived) > 1e-6 {
                scaling["attention_factor"] = NSNumber(value: a)
            }
            json["rope_scaling"] = scaling
            return json
        },
        ggufExportMetadata: { c, arch, path in
            var m: [(String, GGUFValue)] = [("\(arch).attention.sliding_window", .uint32(UInt32(c.slidingWindow ?? 0)))]
            if case let .longrope(_, _, original, attention)? = c.ropeScaling {
                m += [("\(arch).rope.scaling.original_context_length", .uint32(UInt32(original))),
                      ("\(arch).rope.scaling.attn_factor", .float32(attention))]
            }
            return m
        },
        fusedTensors: { c in
            [FusedTensor("self_attn.qkv_proj.weight", parts: [("self_attn.q_proj.weight", c.heads * c.headDim),
                                                             ("self_attn.k_proj.weight", c.kvHeads * c.headDim),
                                                             ("self_attn.v_proj.weight", c.kvHeads * c.headDim)]),
             FusedTensor("mlp.gate_up_proj.weight", parts: [("mlp.gate_proj.weight", c.intermediate), ("mlp.up_proj.weight", c.intermediate)])]
        })
}
