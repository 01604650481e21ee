import DistillNN
import DistillTensor
import Foundation

/// Weight types of `distill export --format onnx --dtype`.
public enum ONNXExportType: String, CaseIterable, Sendable {
    /// Float32 weights and arithmetic.
    case f32
    /// Matrices stored in float16 (half the file) and cast to float32 in the graph: the arithmetic,
    /// the inputs, the cache and the logits stay float32, so onnxruntime's CPU kernels run it.
    case f16
}

/// A decoder as one ONNX graph with key/value cache inputs and outputs in the layout of Hugging
/// Face optimum's `text-generation-with-past` export, so that onnxruntime (and optimum's
/// `ORTModelForCausalLM`) run it:
///
/// - inputs `input_ids` [batch, seq], `attention_mask` [batch, past + seq] (1 = token, 0 = padding),
///   `position_ids` [batch, seq] (int64), `past_key_values.N.key|value` [batch, kv_heads, past, head_dim];
/// - outputs `logits` [batch, seq, vocab], `present.N.key|value` [batch, kv_heads, past + seq, head_dim].
///
/// The first call passes caches with past = 0. Opset 17. The graph follows `TransformerLM`
/// exactly: every architecture it runs (RMSNorm with offsets, grouped-query attention, biases,
/// Q/K norms, RoPE with its scalings including LongRoPE's switch, partial rotary, sliding windows
/// per layer with their own RoPE base, sandwich norms, soft caps, SwiGLU/GeGLU/GELU).
public struct ONNXExport {
    public let model: PretrainedModel
    public let dtype: ONNXExportType
    /// Weights larger than this in all go to `model.onnx_data` (protobuf's limit is 2 GB).
    public var externalDataThreshold = 1_800_000_000
    public static let opset = 17

    public init(model: PretrainedModel, dtype: ONNXExportType) {
        self.model = model
        self.dtype = dtype
    }

    /// Writes `dir/model.onnx` (and `model.onnx_data` past the threshold) with the model's
    /// config.json, generation_config.json and tokenizer files beside it. `dir` is created if
    /// missing (its parent must exist).
    public func write(to dir: String, progress: (Int, Int, String) -> Void = { _, _, _ in }) throws {
        let url = URL(fileURLWithPath: dir)
        let parent = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
            throw FileError(file: dir, "the directory \(parent) does not exist")
        }
        if FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), !isDir.boolValue {
            throw FileError(file: dir, "exists and is not a directory")
        }
        let graph = try build()
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        let c = model.lm.config
        try graph.write(directory: dir, fileName: "model.onnx", opset: Self.opset, producer: "distill",
                        docString: "\(model.architecture.className) exported by distill (\(dtype.rawValue) weights)",
                        metadata: [("model_type", model.architecture.modelType), ("num_hidden_layers", "\(c.layers)"),
                                   ("num_key_value_heads", "\(c.kvHeads)"), ("head_dim", "\(c.headDim)")],
                        externalDataThreshold: externalDataThreshold, progress: progress)
        try model.saveSideFiles(to: url, torchDtype: "float32")
    }

    // MARK: the graph

    /// Symbolic dimensions as optimum names them.
    static let batch = ONNXGraphBuilder.Dim.symbolic("batch_size")
    static let sequence = ONNXGraphBuilder.Dim.symbolic("sequence_length")
    static let past = ONNXGraphBuilder.Dim.symbolic("past_sequence_length")
    static let total = ONNXGraphBuilder.Dim.symbolic("past_sequence_length + sequence_length")

    func build() throws -> ONNXGraphBuilder {
        let lm = model.lm, c = lm.config
        var g = ONNXGraphBuilder(name: model.architecture.className)
        let kv = ONNXGraphBuilder.Dim.fixed(c.kvHeads), hd = ONNXGraphBuilder.Dim.fixed(c.headDim)
        let ids = g.input("input_ids", .int64, [Self.batch, Self.sequence])
        let attentionMask = g.input("attention_mask", .int64, [Self.batch, Self.total])
        let positions = g.input("position_ids", .int64, [Self.batch, Self.sequence])
        var pastKV: [(key: String, value: String)] = []
        for i in 0..<c.layers {
            pastKV.append((g.input("past_key_values.\(i).key", .float, [Self.batch, kv, Self.past, hd]),
                           g.input("past_key_values.\(i).value", .float, [Self.batch, kv, Self.past, hd])))
        }
        g.reserve(["logits"] + (0..<c.layers).flatMap { ["present.\($0).key", "present.\($0).value"] })
        var b = DecoderGraph(g: g, c: c, dtype: dtype, file: model.path)

        // Masks: key j is visible to query i (at cache index past + i) when j ≤ past + i, the
        // attention mask is 1 at j, and (sliding layers) past + i − j < window. Additive, [B, 1, 1, S, T]
        // to broadcast over [B, kv_heads, group, S, T].
        let seqLen = b.g.op("Gather", b.g.op("Shape", ids), b.g.int(1), attributes: [.int("axis", 0)], hint: "seq_len")
        let totalLen = b.g.op("Gather", b.g.op("Shape", attentionMask), b.g.int(1), attributes: [.int("axis", 0)], hint: "total_len")
        let pastLen = b.g.op("Sub", totalLen, seqLen, hint: "past_len")
        let queryIndex = b.g.op("Unsqueeze", b.g.op("Range", pastLen, totalLen, b.g.int(1)), b.g.ints([1]), hint: "query_index")
        let keyIndex = b.g.op("Unsqueeze", b.g.op("Range", b.g.int(0), totalLen, b.g.int(1)), b.g.ints([0]), hint: "key_index")
        let causal = b.g.op("LessOrEqual", keyIndex, queryIndex, hint: "causal")          // [S, T]
        let padding = b.g.op("Unsqueeze", b.g.op("Cast", attentionMask, attributes: [.int("to", Int(ONNXElementType.bool.rawValue))]),
                             b.g.ints([1, 2]), hint: "padding")                          // [B, 1, 1, T]
        func additive(_ allowed: String) -> String {
            // Masked scores get float32's lowest value rather than −∞, so that a row with every key
            // masked (a padding query) stays finite, as transformers does.
            let m = b.g.op("Where", allowed, b.g.float(0), b.g.float(-Float.greatestFiniteMagnitude), hint: "mask")
            return b.g.op("Unsqueeze", m, b.g.ints([2]), hint: "mask")                   // [B, 1, 1, S, T]
        }
        let fullMask = additive(b.g.op("And", causal, padding))
        var windowMasks: [Int: String] = [:]
        for layer in lm.model.layers {
            guard let w = layer.selfAttn.slidingWindow, windowMasks[w] == nil else { continue }
            let inWindow = b.g.op("Greater", keyIndex, b.g.op("Sub", queryIndex, b.g.int(w)), hint: "in_window")
            windowMasks[w] = additive(b.g.op("And", b.g.op("And", causal, inWindow), padding))
        }

        // RoPE: cos and sin [B, S, 1, R] from the position ids, as transformers computes them
        // (float32 angle = position · inverse frequency).
        let positionsF = b.g.op("Unsqueeze", b.g.op("Cast", positions, attributes: [.int("to", Int(ONNXElementType.float.rawValue))]),
                                b.g.ints([2]), hint: "positions")                       // [B, S, 1]
        func rope(_ inv: String, factor: Float) -> (cos: String, sin: String) {
            let freqs = b.g.op("Mul", positionsF, inv, hint: "freqs")                    // [B, S, R/2]
            let emb = b.g.op("Concat", freqs, freqs, attributes: [.int("axis", -1)], hint: "angles")
            var cos = b.g.op("Cos", emb), sin = b.g.op("Sin", emb)
            if factor != 1 { cos = b.g.op("Mul", cos, b.g.float(factor)); sin = b.g.op("Mul", sin, b.g.float(factor)) }
            return (b.g.op("Unsqueeze", cos, b.g.ints([2]), hint: "cos"), b.g.op("Unsqueeze", sin, b.g.ints([2]), hint: "sin"))
        }
        let base = Tensor.rotaryInverseFrequencies(headDim: c.rotaryDimensions, base: c.ropeTheta)
        var inv: String
        if case let .longrope(short, long, original, _)? = c.ropeScaling {
            // LongRoPE picks its factors by the length the positions reach, as transformers does.
            let reach = b.g.op("Add", b.g.op("ReduceMax", positions, attributes: [.int("keepdims", 0)]), b.g.int(1), hint: "reach")
            let isLong = b.g.op("Greater", reach, b.g.int(original), hint: "is_long")
            inv = b.g.op("Where", isLong, b.g.floats(zip(base, long).map { $0 / $1 }), b.g.floats(zip(base, short).map { $0 / $1 }),
                         hint: "inv_freq")
        } else {
            inv = b.g.floats(c.ropeInverseFrequencies)
        }
        let globalRope = rope(inv, factor: c.ropeScaling?.attentionFactor ?? 1)
        let localRope = c.localRopeTheta.map {
            rope(b.g.floats(Tensor.rotaryInverseFrequencies(headDim: c.rotaryDimensions, base: $0)), factor: 1)
        }

        // The decoder.
        var h = b.g.op("Gather", try b.embeddingTable(lm.model.embedTokens), ids, attributes: [.int("axis", 0)], hint: "embeddings")
        if c.scaleEmbeddings == true { h = b.g.op("Mul", h, b.g.float(Float(c.hidden).squareRoot())) }
        for (i, layer) in lm.model.layers.enumerated() {
            let p = "model.layers.\(i)"
            let sliding = layer.selfAttn.slidingWindow
            let ropeTables = sliding != nil ? localRope ?? globalRope : globalRope
            let mask = sliding.map { windowMasks[$0]! } ?? fullMask
            let x = try b.rmsNorm(h, layer.inputLayernorm, "\(p).input_layernorm")
            var a = try b.attention(x, layer.selfAttn, prefix: "\(p).self_attn", rope: ropeTables, mask: mask,
                                    past: pastKV[i], present: ("present.\(i).key", "present.\(i).value"))
            if let pre = layer.preFeedforwardLayernorm, let post = layer.postFeedforwardLayernorm {
                a = try b.rmsNorm(a, layer.postAttentionLayernorm, "\(p).post_attention_layernorm")
                h = b.g.op("Add", h, a, hint: "residual")
                let m = try b.mlp(try b.rmsNorm(h, pre, "\(p).pre_feedforward_layernorm"), layer.mlp, prefix: "\(p).mlp")
                h = b.g.op("Add", h, try b.rmsNorm(m, post, "\(p).post_feedforward_layernorm"), hint: "residual")
            } else {
                h = b.g.op("Add", h, a, hint: "residual")
                let m = try b.mlp(try b.rmsNorm(h, layer.postAttentionLayernorm, "\(p).post_attention_layernorm"), layer.mlp,
                                  prefix: "\(p).mlp")
                h = b.g.op("Add", h, m, hint: "residual")
            }
        }
        h = try b.rmsNorm(h, lm.model.norm, "model.norm")
        var logits: String
        if let head = lm.lmHead {
            logits = try b.linear(h, head, "lm_head")
        } else {
            // Tied: the embedding table, transposed in the graph (onnxruntime folds it once).
            let table = try b.embeddingTable(lm.model.embedTokens)
            logits = b.g.op("MatMul", h, b.g.op("Transpose", table, attributes: [.ints("perm", [1, 0])], hint: "lm_head"), hint: "logits")
        }
        if let cap = c.finalSoftcap { logits = b.softcap(logits, cap) }
        b.g.output(logits, as: "logits", .float, [Self.batch, Self.sequence, .fixed(c.vocabSize)])
        for i in 0..<c.layers {
            for name in ["present.\(i).key", "present.\(i).value"] { b.g.output(name, as: name, .float, [Self.batch, kv, Self.total, hd]) }
        }
        return b.g
    }
}

/// Builds one decoder's nodes: layers as `TransformerLM` runs them.
private struct DecoderGraph {
    var g: ONNXGraphBuilder
    let c: TransformerConfig
    let dtype: ONNXExportType
    let file: String
    var embeddingName: String?

    init(g: ONNXGraphBuilder, c: TransformerConfig, dtype: ONNXExportType, file: String) {
        self.g = g
        self.c = c
        self.dtype = dtype
        self.file = file
    }

    var storedType: ONNXElementType { dtype == .f16 ? .float16 : .float }

    /// A float16 initializer cast to float32 in the graph; float32 ones as they are.
    mutating func asFloat(_ name: String) -> String {
        storedType == .float ? name : g.op("Cast", name, attributes: [.int("to", Int(ONNXElementType.float.rawValue))], hint: name + ".f32")
    }

    /// Values of a parameter: a lazily loaded quantized matrix is expanded here without being kept.
    static func values(_ p: Parameter, quantized: QuantizedMatrix?) -> Tensor {
        if p.isLazy, let q = quantized { return q.dequantized() }
        return p.value
    }

    mutating func embeddingTable(_ e: Embedding) throws -> String {
        if let name = embeddingName { return name }
        let type = storedType
        let name = g.weight("model.embed_tokens.weight", shape: e.weight.shape, type: type) {
            let t = Self.values(e.weight, quantized: e.quantizedWeight)
            return ONNXGraphBuilder.bytes(t.storage.pointer, count: t.count, as: type)
        }
        embeddingName = asFloat(name)
        return embeddingName!
    }

    /// x · Wᵀ (+ b), the weight stored transposed for MatMul.
    mutating func linear(_ x: String, _ l: Linear, _ name: String) throws -> String {
        if l.loraA != nil && !l.loraMerged {
            throw FileError(file: file, location: name, "has a LoRA adapter that is not merged (merge it first: distill lora merge)")
        }
        let type = storedType
        let shape = l.weight.shape
        let w = g.weight("\(name).weight", shape: [shape[1], shape[0]], type: type) {
            ONNXGraphBuilder.transposedBytes(Self.values(l.weight, quantized: l.quantizedWeight), as: type)
        }
        var y = g.op("MatMul", x, asFloat(w), hint: name)
        if let bias = l.bias {
            let bname = g.weight("\(name).bias", shape: bias.shape, type: .float) {
                let t = bias.value
                return ONNXGraphBuilder.bytes(t.storage.pointer, count: t.count, as: .float)
            }
            y = g.op("Add", y, bname, hint: name)
        }
        return y
    }

    /// x · (1 / √(mean(x²) + ε)) · (offset + w) over the last axis, in Distill's order.
    mutating func rmsNorm(_ x: String, _ n: RMSNorm, _ name: String) throws -> String {
        let offset = n.offset
        let w = g.weight("\(name).weight", shape: n.weight.shape, type: .float) {
            let t = n.weight.value
            let v = offset == 0 ? t : withoutGradients { offset + t }
            return ONNXGraphBuilder.bytes(v.storage.pointer, count: v.count, as: .float)
        }
        let meanSquare = g.op("ReduceMean", g.op("Mul", x, x), attributes: [.ints("axes", [-1]), .int("keepdims", 1)], hint: name)
        let inverse = g.op("Reciprocal", g.op("Sqrt", g.op("Add", meanSquare, g.float(n.eps)), hint: name), hint: name)
        return g.op("Mul", g.op("Mul", x, inverse, hint: name), w, hint: name)
    }

    mutating func softcap(_ x: String, _ cap: Float) -> String {
        g.op("Mul", g.op("Tanh", g.op("Mul", x, g.float(1 / cap))), g.float(cap), hint: "softcap")
    }

    /// RoPE on [B, S, heads, D] (the first R dimensions of each head; tables [B, S, 1, R]).
    mutating func rotary(_ x: String, _ rope: (cos: String, sin: String)) -> String {
        let r = c.rotaryDimensions, d = c.headDim
        func slice(_ v: String, _ from: Int, _ to: Int) -> String {
            g.op("Slice", v, g.ints([from]), g.ints([to]), g.ints([3]), hint: "slice")
        }
        let rotated = r < d ? slice(x, 0, r) : x
        let x1 = slice(rotated, 0, r / 2), x2 = slice(rotated, r / 2, r)
        let turned = g.op("Concat", g.op("Neg", x2), x1, attributes: [.int("axis", 3)], hint: "rotate_half")
        let out = g.op("Add", g.op("Mul", rotated, rope.cos), g.op("Mul", turned, rope.sin), hint: "rope")
        return r < d ? g.op("Concat", out, slice(x, r, d), attributes: [.int("axis", 3)], hint: "rope") : out
    }

    mutating func attention(_ x: String, _ a: Attention, prefix p: String, rope: (cos: String, sin: String), mask: String,
                            past: (key: String, value: String), present: (key: String, value: String)) throws -> String {
        if a.prefixKeys != nil {
            throw FileError(file: file, location: p, "has prefix-tuning keys, which the ONNX export does not carry")
        }
        let h = a.heads, kvh = a.kvHeads, d = a.headDim, group = h / kvh
        var q = g.op("Reshape", try linear(x, a.qProj, "\(p).q_proj"), g.ints([0, 0, h, d]), hint: "q")
        var k = g.op("Reshape", try linear(x, a.kProj, "\(p).k_proj"), g.ints([0, 0, kvh, d]), hint: "k")
        let v = g.op("Reshape", try linear(x, a.vProj, "\(p).v_proj"), g.ints([0, 0, kvh, d]), hint: "v")
        if let n = a.qNorm { q = try rmsNorm(q, n, "\(p).q_norm") }
        if let n = a.kNorm { k = try rmsNorm(k, n, "\(p).k_norm") }
        q = rotary(q, rope)
        k = rotary(k, rope)
        // [B, S, H, D] → [B, H, S, D] → [B, kv, group, S, D]: head kv·group + j reads kv head kv.
        let q5 = g.op("Reshape", g.op("Transpose", q, attributes: [.ints("perm", [0, 2, 1, 3])]), g.ints([0, kvh, group, -1, d]), hint: "q")
        g.node("Concat", [past.key, g.op("Transpose", k, attributes: [.ints("perm", [0, 2, 1, 3])])], [.int("axis", 2)],
               outputs: [present.key])
        g.node("Concat", [past.value, g.op("Transpose", v, attributes: [.ints("perm", [0, 2, 1, 3])])], [.int("axis", 2)],
               outputs: [present.value])
        let keysT = g.op("Unsqueeze", g.op("Transpose", present.key, attributes: [.ints("perm", [0, 1, 3, 2])]), g.ints([2]), hint: "k_t")
        var scores = g.op("MatMul", q5, keysT, hint: "scores")                              // [B, kv, group, S, T]
        scores = g.op("Mul", scores, g.float(a.scale ?? 1 / Float(d).squareRoot()), hint: "scores")
        if let cap = a.softcap { scores = softcap(scores, cap) }
        let probs = g.op("Softmax", g.op("Add", scores, mask, hint: "scores"), attributes: [.int("axis", -1)], hint: "probs")
        let out = g.op("MatMul", probs, g.op("Unsqueeze", present.value, g.ints([2]), hint: "v"), hint: "attn")   // [B, kv, group, S, D]
        let merged = g.op("Reshape", g.op("Transpose", g.op("Reshape", out, g.ints([0, h, -1, d])), attributes: [.ints("perm", [0, 2, 1, 3])]),
                          g.ints([0, 0, h * d]), hint: "attn")
        return try linear(merged, a.oProj, "\(p).o_proj")
    }

    mutating func mlp(_ x: String, _ m: MLP, prefix p: String) throws -> String {
        func silu(_ v: String) -> String { g.op("Mul", v, g.op("Sigmoid", v), hint: "silu") }
        func gelu(_ v: String, tanh: Bool) -> String {
            let half = g.op("Mul", v, g.float(0.5), hint: "gelu")
            let inner: String
            if tanh {
                // 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
                let cube = g.op("Mul", g.op("Mul", v, v), v)
                let arg = g.op("Mul", g.op("Add", v, g.op("Mul", cube, g.float(0.044715))), g.float((2 / Float.pi).squareRoot()))
                inner = g.op("Tanh", arg)
            } else {
                inner = g.op("Erf", g.op("Mul", v, g.float(1 / Float(2).squareRoot())))
            }
            return g.op("Mul", half, g.op("Add", inner, g.float(1)), hint: "gelu")
        }
        let up = try linear(x, m.upProj, "\(p).up_proj")
        let act: String
        switch m.kind {
        case .swiglu: act = g.op("Mul", silu(try linear(x, m.gateProj!, "\(p).gate_proj")), up)
        case .geglu: act = g.op("Mul", gelu(try linear(x, m.gateProj!, "\(p).gate_proj"), tanh: true), up)
        case .gelu: act = gelu(up, tanh: false)
        case .geluTanh: act = gelu(up, tanh: true)
        }
        return try linear(act, m.downProj, "\(p).down_proj")
    }
}

extension PretrainedModel {
    /// Writes the model as an ONNX decoder with a key/value cache (see `ONNXExport`) into `dir`.
    public func exportONNX(to dir: String, dtype: ONNXExportType, externalDataThreshold: Int? = nil,
                           progress: (Int, Int, String) -> Void = { _, _, _ in }) throws {
        var e = ONNXExport(model: self, dtype: dtype)
        if let t = externalDataThreshold { e.externalDataThreshold = t }
        try e.write(to: dir, progress: progress)
    }
}
