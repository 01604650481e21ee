import DistillTensor

/// y = x·Wᵀ + b with W of shape [out, in] (the PyTorch / Hugging Face layout).
public final class Linear: Module {
    public let weight: Parameter
    public let bias: Parameter?
    /// LoRA adapter (LoRA.swift), nil unless attached: A [r, in], B [out, r], named as PEFT names
    /// them (`q_proj.lora_A.weight`, `q_proj.lora_B.weight`).
    public internal(set) var loraA: Linear?
    public internal(set) var loraB: Linear?
    public internal(set) var loraDropout: Dropout?
    /// alpha / r, and whether B·A has been added into `weight` (then the adapter path is skipped).
    public internal(set) var loraScale: Float = 0
    public internal(set) var loraMerged = false
    /// The weight as stored in a quantized file (GGUF Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 or a K-quant):
    /// every product without gradients uses it (a few rows: the matrix-vector kernels; more: the
    /// GEMM packing its panels from the blocks), so a model loaded from such a file need not hold
    /// its weights in Float32 (`weight` may be lazy). Dropped as soon as a trainable weight runs with gradients or the layer gets a
    /// LoRA adapter (the weight may then change).
    public var quantizedWeight: QuantizedMatrix?

    public override var keyOverrides: [String: String] { ["loraA": "lora_A", "loraB": "lora_B"] }

    /// PyTorch's default initialisation: U(−1/√in, 1/√in) for weight and bias.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, rng: inout RandomGenerator) {
        let bound = 1 / Float(inFeatures).squareRoot()
        weight = Parameter(.randomUniform([outFeatures, inFeatures], low: -bound, high: bound, using: &rng))
        self.bias = bias ? Parameter(.randomUniform([outFeatures], low: -bound, high: bound, using: &rng)) : nil
    }

    public init(weight: Tensor, bias: Tensor? = nil) {
        precondition(weight.rank == 2, "Linear: weight must be [out, in], got \(weight.shape)")
        self.weight = Parameter(weight)
        self.bias = bias.map { Parameter($0) }
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.shape.last == inFeatures, "Linear: input \(x.shape) does not end in \(inFeatures)")
        if quantizedWeight != nil && GradientMode.isEnabled && !weight.isFrozen { quantizedWeight = nil }
        if let q = quantizedWeight, !GradientMode.isEnabled {
            let y = q.inferenceProduct(x)
            return bias.map { y + $0.value } ?? y
        }
        let y = x.matmul(weight.value, transB: true)
        let base = bias.map { y + $0.value } ?? y
        guard let a = loraA, let b = loraB, !loraMerged else { return base }
        // y = base(x) + (alpha/r)·B(A(dropout(x)))
        let drop = loraDropout.map { $0(x) } ?? x
        return base + loraScale * b(a(drop))
    }
}

extension Linear {
    /// Each layer applied to `x`, its products in one parallel loop when every layer multiplies
    /// through its quantized weight's `multiply` here (a decoding step, or a prompt under the fast
    /// option; see `QuantizedMatrix.multipliesRows` and `multiply(_:_:)`), else one after the
    /// other. The same values either way.
    public static func apply(_ layers: [Linear], to x: Tensor) -> [Tensor] {
        let ws = layers.compactMap(\.quantizedWeight)
        guard !GradientMode.isEnabled, ws.count == layers.count, layers.count > 1,
              ws.allSatisfy({ $0.multipliesRows(x.shape.dropLast().reduce(1, *)) }),
              layers.allSatisfy({ $0.inFeatures == x.shape.last }) else { return layers.map { $0(x) } }
        let ys = QuantizedMatrix.multiply(ws, x, int8Activations: QuantizedMatrix.fastDecoding)
        return zip(layers, ys).map { layer, y in layer.bias.map { y + $0.value } ?? y }
    }
}

/// Lookup table [count, dim]: token ids to vectors.
public final class Embedding: Module {
    public let weight: Parameter

    /// Normal(0, 1) initialisation, as PyTorch's `nn.Embedding`.
    public init(_ count: Int, _ dim: Int, std: Float = 1, rng: inout RandomGenerator) {
        weight = Parameter(.randomNormal([count, dim], std: std, using: &rng))
    }

    public init(weight: Tensor) { self.weight = Parameter(weight) }

    /// The table as stored in a quantized file: lookups and the tied output head read it without
    /// gradients (see `Linear.quantizedWeight`).
    public var quantizedWeight: QuantizedMatrix?

    /// Vectors for `ids`, shaped `shape + [dim]` (default: [ids.count, dim]).
    public func callAsFunction(_ ids: [Int], shape: [Int]? = nil) -> Tensor {
        let dim = weight.shape[1]
        if quantizedWeight != nil && GradientMode.isEnabled && !weight.isFrozen { quantizedWeight = nil }
        if let q = quantizedWeight, !GradientMode.isEnabled {
            return q.dequantizedRows(ids).reshaped((shape ?? [ids.count]) + [dim])
        }
        return weight.value.indexSelect(ids, axis: 0).reshaped((shape ?? [ids.count]) + [dim])
    }

    /// Logits against the table (a tied output head): x·Wᵀ.
    public func asLinear(_ x: Tensor) -> Tensor {
        if quantizedWeight != nil && GradientMode.isEnabled && !weight.isFrozen { quantizedWeight = nil }
        if let q = quantizedWeight, !GradientMode.isEnabled {
            return q.inferenceProduct(x)
        }
        return x.matmul(weight.value, transB: true)
    }
}

/// RMSNorm: x / rms(x) · w, or · (offset + w) with an offset (Gemma stores w − 1: offset 1).
/// The weight starts at 1 − offset (a scale of 1).
public final class RMSNorm: Module {
    public let weight: Parameter
    public let eps: Float
    public let offset: Float

    public init(_ dim: Int, eps: Float = 1e-6, offset: Float = 0) {
        weight = Parameter(Tensor([Float](repeating: 1 - offset, count: dim), shape: [dim]))
        self.eps = eps
        self.offset = offset
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.rmsNorm(weight: offset == 0 ? weight.value : offset + weight.value, eps: eps)
    }
}

public final class LayerNorm: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let eps: Float

    public init(_ dim: Int, eps: Float = 1e-5, bias: Bool = true) {
        weight = Parameter(Tensor(ones: [dim]))
        self.bias = bias ? Parameter(Tensor(zeros: [dim])) : nil
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.layerNorm(weight: weight.value, bias: bias?.value, eps: eps)
    }
}

/// Inverted dropout, active only in training mode. Holds its own seeded generator.
public final class Dropout: Module {
    public let p: Float
    public var rng: RandomGenerator

    public init(_ p: Float, seed: UInt64 = 0) {
        precondition(p >= 0 && p < 1, "Dropout: probability \(p) outside [0, 1)")
        self.p = p
        rng = RandomGenerator(seed: seed)
    }

    /// Drops (and rescales) only while training with gradients recorded: evaluation, generation
    /// and teacher passes run without gradients and see every unit.
    public var isActive: Bool { isTraining && p > 0 && GradientMode.isEnabled }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard isActive else { return x }
        return x.dropout(p: p, using: &rng)
    }
}

/// Dropout in the decoder blocks (a student's regularisation during training; off without
/// gradients): `residual` on the attention and MLP outputs before they join the residual stream
/// (transformers' hidden / residual dropout), `attention` on the attention probabilities.
public enum DecoderDropout {
    /// Attaches the dropouts to every block of `model` (p = 0 removes them). Each module draws from
    /// its own generator, seeded from `seed` and its place, so masks are reproducible.
    public static func apply(to model: TransformerLM, residual: Float, attention: Float, seed: UInt64) throws {
        for (name, p) in [("residual", residual), ("attention", attention)] where !(p >= 0 && p < 1) {
            throw LoRAError.invalidOption("\(name) dropout", "must be in [0, 1), found \(p)")
        }
        for (i, block) in model.model.layers.enumerated() {
            block.residualDropout = residual > 0 ? Dropout(residual, seed: seed &+ 0x5245_5349 &+ UInt64(2 * i)) : nil
            block.selfAttn.attentionDropout = attention > 0 ? Dropout(attention, seed: seed &+ 0x5245_5349 &+ UInt64(2 * i + 1)) : nil
        }
    }

    /// Every dropout module's generator by dotted module name (LoRA's too): what a checkpoint
    /// keeps so that a resumed run draws the same masks.
    public static func generators(of model: Module) -> [String: RandomGenerator] {
        var out: [String: RandomGenerator] = [:]
        for (name, m) in model.namedModules() { if let d = m as? Dropout { out[name] = d.rng } }
        return out
    }

    /// Restores generators saved by `generators(of:)`; a dropout module missing from `states` is an error.
    public static func restore(_ states: [String: RandomGenerator], in model: Module) throws {
        for (name, m) in model.namedModules() {
            guard let d = m as? Dropout else { continue }
            guard let s = states[name] else { throw LoRAError.invalidOption("dropout", "no saved random state for \(name)") }
            d.rng = s
        }
    }
}

/// Feed-forward block: SwiGLU (`down(silu(gate(x)) ⊙ up(x))`, Llama/Qwen), GeGLU (Gemma) or GELU
/// (`down(gelu(up(x)))`, GPT-style).
public final class MLP: Module {
    /// swiglu: down(silu(gate(x)) · up(x)); geglu: down(gelu_tanh(gate(x)) · up(x)) (Gemma);
    /// gelu, geluTanh: down(gelu(up(x))).
    public enum Kind: String, Codable, Sendable { case swiglu, geglu, gelu, geluTanh = "gelu_tanh" }

    public let gateProj: Linear?
    public let upProj: Linear
    public let downProj: Linear
    public let kind: Kind

    public init(hidden: Int, intermediate: Int, kind: Kind = .swiglu, bias: Bool = false, rng: inout RandomGenerator) {
        self.kind = kind
        gateProj = kind == .swiglu || kind == .geglu ? Linear(hidden, intermediate, bias: bias, rng: &rng) : nil
        upProj = Linear(hidden, intermediate, bias: bias, rng: &rng)
        downProj = Linear(intermediate, hidden, bias: bias, rng: &rng)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch kind {
        case .swiglu:
            let gu = Linear.apply([gateProj!, upProj], to: x)
            return downProj(gu[0].swiglu(gu[1]))
        case .geglu:
            let gu = Linear.apply([gateProj!, upProj], to: x)
            return downProj(gu[0].gelu(approximate: true) * gu[1])
        case .gelu: return downProj(upProj(x).gelu())
        case .geluTanh: return downProj(upProj(x).gelu(approximate: true))
        }
    }
}

extension Module {
    /// Keeps every matrix (projections, embedding) in bfloat16 instead of Float32: half the
    /// memory, for a model that only runs without gradients (a frozen teacher). Products multiply
    /// the bfloat16 values in Float32 (the GEMM expands them into its panels); embedding lookups
    /// expand rows. Matrices already held quantized, or whose rows are not a multiple of 32
    /// values, stay as they are. Returns the bytes saved.
    ///
    /// `bfloat16Products`: many-row products also round the activations to bfloat16 and multiply
    /// pairs with AVX512_BF16 where the CPU has it (`QuantizedMatrix.bfloat16Products`): twice
    /// the rate, results no longer those of the rounded weights in Float32.
    @discardableResult
    public func storeMatricesInBFloat16(bfloat16Products: Bool = false) throws -> Int {
        var saved = 0
        for (_, module) in namedModules() {
            if let linear = module as? Linear, linear.quantizedWeight == nil, linear.loraA == nil || linear.loraMerged,
               linear.weight.shape[1] % 32 == 0 {
                let q = try QuantizedMatrix(bfloat16: linear.weight.value)
                q.bfloat16Products = bfloat16Products
                linear.weight.freeze()
                linear.quantizedWeight = q
                linear.weight.assignLazily { q.dequantized() }
                saved += 2 * q.rows * q.cols
            } else if let embedding = module as? Embedding, embedding.quantizedWeight == nil, embedding.weight.shape[1] % 32 == 0 {
                let q = try QuantizedMatrix(bfloat16: embedding.weight.value)
                q.bfloat16Products = bfloat16Products
                embedding.weight.freeze()
                embedding.quantizedWeight = q
                embedding.weight.assignLazily { q.dequantized() }
                saved += 2 * q.rows * q.cols
            }
        }
        return saved
    }
}
