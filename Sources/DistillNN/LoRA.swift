import DistillTensor

// Parameter-efficient fine-tuning: LoRA adapters on chosen linear projections, and prefix tuning.
//
// LoRA (Hu et al. 2021, as Hugging Face PEFT implements it): a frozen base projection W plus a
// low-rank update, y = W·x + b + (alpha/r)·B·A·dropout(x), with A [r, in] drawn like PyTorch's
// `kaiming_uniform_(a = √5)` (U(−1/√in, 1/√in)) and B [out, r] zero, so that a fresh adapter leaves
// the model's outputs unchanged. Adapter parameters are named as PEFT names them
// (`model.layers.0.self_attn.q_proj.lora_A.weight`). `Linear` holds the adapter (Layers.swift).

/// LoRA hyper-parameters (PEFT's `LoraConfig`: r, lora_alpha, lora_dropout, target_modules).
public struct LoRAConfig: Codable, Equatable, Sendable {
    public var rank: Int
    public var alpha: Float
    public var dropout: Float
    /// Module names or name suffixes (`q_proj` matches `model.layers.3.self_attn.q_proj`).
    public var targetModules: [String]
    /// rsLoRA (PEFT's `use_rslora`): the update scaled by alpha/√r instead of alpha/r; nil = off.
    public var useRSLoRA: Bool?

    public init(rank: Int = 8, alpha: Float = 16, dropout: Float = 0, targetModules: [String] = ["q_proj", "v_proj"],
                useRSLoRA: Bool = false) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targetModules = targetModules
        self.useRSLoRA = useRSLoRA ? true : nil
    }

    /// alpha / r (rsLoRA: alpha / √r).
    public var scale: Float { useRSLoRA == true ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }

    public func validate() throws {
        guard rank > 0 else { throw LoRAError.invalidOption("rank", "must be positive, found \(rank)") }
        guard alpha.isFinite, alpha > 0 else { throw LoRAError.invalidOption("alpha", "must be positive, found \(alpha)") }
        guard dropout >= 0, dropout < 1 else { throw LoRAError.invalidOption("dropout", "must be in [0, 1), found \(dropout)") }
        guard !targetModules.isEmpty else { throw LoRAError.invalidOption("target_modules", "is empty") }
    }
}

public enum LoRAError: Error, Equatable, CustomStringConvertible {
    case invalidOption(String, String)
    case noMatchingModules([String])
    case notLinear(String)
    case alreadyAttached(String)
    case missingAdapterTensor(String)
    case unexpectedAdapterTensor(String)
    case shapeMismatch(name: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case let .invalidOption(o, m): return "LoRA option '\(o)' \(m)"
        case .noMatchingModules(let t): return "no linear module matches the LoRA targets \(t)"
        case .notLinear(let n): return "module '\(n)' matches a LoRA target but is not a linear layer"
        case .alreadyAttached(let n): return "module '\(n)' already has an adapter attached"
        case .missingAdapterTensor(let n): return "adapter tensor '\(n)' missing"
        case .unexpectedAdapterTensor(let n): return "adapter tensor '\(n)' does not belong to any adapted module"
        case let .shapeMismatch(n, e, f): return "adapter tensor '\(n)': expected shape \(e), found \(f)"
        }
    }
}

extension Linear {
    /// Attaches a LoRA adapter of `rank` (A kaiming-uniform from `rng`, B zero) and freezes the
    /// base weight and bias.
    public func attachLoRA(rank: Int, alpha: Float, dropout: Float = 0, rng: inout RandomGenerator, dropoutSeed: UInt64 = 0) {
        precondition(loraA == nil, "attachLoRA: an adapter is already attached")
        precondition(rank > 0, "attachLoRA: rank must be positive")
        // kaiming_uniform_(a=√5) on [r, in]: gain √(2/(1+5)), bound gain·√(3/in) = 1/√in — Linear's init.
        quantizedWeight = nil      // the weights no longer are the file's alone
        loraA = Linear(inFeatures, rank, bias: false, rng: &rng)
        loraB = Linear(weight: Tensor(zeros: [outFeatures, rank]))
        loraDropout = dropout > 0 ? Dropout(dropout, seed: dropoutSeed) : nil
        loraDropout?.train(isTraining)
        loraScale = alpha / Float(rank)
        loraMerged = false
        weight.freeze()
        bias?.freeze()
    }

    /// (alpha/r)·B·A, [out, in] — the adapter's update of the weight (a constant).
    public var loraDelta: Tensor? {
        guard let a = loraA, let b = loraB else { return nil }
        return withoutGradients { loraScale * b.weight.value.detached().matmul(a.weight.value.detached()) }
    }

    /// W += (alpha/r)·B·A; the adapter path is then skipped. No-op when merged or without adapter.
    public func mergeLoRA() {
        guard let d = loraDelta, !loraMerged else { return }
        weight.assign(withoutGradients { weight.value.detached() + d })
        loraMerged = true
    }

    /// W −= (alpha/r)·B·A, undoing `mergeLoRA`.
    public func unmergeLoRA() {
        guard let d = loraDelta, loraMerged else { return }
        weight.assign(withoutGradients { weight.value.detached() - d })
        loraMerged = false
    }

    /// Drops the adapter. With `merge`, its update stays in the weight (PEFT's `merge_and_unload`);
    /// without, a merged update is taken back out first (`unload`).
    public func removeLoRA(merge: Bool) {
        if merge { mergeLoRA() } else { unmergeLoRA() }
        loraA = nil
        loraB = nil
        loraDropout = nil
        loraScale = 0
        loraMerged = false
    }
}

/// Whether module `name` is selected by PEFT-style `targets` (equal, or ends in "." + target).
public func loraTargetMatches(_ name: String, targets: [String]) -> Bool {
    targets.contains { name == $0 || name.hasSuffix("." + $0) }
}

/// Attaches LoRA adapters to every linear module of `model` whose name matches the config's
/// targets, freezes every other parameter (only adapters train), and returns the adapted
/// modules' names. Seeded: the same seed gives the same A matrices and dropout masks.
@discardableResult
public func applyLoRA(to model: Module, config: LoRAConfig, seed: UInt64 = 0) throws -> [String] {
    try config.validate()
    var chosen: [(String, Linear)] = []
    for (name, m) in model.namedModules() where loraTargetMatches(name, targets: config.targetModules) {
        if name.contains(".lora_A") || name.contains(".lora_B") { continue }
        guard let lin = m as? Linear else { throw LoRAError.notLinear(name) }
        guard lin.loraA == nil else { throw LoRAError.alreadyAttached(name) }
        chosen.append((name, lin))
    }
    guard !chosen.isEmpty else { throw LoRAError.noMatchingModules(config.targetModules) }
    model.freeze()
    var rng = RandomGenerator(seed: seed)
    for (i, (_, lin)) in chosen.enumerated() {
        lin.attachLoRA(rank: config.rank, alpha: config.alpha, dropout: config.dropout, rng: &rng,
                       dropoutSeed: seed &+ UInt64(i + 1))
        lin.loraScale = config.scale
    }
    return chosen.map(\.0)
}

/// The linear modules of `model` that carry an adapter, by name.
public func loraModules(of model: Module) -> [(name: String, linear: Linear)] {
    model.namedModules().compactMap { name, m in
        guard let lin = m as? Linear, lin.loraA != nil else { return nil }
        return (name, lin)
    }
}

/// Adapter weights only (`….lora_A.weight`, `….lora_B.weight`), by dotted name.
public func loraStateDict(of model: Module) -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for (name, lin) in loraModules(of: model) {
        out[name + ".lora_A.weight"] = lin.loraA!.weight.value.detached()
        out[name + ".lora_B.weight"] = lin.loraB!.weight.value.detached()
    }
    return out
}

/// Loads adapter weights into a model whose adapters are attached (same targets and rank). Every
/// adapter tensor must be present with its shape; tensors of no adapter are errors. A merged
/// adapter is unmerged first and re-merged with the new values.
public func loadLoRAStateDict(_ tensors: [String: Tensor], into model: Module) throws {
    let modules = loraModules(of: model)
    var known = Set<String>()
    for (name, lin) in modules {
        for (key, p) in [("lora_A", lin.loraA!.weight), ("lora_B", lin.loraB!.weight)] {
            let n = "\(name).\(key).weight"
            known.insert(n)
            guard let t = tensors[n] else { throw LoRAError.missingAdapterTensor(n) }
            guard t.shape == p.shape else { throw LoRAError.shapeMismatch(name: n, expected: p.shape, found: t.shape) }
        }
    }
    if let extra = tensors.keys.sorted().first(where: { !known.contains($0) }) {
        throw LoRAError.unexpectedAdapterTensor(extra)
    }
    for (name, lin) in modules {
        let merged = lin.loraMerged
        lin.unmergeLoRA()
        lin.loraA!.weight.assign(tensors["\(name).lora_A.weight"]!.detached())
        lin.loraB!.weight.assign(tensors["\(name).lora_B.weight"]!.detached())
        if merged { lin.mergeLoRA() }
    }
}

/// Merges every adapter into its base weight (for export); with `unload`, the adapters are dropped.
public func mergeLoRA(in model: Module, unload: Bool = false) {
    for (_, lin) in loraModules(of: model) { if unload { lin.removeLoRA(merge: true) } else { lin.mergeLoRA() } }
}

/// Takes merged updates back out of the base weights.
public func unmergeLoRA(in model: Module) {
    for (_, lin) in loraModules(of: model) { lin.unmergeLoRA() }
}

/// Removes every adapter, leaving the base weights as they were before (merged updates undone).
public func removeLoRA(from model: Module) {
    for (_, lin) in loraModules(of: model) { lin.removeLoRA(merge: false) }
}

// MARK: - Prefix tuning

/// Prefix tuning (Li & Liang 2021; PEFT's prefix tuning without the projection): every attention
/// layer gets P trainable key and value vectors per key/value head, [kvHeads, P, headDim], placed
/// before the real keys and seen by every query (no RoPE is applied to them: they are learned as
/// they are used). As in PEFT, where the prefix is a key/value cache of P positions, the tokens
/// then sit at positions P, P+1, … (`TransformerLM.prefixLength`). Initialised N(0, std²) — PEFT's
/// `nn.Embedding` default is std 1. `PrefixAdapterFiles` reads and writes PEFT's format.
public enum PrefixTuning {
    /// The most prefix tokens per layer.
    public static let maxLength = 256

    /// Attaches prefixes of `length` tokens to every attention layer of `model`, freezes all other
    /// parameters, and returns the new parameters' names. Length 0 removes prefixes (the model
    /// is then unchanged).
    @discardableResult
    public static func apply(to model: Module, length: Int, std: Float = 1, seed: UInt64 = 0) throws -> [String] {
        guard length >= 0, length <= maxLength else {
            throw LoRAError.invalidOption("prefix length", "must be in 0...\(maxLength), found \(length)")
        }
        guard std.isFinite, std >= 0 else { throw LoRAError.invalidOption("prefix std", "must be ≥ 0, found \(std)") }
        let attentions = model.namedModules().compactMap { name, m in (m as? Attention).map { (name, $0) } }
        guard !attentions.isEmpty else { throw LoRAError.invalidOption("prefix length", "the model has no attention layers") }
        if length == 0 { remove(from: model); return [] }
        model.freeze()
        var rng = RandomGenerator(seed: seed)
        var names: [String] = []
        for (name, a) in attentions {
            a.prefixKeys = Parameter(.randomNormal([a.kvHeads, length, a.headDim], std: std, using: &rng))
            a.prefixValues = Parameter(.randomNormal([a.kvHeads, length, a.headDim], std: std, using: &rng))
            names += [name + ".prefix_keys", name + ".prefix_values"]
        }
        return names
    }

    /// Drops every prefix.
    public static func remove(from model: Module) {
        for (_, m) in model.namedModules() {
            if let a = m as? Attention { a.prefixKeys = nil; a.prefixValues = nil }
        }
    }

    /// Sets every layer's prefix keys and values [kvHeads, P, headDim] (attaching prefixes of
    /// that length first when the model has none); `keys.count` and `values.count` must equal the
    /// number of attention layers.
    public static func assign(keys: [Tensor], values: [Tensor], to model: Module) throws {
        let attentions = model.namedModules().compactMap { $0.module as? Attention }
        guard keys.count == attentions.count, values.count == attentions.count else {
            throw LoRAError.invalidOption("prefix", "\(keys.count) layers of prefixes for a model of \(attentions.count) attention layers")
        }
        guard keys.allSatisfy({ $0.rank == 3 && $0.shape[1] == keys[0].shape[1] }), (keys.first?.shape[1] ?? 0) <= maxLength else {
            throw LoRAError.invalidOption("prefix", "every layer needs a prefix of the same length, at most \(maxLength) tokens")
        }
        for (i, a) in attentions.enumerated() {
            let shape = [a.kvHeads, keys[i].shape.count == 3 ? keys[i].shape[1] : -1, a.headDim]
            guard keys[i].shape == shape, values[i].shape == shape else {
                throw LoRAError.invalidOption("prefix", "layer \(i): keys \(keys[i].shape) and values \(values[i].shape), expected [\(a.kvHeads), P, \(a.headDim)]")
            }
            a.prefixKeys = Parameter(keys[i])
            a.prefixValues = Parameter(values[i])
        }
    }

    /// Prefix parameters by dotted name.
    public static func stateDict(of model: Module) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, p) in model.namedParameters() where name.hasSuffix(".prefix_keys") || name.hasSuffix(".prefix_values") {
            out[name] = p.value.detached()
        }
        return out
    }
}
