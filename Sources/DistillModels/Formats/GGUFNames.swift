import DistillTensor
import Foundation

/// Tensor names of llama.cpp's GGUF files and their Hugging Face counterparts for one
/// architecture: the Llama layout shared by every supported architecture, with the
/// architecture's own `ggufBlockNames` added (an entry replaces a shared one with the same GGUF
/// or Hugging Face name — Gemma 2's `ffn_norm` is its pre-feed-forward norm).
public struct GGUFNames: Sendable {
    /// `general.architecture` values whose tensors and metadata this mapping understands.
    public static let supportedArchitectures = Architecture.all.flatMap(\.ggufNames)

    static let global: [(gguf: String, hf: String)] = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
    ]

    static let shared: [(gguf: String, hf: String)] = [
        ("attn_norm.weight", "input_layernorm.weight"),
        ("ffn_norm.weight", "post_attention_layernorm.weight"),
        ("attn_q.weight", "self_attn.q_proj.weight"),
        ("attn_q.bias", "self_attn.q_proj.bias"),
        ("attn_k.weight", "self_attn.k_proj.weight"),
        ("attn_k.bias", "self_attn.k_proj.bias"),
        ("attn_v.weight", "self_attn.v_proj.weight"),
        ("attn_v.bias", "self_attn.v_proj.bias"),
        ("attn_output.weight", "self_attn.o_proj.weight"),
        ("attn_output.bias", "self_attn.o_proj.bias"),
        ("ffn_gate.weight", "mlp.gate_proj.weight"),
        ("ffn_up.weight", "mlp.up_proj.weight"),
        ("ffn_down.weight", "mlp.down_proj.weight"),
    ]

    /// Per-block names without the `blk.N.` / `model.layers.N.` prefix.
    public let block: [(gguf: String, hf: String)]
    let ggufToHF: [String: String]
    let hfToGGUF: [String: String]

    public init(_ architecture: Architecture) {
        let own = architecture.ggufBlockNames
        let replaced = Set(own.map(\.gguf)).union(own.map(\.hf))
        block = own + Self.shared.filter { !replaced.contains($0.gguf) && !replaced.contains($0.hf) }
        ggufToHF = Dictionary(uniqueKeysWithValues: block)
        hfToGGUF = Dictionary(uniqueKeysWithValues: block.map { ($0.hf, $0.gguf) })
    }

    /// The Hugging Face name of a GGUF tensor ("blk.3.attn_q.weight" →
    /// "model.layers.3.self_attn.q_proj.weight"); nil for tensors without one (rope_freqs).
    public func huggingFaceName(for ggufName: String) -> String? {
        if let g = Self.global.first(where: { $0.gguf == ggufName }) { return g.hf }
        guard let (layer, rest) = Self.splitLayer(ggufName, prefix: "blk."), let hf = ggufToHF[rest] else { return nil }
        return "model.layers.\(layer).\(hf)"
    }

    /// The GGUF name of a Hugging Face tensor; nil for names outside the mapping.
    public func ggufName(for huggingFaceName: String) -> String? {
        if let g = Self.global.first(where: { $0.hf == huggingFaceName }) { return g.gguf }
        guard let (layer, rest) = Self.splitLayer(huggingFaceName, prefix: "model.layers."), let g = hfToGGUF[rest] else { return nil }
        return "blk.\(layer).\(g)"
    }

    /// ("blk.12.attn_q.weight", "blk.") → (12, "attn_q.weight").
    static func splitLayer(_ name: String, prefix: String) -> (Int, String)? {
        guard name.hasPrefix(prefix) else { return nil }
        let tail = name.dropFirst(prefix.count)
        guard let dot = tail.firstIndex(of: "."), let layer = Int(tail[..<dot]), layer >= 0 else { return nil }
        return (layer, String(tail[tail.index(after: dot)...]))
    }

    /// Undoes llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py), which reorders the rows of
    /// each head of the Q and K projections so that Hugging Face's rotate-half RoPE becomes
    /// ggml's interleaved RoPE:
    ///
    ///     gguf = hf.reshape(heads, 2, rows/heads/2, …).swapaxes(1, 2).reshape(hf.shape)
    ///
    /// i.e. GGUF row h·d + 2i + j holds HF row h·d + j·d/2 + i (d = rows/heads, j ∈ {0, 1}).
    /// Works on weights (rows × columns) and biases (rows).
    public static func unpermuteRotaryRows(_ t: Tensor, heads: Int, name: String = "", file: String = "") throws -> Tensor {
        guard t.rank == 1 || t.rank == 2 else {
            throw FileError(file: file, location: name, "expected a matrix or vector to un-permute, found shape \(t.shape)")
        }
        let rows = t.shape[0], cols = t.rank == 2 ? t.shape[1] : 1
        let order = try rotaryRowOrder(rows: rows, heads: heads, name: name, file: file)
        let out = Tensor(uninitializedShape: t.shape)
        let src = t.storage.pointer, dst = out.storage.pointer
        parallelFor(rows, grain: max(1, 65_536 / max(cols, 1))) { r in
            for hfRow in r { (dst + hfRow * cols).update(from: src + order[hfRow] * cols, count: cols) }
        }
        return out
    }

    /// llama.cpp's `LlamaModel.permute` itself (the inverse of `unpermuteRotaryRows`), for writing.
    public static func permuteRotaryRows(_ t: Tensor, heads: Int, name: String = "", file: String = "") throws -> Tensor {
        let rows = t.shape[0], cols = t.rank == 2 ? t.shape[1] : 1
        let order = try rotaryRowOrder(rows: rows, heads: heads, name: name, file: file)
        let out = Tensor(uninitializedShape: t.shape)
        let src = t.storage.pointer, dst = out.storage.pointer
        parallelFor(rows, grain: max(1, 65_536 / max(cols, 1))) { r in
            for hfRow in r { (dst + order[hfRow] * cols).update(from: src + hfRow * cols, count: cols) }
        }
        return out
    }

    /// For each Hugging Face row of a permuted Q or K projection, the GGUF row that holds it
    /// (see `unpermuteRotaryRows`).
    public static func rotaryRowOrder(rows: Int, heads: Int, name: String = "", file: String = "") throws -> [Int] {
        guard heads > 0, rows % (2 * heads) == 0 else {
            throw FileError(file: file, location: name, "\(rows) rows do not split into \(heads) heads of an even size")
        }
        let d = rows / heads, half = d / 2
        return (0..<rows).map { hfRow in
            let h = hfRow / d, k = hfRow % d
            return h * d + 2 * (k % half) + k / half
        }
    }
}

/// The parts of a Hugging Face `config.json` that every GGUF file determines (see
/// `GGUFFile.huggingFaceConfigJSON` for the whole config).
public struct GGUFModelConfig: Equatable, Sendable {
    /// The architecture's `model_type` ("llama", "qwen2", "gemma2", …).
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    /// Float32 metadata read back as the shortest decimal that round-trips (1e-05, not
    /// 9.999999747378752e-06), which is the value the original config held.
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var maxPositionEmbeddings: Int
    /// True when the file has no `output.weight` (the head reuses the token embedding).
    public var tieWordEmbeddings: Bool
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var padTokenId: Int?
    /// Whether q/k/v have biases (qwen2).
    public var attentionBias: Bool

    /// The config as a `config.json` object (NSNumber values, as JSONSerialization gives).
    public var json: [String: Any] {
        var j: [String: Any] = [
            "model_type": modelType,
            "architectures": [Architecture.all.first { $0.modelType == modelType }?.className ?? "LlamaForCausalLM"],
            "vocab_size": NSNumber(value: vocabSize),
            "hidden_size": NSNumber(value: hiddenSize),
            "intermediate_size": NSNumber(value: intermediateSize),
            "num_hidden_layers": NSNumber(value: numHiddenLayers),
            "num_attention_heads": NSNumber(value: numAttentionHeads),
            "num_key_value_heads": NSNumber(value: numKeyValueHeads),
            "head_dim": NSNumber(value: headDim),
            "rms_norm_eps": NSNumber(value: rmsNormEps),
            "rope_theta": NSNumber(value: ropeTheta),
            "max_position_embeddings": NSNumber(value: maxPositionEmbeddings),
            "tie_word_embeddings": NSNumber(value: tieWordEmbeddings),
            "hidden_act": "silu",
        ]
        if modelType == "llama" { j["attention_bias"] = NSNumber(value: attentionBias) }
        if let v = bosTokenId { j["bos_token_id"] = NSNumber(value: v) }
        if let v = eosTokenId { j["eos_token_id"] = NSNumber(value: v) }
        if let v = padTokenId { j["pad_token_id"] = NSNumber(value: v) }
        return j
    }
}

extension GGUFFile {
    /// `general.architecture` and the architecture it names, checked to be supported.
    public func supportedArchitecture() throws -> (name: String, architecture: Architecture) {
        guard let name = try string("general.architecture") else {
            throw FileError(file: path, location: "general.architecture", "missing metadata key")
        }
        guard let arch = Architecture.gguf(name) else {
            throw FileError(file: path, location: "general.architecture",
                            "architecture '\(name)' is not supported (supported: \(GGUFNames.supportedArchitectures.joined(separator: ", ")))")
        }
        return (name, arch)
    }

    /// The tensor names of this file's architecture.
    func names() throws -> GGUFNames { GGUFNames(try supportedArchitecture().architecture) }

    /// A Float32 value as its shortest round-tripping decimal (1e-05, not 9.999999747378752e-06,
    /// which is the value the original config held); other numbers as they are.
    public func decimal(_ key: String) throws -> Double? {
        guard let v = metadata[key] else { return nil }
        if case .float32(let f) = v { return Double("\(f)") ?? Double(f) }
        guard let x = v.double else { throw FileError(file: path, location: key, "expected a number, found \(v.typeName)") }
        return x
    }

    /// The Hugging Face config that the metadata describes (`<arch>.embedding_length`,
    /// `<arch>.block_count`, `<arch>.attention.head_count_kv`, `tokenizer.ggml.*`, …).
    public func huggingFaceConfig() throws -> GGUFModelConfig {
        let (arch, architecture) = try supportedArchitecture()
        func required(_ key: String) throws -> Int {
            guard let v = try int("\(arch).\(key)") else {
                throw FileError(file: path, location: "\(arch).\(key)", "missing metadata key")
            }
            guard v > 0 else { throw FileError(file: path, location: "\(arch).\(key)", "must be positive, found \(v)") }
            return v
        }
        let hidden = try required("embedding_length")
        let heads = try required("attention.head_count")
        let kvHeads = try int("\(arch).attention.head_count_kv") ?? heads
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw FileError(file: path, location: "\(arch).attention.head_count_kv",
                            "\(kvHeads) key/value heads do not divide \(heads) attention heads")
        }
        var vocab = try int("\(arch).vocab_size")
        if vocab == nil, let tokens = metadata["tokenizer.ggml.tokens"]?.array { vocab = tokens.count }
        if vocab == nil, let emb = tensorInfos.first(where: { $0.name == "token_embd.weight" }) { vocab = emb.shape[0] }
        guard let vocabSize = vocab else {
            throw FileError(file: path, location: "\(arch).vocab_size", "missing, and no tokenizer.ggml.tokens or token_embd.weight to count")
        }
        // As llama.cpp reads it: `rope.dimension_count` is the rotary part, not the head size.
        let headDim = try int("\(arch).attention.key_length") ?? hidden / heads
        return GGUFModelConfig(
            modelType: architecture.modelType,
            vocabSize: vocabSize,
            hiddenSize: hidden,
            intermediateSize: try required("feed_forward_length"),
            numHiddenLayers: try required("block_count"),
            numAttentionHeads: heads,
            numKeyValueHeads: kvHeads,
            headDim: headDim,
            rmsNormEps: try decimal("\(arch).attention.layer_norm_rms_epsilon") ?? 1e-6,
            ropeTheta: try decimal("\(arch).rope.freq_base") ?? architecture.ggufDefaultRopeTheta,
            maxPositionEmbeddings: try required("context_length"),
            tieWordEmbeddings: !contains("output.weight"),
            bosTokenId: try int("tokenizer.ggml.bos_token_id"),
            eosTokenId: try int("tokenizer.ggml.eos_token_id"),
            padTokenId: try int("tokenizer.ggml.padding_token_id"),
            attentionBias: contains("blk.0.attn_q.bias"))
    }

    /// The whole `config.json` the file stands for: `huggingFaceConfig()` with RoPE scaling
    /// (`rope.scaling.type` linear, or llama.cpp's `rope_freqs.weight` frequency divisors, which
    /// Llama 3.1+ files carry instead of `rope_scaling`) and the keys the architecture reads from
    /// its own metadata (`Architecture.ggufConfig`: soft caps, sliding windows, …).
    public func huggingFaceConfigJSON() throws -> [String: Any] {
        let (arch, architecture) = try supportedArchitecture()
        let base = try huggingFaceConfig()
        var json = base.json
        if let rotary = try int("\(arch).rope.dimension_count"), rotary != base.headDim {
            guard architecture.ggufPartialRotary, rotary > 0, rotary < base.headDim else {
                throw FileError(file: path, location: "\(arch).rope.dimension_count",
                                "partial rotary embeddings (\(rotary) of \(base.headDim) dimensions per head) are not supported for \(arch)")
            }
            json["partial_rotary_factor"] = NSNumber(value: Double(rotary) / Double(base.headDim))
        }
        switch try string("\(arch).rope.scaling.type") {
        case nil, "none": break
        case "linear":
            guard let factor = try decimal("\(arch).rope.scaling.factor"), factor > 0 else {
                throw FileError(file: path, location: "\(arch).rope.scaling.factor", "missing or not positive (needed by linear RoPE scaling)")
            }
            json["rope_scaling"] = ["rope_type": "linear", "factor": NSNumber(value: factor)]
        case let other?:
            throw FileError(file: path, location: "\(arch).rope.scaling.type", "unsupported RoPE scaling '\(other)' (supported: none, linear)")
        }
        if contains("rope_freqs.weight") {
            // θ_i = position · base^(−2i/d) / factor_i: LongRoPE's form with one set of factors.
            let factors = try tensor(named: "rope_freqs.weight").scalars.map { NSNumber(value: Double($0)) }
            let rotary = try int("\(arch).rope.dimension_count") ?? base.headDim
            guard factors.count == rotary / 2 else {
                throw FileError(file: path, location: "rope_freqs.weight", "\(factors.count) factors for \(rotary / 2) rotary frequencies")
            }
            json["rope_scaling"] = ["rope_type": "longrope", "short_factor": factors, "long_factor": factors,
                                    "attention_factor": NSNumber(value: 1.0)]
        }
        for (key, value) in try architecture.ggufConfig(self, arch, base) { json[key] = value }
        // A llama file with biases on q, k and v only is Qwen2's layout (how `distill export`
        // writes a Qwen2 that llama.cpp's qwen2 cannot hold); transformers' Llama would put a bias
        // on o_proj too.
        if architecture.modelType == "llama", base.attentionBias, !contains("blk.0.attn_output.bias") {
            json["model_type"] = Architecture.qwen2.modelType
            json["architectures"] = [Architecture.qwen2.className]
            json.removeValue(forKey: "attention_bias")
        }
        return json
    }

    /// Hugging Face names of the tensors in this file that have one, sorted.
    public var huggingFaceTensorNames: [String] {
        guard let names = try? names() else { return [] }
        return tensorInfos.compactMap { names.huggingFaceName(for: $0.name) }.sorted()
    }

    /// The tensor with Hugging Face name `name`, dequantized, with llama's Q/K row permutation
    /// and Gemma's norm shift undone, so that it equals the tensor of the original `transformers`
    /// checkpoint.
    public func huggingFaceTensor(named name: String) throws -> Tensor {
        let architecture = try supportedArchitecture().architecture
        guard let g = GGUFNames(architecture).ggufName(for: name) else {
            throw FileError(file: path, location: name,
                            "no GGUF counterpart for this Hugging Face name; known names: \(someNames(huggingFaceTensorNames))")
        }
        guard contains(g) else {
            if g == "output.weight" {
                throw FileError(file: path, location: name,
                                "the file has no output.weight: the output head is tied to model.embed_tokens.weight (tie_word_embeddings)")
            }
            throw FileError(file: path, location: name, "the file has no tensor \(g); known names: \(someNames(huggingFaceTensorNames))")
        }
        let t = try tensor(named: g)
        if architecture.ggufNormShift != 0, g.hasSuffix("norm.weight") {
            return withoutGradients { t - architecture.ggufNormShift }
        }
        guard let heads = try rotaryHeads(of: g) else { return t }
        return try GGUFNames.unpermuteRotaryRows(t, heads: heads, name: g, file: path)
    }

    /// For a llama file's Q or K projection (weight or bias), the heads whose rows llama.cpp
    /// permuted; nil for every other tensor.
    func rotaryHeads(of g: String) throws -> Int? {
        let (arch, architecture) = try supportedArchitecture()
        guard architecture.ggufPermutesRotary else { return nil }
        let isQ = g.hasSuffix(".attn_q.weight") || g.hasSuffix(".attn_q.bias")
        let isK = g.hasSuffix(".attn_k.weight") || g.hasSuffix(".attn_k.bias")
        guard isQ || isK else { return nil }
        guard let heads = try int("\(arch).attention.head_count") else {
            throw FileError(file: path, location: "\(arch).attention.head_count", "missing metadata key (needed to un-permute \(g))")
        }
        return isQ ? heads : try int("\(arch).attention.head_count_kv") ?? heads
    }

    /// Every tensor under its Hugging Face name (see `huggingFaceTensor(named:)`).
    public func huggingFaceTensors() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for name in huggingFaceTensorNames { out[name] = try huggingFaceTensor(named: name) }
        return out
    }
}

/// A GGUF file seen through Hugging Face names: tensors dequantized, un-permuted and un-shifted,
/// so a loader written for safetensors checkpoints takes it unchanged (it has the members of the
/// `WeightSource` protocol). Fused tensors (Phi-3's `attn_qkv`) keep their fused Hugging Face
/// name; `SplittingWeights` splits them.
public struct GGUFWeights: @unchecked Sendable {
    public let file: GGUFFile
    /// Hugging Face names of the tensors present, sorted.
    public let tensorNames: [String]
    let names: GGUFNames

    public init(_ file: GGUFFile) throws {
        names = try file.names()
        self.file = file
        tensorNames = file.huggingFaceTensorNames
    }

    public var sourceName: String { file.path }

    public func contains(_ name: String) -> Bool {
        names.ggufName(for: name).map(file.contains) ?? false
    }

    public func tensor(named name: String) throws -> Tensor { try file.huggingFaceTensor(named: name) }

    /// The matrix `name` (Hugging Face name) in its stored block format, rows in Hugging Face
    /// order, when its type is a `QuantizedMatrix.Format` (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
    /// Q6_K, and BF16 with rows of whole 32-value blocks); nil for other types.
    public func quantizedMatrix(named name: String) throws -> QuantizedMatrix? {
        guard let g = names.ggufName(for: name), file.contains(g) else { return nil }
        let info = try file.tensorInfo(named: g)
        guard let format = QuantizedMatrix.Format(rawValue: Int32(info.type.rawValue)), info.shape.count == 2,
              info.shape[1] % format.blockValues == 0, let n = info.byteCount else { return nil }
        let start = file.dataStart + info.offset
        let q = try QuantizedMatrix(format: format, rows: info.shape[0], cols: info.shape[1],
                                    borrowing: file.file.bytes(start..<(start + n)), owner: file, fileMapped: true)
        // Undo llama.cpp's rotary row permutation (see `unpermuteRotaryRows`).
        guard let heads = try file.rotaryHeads(of: g) else { return q }
        return try q.selectingRows(GGUFNames.rotaryRowOrder(rows: q.rows, heads: heads, name: g, file: file.path))
    }
}
