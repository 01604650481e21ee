import DistillNN
import DistillTensor
import Foundation

/// The file types `distill export --format gguf --type` writes, with llama.cpp's names.
public enum GGUFExportType: String, CaseIterable, Sendable {
    case f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k

    /// llama.cpp's `general.file_type` (LLAMA_FTYPE_*).
    var fileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q8_0: return 7
        case .q4_k_m: return 15
        case .q5_k_m: return 17
        case .q6_k: return 18
        case .bf16: return 32
        }
    }
}

/// How llama.cpp lays out one model in GGUF, from its `Architecture`: names, Q/K permutation, the
/// norm shift, metadata, and the type of each tensor (as llama.cpp's quantize chooses them).
public struct GGUFExport {
    public let model: PretrainedModel
    public let type: GGUFExportType
    /// What the file cannot carry that the model has (e.g. Mistral's sliding window), for the user.
    public private(set) var notices: [String] = []

    /// The architecture whose GGUF layout the file takes (Llama for models `ggufExportAsLlama` names).
    let arch: Architecture
    let c: TransformerConfig
    let ggufName: String
    let asLlama: Bool

    public init(model: PretrainedModel, type: GGUFExportType) throws {
        self.model = model
        self.type = type
        c = model.lm.config
        asLlama = model.architecture.ggufExportAsLlama(c)
        arch = asLlama ? .llama : model.architecture
        guard let name = arch.ggufNames.first else {
            throw FileError(file: model.path, location: "model_type", "llama.cpp has no GGUF layout for \(arch.modelType)")
        }
        ggufName = name
    }

    /// Writes the file (atomically: see `GGUFWriter`); `progress(i, n, name)` before each tensor.
    public mutating func write(to path: String, progress: (Int, Int, String) -> Void = { _, _, _ in }) throws {
        var w = GGUFWriter(architecture: ggufName, file: path)
        for (k, v) in try metadata(file: path) { w.set(k, v) }
        try addTensors(to: &w)
        let n = w.tensors.count
        try w.write { i, name in progress(i, n, name) }
    }

    // MARK: metadata

    mutating func metadata(file: String) throws -> [(String, GGUFValue)] {
        let a = ggufName
        func u32(_ v: Int) -> GGUFValue { .uint32(UInt32(v)) }
        var m: [(String, GGUFValue)] = [
            ("general.name", .string(URL(fileURLWithPath: model.path).deletingPathExtension().lastPathComponent)),
            ("general.file_type", .uint32(type.fileType)),
        ]
        if ![.f32, .f16, .bf16].contains(type) { m.append(("general.quantization_version", .uint32(2))) }
        let context = (try? model.config.int("max_position_embeddings")) ?? nil
        m += [
            ("\(a).context_length", u32(context ?? 2048)),
            ("\(a).embedding_length", u32(c.hidden)),
            ("\(a).block_count", u32(c.layers)),
            ("\(a).feed_forward_length", u32(c.intermediate)),
            ("\(a).attention.head_count", u32(c.heads)),
            ("\(a).attention.head_count_kv", u32(c.kvHeads)),
            ("\(a).attention.key_length", u32(c.headDim)),
            ("\(a).attention.value_length", u32(c.headDim)),
            ("\(a).rope.dimension_count", u32(c.rotaryDimensions)),
            ("\(a).rope.freq_base", .float32(c.ropeTheta)),
            ("\(a).attention.layer_norm_rms_epsilon", .float32(c.rmsNormEps)),
        ]
        if case .linear(let f)? = c.ropeScaling {
            m += [("\(a).rope.scaling.type", .string("linear")), ("\(a).rope.scaling.factor", .float32(f))]
        }
        m += try model.architecture.ggufExportMetadata(c, a, model.path)
        if asLlama {
            notices.append("written as llama (the layout llama.cpp runs this \(model.architecture.modelType) model with)")
            if let w = c.slidingWindow {
                notices.append("llama.cpp runs it without a sliding window: the model's window of \(w) is not in the file")
            }
        }
        let tok = try model.requireTokenizer()
        guard tok.vocabSize <= c.vocabSize else {
            throw FileError(file: model.path, location: "vocab_size",
                            "the tokenizer has \(tok.vocabSize) tokens, more than the model's vocabulary of \(c.vocabSize)")
        }
        m += try tok.ggufMetadata(vocabularySize: c.vocabSize, file: file)
        return m
    }

    // MARK: tensors

    mutating func addTensors(to w: inout GGUFWriter) throws {
        let names = GGUFNames(arch)
        var tensors: [String: Tensor] = [:]
        for (name, p) in model.lm.namedParameters() { tensors[name] = p.value }
        tensors = FusedTensor.fuse(tensors, model.architecture.fusedTensors(c), layers: c.layers)
        if c.tieEmbeddings { tensors.removeValue(forKey: "lm_head.weight") }
        let hasOutput = tensors["lm_head.weight"] != nil
        // Extra tensors llama.cpp keeps for RoPE scaling.
        for (name, values) in try ropeTensors() {
            try w.add(name, shape: values.shape, as: .f32) { values }
        }
        var vSeen = 0
        for hf in tensors.keys.sorted(by: { layerOrder($0) < layerOrder($1) }) {
            let t = tensors[hf]!
            guard let g = names.ggufName(for: hf) else {
                throw FileError(file: model.path, location: hf, "no GGUF name for this tensor in llama.cpp's \(ggufName) layout")
            }
            var kind = tensorKind(g, isOutput: g == "output.weight" || (!hasOutput && g == "token_embd.weight"))
            if case .attentionV = kind { kind = .attentionV(index: vSeen); vSeen += 1 }
            let stored = storedType(kind, shape: t.shape)
            let shift = arch.ggufNormShift != 0 && g.hasSuffix("norm.weight") ? arch.ggufNormShift : 0
            let heads = permutedHeads(g)
            try w.add(g, shape: t.shape, as: stored) {
                var v = t
                if shift != 0 { v = withoutGradients { v + shift } }
                if let h = heads { v = try GGUFNames.permuteRotaryRows(v, heads: h) }
                return v
            }
        }
    }

    /// Blocks in order, each block's tensors by name; global tensors first.
    func layerOrder(_ hf: String) -> (Int, String) {
        guard let (layer, rest) = GGUFNames.splitLayer(hf, prefix: "model.layers.") else { return (-1, hf) }
        return (layer, rest)
    }

    /// Heads of a Q or K projection llama.cpp permutes for interleaved RoPE; nil otherwise.
    func permutedHeads(_ g: String) -> Int? {
        guard arch.ggufPermutesRotary else { return nil }
        if g.hasSuffix(".attn_q.weight") || g.hasSuffix(".attn_q.bias") { return c.heads }
        if g.hasSuffix(".attn_k.weight") || g.hasSuffix(".attn_k.bias") { return c.kvHeads }
        return nil
    }

    /// llama.cpp's `rope_freqs.weight` (Llama 3 scaling as per-frequency divisors) or Phi-3's
    /// LongRoPE factor tensors.
    func ropeTensors() throws -> [(String, Tensor)] {
        let half = c.rotaryDimensions / 2
        switch c.ropeScaling {
        case .llama3?:
            let base = Tensor.rotaryInverseFrequencies(headDim: c.rotaryDimensions, base: c.ropeTheta)
            let scaled = c.ropeScaling!.apply(to: base)
            return [("rope_freqs.weight", Tensor(zip(base, scaled).map { $0 / $1 }, shape: [half]))]
        case let .longrope(short, long, _, attention)?:
            if arch.modelType == "phi3" {
                return [("rope_factors_long.weight", Tensor(long, shape: [half])),
                        ("rope_factors_short.weight", Tensor(short, shape: [half]))]
            }
            guard short == long, attention == 1 else {
                throw FileError(file: model.path, location: "rope_scaling",
                                "LongRoPE with separate short and long factors has no GGUF form for \(ggufName)")
            }
            return [("rope_freqs.weight", Tensor(short, shape: [half]))]
        default:
            return []
        }
    }

    enum TensorKind {
        case vector, output, tokenEmbedding, attentionV(index: Int), attentionQKV, ffnDown(layer: Int), other
    }

    func tensorKind(_ g: String, isOutput: Bool) -> TensorKind {
        if isOutput { return .output }
        if g == "token_embd.weight" { return .tokenEmbedding }
        if g.hasSuffix(".attn_v.weight") { return .attentionV(index: 0) }
        if g.hasSuffix(".attn_qkv.weight") { return .attentionQKV }
        if g.hasSuffix(".ffn_down.weight"), let (layer, _) = GGUFNames.splitLayer(g, prefix: "blk.") { return .ffnDown(layer: layer) }
        return .other
    }

    /// The stored type of a tensor, as llama.cpp's `llama_tensor_get_type` picks it for the file
    /// type: vectors in F32; the output head (or the tied embedding) in Q6_K for the quantized
    /// types; Q4_K_M / Q5_K_M give attn_v and ffn_down Q6_K in the first and last eighth of the
    /// layers and every third between; K-quant rows not a multiple of 256 fall back (Q4_K → Q5_0,
    /// Q5_K → Q5_1, Q6_K → Q8_0).
    func storedType(_ kind: TensorKind, shape: [Int]) -> GGMLType {
        if shape.count < 2 { return .f32 }
        let cols = shape.last!
        func moreBits(_ i: Int, _ n: Int) -> Bool { i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2 }
        var t: GGMLType
        switch type {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0: t = .q8_0
        case .q6_k: t = .q6_K
        case .q4_0:
            if case .output = kind { t = .q6_K } else { t = .q4_0 }
        case .q4_k_m, .q5_k_m:
            let base: GGMLType = type == .q4_k_m ? .q4_K : .q5_K
            switch kind {
            case .output: t = .q6_K
            case .attentionV(let i): t = moreBits(i, c.layers) ? .q6_K : base
            case .ffnDown(let l): t = moreBits(l, c.layers) ? .q6_K : base
            case .attentionQKV: t = type == .q4_k_m ? .q5_K : .q6_K
            default: t = base
            }
        }
        if cols % 256 != 0 {
            switch t {
            case .q4_K: t = .q5_0
            case .q5_K: t = .q5_1
            case .q6_K: t = .q8_0
            default: break
            }
        }
        if cols % 32 != 0 { t = .f16 }
        return t
    }
}

extension PretrainedModel {
    /// Writes the model as a llama.cpp GGUF file of `type` (see `GGUFExport`); returns notices
    /// about what the file cannot carry.
    @discardableResult
    public func exportGGUF(to path: String, type: GGUFExportType, progress: (Int, Int, String) -> Void = { _, _, _ in }) throws -> [String] {
        guard lm.prefixLength == 0 else {
            throw FileError(file: path, "the model has a tuned prefix (prefix tuning), which a GGUF file cannot carry")
        }
        var export = try GGUFExport(model: self, type: type)
        try export.write(to: path, progress: progress)
        return export.notices
    }
}
