import DistillTensor

/// A trainable tensor owned by a module. Its `value` is a leaf that requires a gradient unless the
/// parameter is frozen.
public final class Parameter {
    private var stored: Tensor?
    /// Makes the values on first use (a weight kept quantized in memory until something needs it
    /// in Float32: training, saving, a layer without a quantized path).
    private var materialize: (() -> Tensor)?
    public private(set) var isFrozen: Bool
    public let shape: [Int]

    public init(_ value: Tensor, frozen: Bool = false) {
        self.isFrozen = frozen
        shape = value.shape
        stored = frozen ? value.detached() : value.requiringGrad()
    }

    /// The values; a lazily made parameter makes them now (see `assignLazily`).
    public var value: Tensor {
        if let v = stored { return v }
        let v = materialize!()
        precondition(v.shape == shape, "Parameter: lazily made values of shape \(v.shape) for \(shape)")
        stored = isFrozen ? v.detached() : v.requiringGrad()
        materialize = nil
        return stored!
    }

    /// Whether the values have not been made yet.
    public var isLazy: Bool { stored == nil }

    /// Replaces the values (optimizer step, checkpoint load); the shape must stay the same.
    public func assign(_ newValue: Tensor) {
        precondition(newValue.shape == shape,
                     "Parameter.assign: shape \(newValue.shape) differs from \(shape)")
        stored = isFrozen ? newValue.detached() : newValue.requiringGrad()
        materialize = nil
    }

    /// Drops the values: `make` gives them (of this shape) when first read.
    public func assignLazily(_ make: @escaping () -> Tensor) {
        stored = nil
        materialize = make
    }

    public func freeze() { isFrozen = true; if let v = stored { stored = v.detached() } }
    public func unfreeze() { isFrozen = false; if let v = stored { stored = v.requiringGrad() } }
}

/// Base class of layers and models: a tree of named parameters and submodules.
///
/// Children are found by reflection over stored properties of type `Parameter`, `Module`, their
/// optionals, and arrays of modules (named "0", "1", …). A property's key is its name in
/// snake_case (`selfAttn` → `self_attn`), so dotted paths equal Hugging Face checkpoint keys
/// (`model.layers.0.self_attn.q_proj.weight`). Override `keyOverrides` where a name differs.
open class Module {
    /// Whether the module is in training mode (dropout active). Set with `train(_:)`.
    public private(set) var isTraining = true

    public init() {}

    /// Property name → checkpoint key, for names that snake_case does not produce.
    open var keyOverrides: [String: String] { [:] }

    /// Direct children, in declaration order.
    public func children() -> [(key: String, child: Child)] {
        var out: [(String, Child)] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        var levels: [[(String, Child)]] = []
        while let m = mirror {
            var level: [(String, Child)] = []
            for case let (label?, value) in m.children {
                let name = label.hasPrefix("_") ? String(label.dropFirst()) : label
                let key = keyOverrides[name] ?? snakeCase(name)
                if let p = value as? Parameter { level.append((key, .parameter(p))) }
                else if let mod = value as? Module { level.append((key, .module(mod))) }
                else if let mods = value as? [Module] {
                    level.append((key, .list(mods)))
                }
            }
            levels.append(level)
            mirror = m.superclassMirror
        }
        for level in levels.reversed() { out += level }   // superclass properties first
        return out
    }

    public enum Child {
        case parameter(Parameter)
        case module(Module)
        case list([Module])
    }

    /// Every parameter with its dotted name, depth first in declaration order.
    public func namedParameters(prefix: String = "") -> [(name: String, parameter: Parameter)] {
        var out: [(String, Parameter)] = []
        let p = prefix.isEmpty ? "" : prefix + "."
        for (key, child) in children() {
            switch child {
            case .parameter(let param): out.append((p + key, param))
            case .module(let m): out += m.namedParameters(prefix: p + key)
            case .list(let ms):
                for (i, m) in ms.enumerated() { out += m.namedParameters(prefix: "\(p)\(key).\(i)") }
            }
        }
        // A parameter shared by two modules (tied weights) is listed once, under its first name.
        var seen = Set<ObjectIdentifier>()
        return out.filter { seen.insert(ObjectIdentifier($0.1)).inserted }
    }

    /// Every submodule (including self) with its dotted name.
    public func namedModules(prefix: String = "") -> [(name: String, module: Module)] {
        var out: [(String, Module)] = [(prefix, self)]
        let p = prefix.isEmpty ? "" : prefix + "."
        for (key, child) in children() {
            switch child {
            case .parameter: break
            case .module(let m): out += m.namedModules(prefix: p + key)
            case .list(let ms):
                for (i, m) in ms.enumerated() { out += m.namedModules(prefix: "\(p)\(key).\(i)") }
            }
        }
        return out
    }

    public var parameters: [Parameter] { namedParameters().map(\.parameter) }
    public var trainableParameters: [(name: String, parameter: Parameter)] {
        namedParameters().filter { !$0.parameter.isFrozen }
    }

    /// Number of scalar parameters (each shared tensor counted once).
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.shape.reduce(1, *) } }
    public var trainableParameterCount: Int { trainableParameters.reduce(0) { $0 + $1.parameter.shape.reduce(1, *) } }

    public func freeze() { parameters.forEach { $0.freeze() } }
    public func unfreeze() { parameters.forEach { $0.unfreeze() } }

    /// Sets training mode for this module and all submodules.
    public func train(_ on: Bool = true) {
        for (_, m) in namedModules() { m.isTraining = on }
    }

    /// Looks a parameter up by dotted name.
    public func parameter(named name: String) -> Parameter? {
        namedParameters().first { $0.name == name }?.parameter
    }

    /// Copies values from `tensors` by dotted name. Missing names or wrong shapes are errors;
    /// extra tensors are reported unless `strict` is false.
    public func load(_ tensors: [String: Tensor], strict: Bool = true) throws {
        let params = namedParameters()
        for (name, p) in params {
            guard let t = tensors[name] else { throw ModuleError.missingParameter(name) }
            guard t.shape == p.shape else { throw ModuleError.shapeMismatch(name: name, expected: p.shape, found: t.shape) }
            p.assign(t.detached())
        }
        if strict {
            let known = Set(params.map(\.name))
            if let extra = tensors.keys.sorted().first(where: { !known.contains($0) }) {
                throw ModuleError.unexpectedParameter(extra)
            }
        }
    }
}

public enum ModuleError: Error, Equatable, CustomStringConvertible {
    case missingParameter(String)
    case unexpectedParameter(String)
    case shapeMismatch(name: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case .missingParameter(let n): return "missing parameter '\(n)'"
        case .unexpectedParameter(let n): return "unexpected parameter '\(n)' (no such parameter in the model)"
        case let .shapeMismatch(n, e, f): return "parameter '\(n)': expected shape \(e), found \(f)"
        }
    }
}

/// `selfAttn` → `self_attn`, `qProj` → `q_proj`.
func snakeCase(_ s: String) -> String {
    var out = ""
    for ch in s {
        if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
    }
    return out
}

/// Gradients of a loss with respect to a model's trainable parameters, in `namedParameters` order.
public struct Gradients {
    public var names: [String]
    public var tensors: [Tensor]

    public init(names: [String], tensors: [Tensor]) {
        precondition(names.count == tensors.count, "Gradients: \(names.count) names for \(tensors.count) tensors")
        self.names = names
        self.tensors = tensors
    }

    public subscript(name: String) -> Tensor? {
        names.firstIndex(of: name).map { tensors[$0] }
    }
}

/// Evaluates `loss` on `model` and returns its value and the gradient for every trainable parameter.
public func valueAndGradient<M: Module>(_ model: M, _ loss: (M) -> Tensor) -> (value: Float, gradients: Gradients) {
    let params = model.trainableParameters
    let l = loss(model)
    precondition(l.count == 1, "valueAndGradient: loss must be a scalar, got shape \(l.shape)")
    let g = gradients(of: l, wrt: params.map { $0.parameter.value })
    return (l.item, Gradients(names: params.map(\.name), tensors: g))
}
