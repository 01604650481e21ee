import DistillNN
import DistillTensor

/// A checkpoint tensor that holds several of the decoder's tensors stacked along its rows, per
/// layer (Phi-3's `self_attn.qkv_proj.weight` = q, k, v projections; `mlp.gate_up_proj.weight` =
/// gate, up). Names are relative to `model.layers.N.`.
public struct FusedTensor: Sendable {
    public var fused: String
    /// The decoder's tensors in row order, with their row counts.
    public var parts: [(name: String, rows: Int)]

    public init(_ fused: String, parts: [(name: String, rows: Int)]) {
        self.fused = fused
        self.parts = parts
    }

    /// Full names of every layer: part name → (fused name, first row, rows).
    static func locations(_ fused: [FusedTensor], layers: Int) -> [String: (fused: String, start: Int, rows: Int)] {
        var out: [String: (fused: String, start: Int, rows: Int)] = [:]
        for layer in 0..<layers {
            let prefix = "model.layers.\(layer)."
            for f in fused {
                var start = 0
                for p in f.parts {
                    out[prefix + p.name] = (prefix + f.fused, start, p.rows)
                    start += p.rows
                }
            }
        }
        return out
    }

    /// The decoder's tensors with each group of parts stacked into its fused checkpoint tensor
    /// (for saving in the checkpoint's layout).
    public static func fuse(_ tensors: [String: Tensor], _ fused: [FusedTensor], layers: Int) -> [String: Tensor] {
        guard !fused.isEmpty else { return tensors }
        var out = tensors
        for layer in 0..<layers {
            let prefix = "model.layers.\(layer)."
            for f in fused {
                let parts = f.parts.compactMap { tensors[prefix + $0.name] }
                guard parts.count == f.parts.count else { continue }
                for p in f.parts { out.removeValue(forKey: prefix + p.name) }
                out[prefix + f.fused] = withoutGradients { concat(parts, axis: 0) }
            }
        }
        return out
    }
}

/// A checkpoint seen with its fused tensors split into the decoder's (a `WeightSource` for
/// `loadWeights`); a fused tensor whose rows do not add up is an error naming it.
public struct SplittingWeights: WeightSource {
    public let base: WeightSource
    let locations: [String: (fused: String, start: Int, rows: Int)]

    public init(_ base: WeightSource, fused: [FusedTensor], layers: Int) {
        self.base = base
        locations = FusedTensor.locations(fused, layers: layers)
    }

    public var sourceName: String { base.sourceName }

    public var tensorNames: [String] {
        let fusedNames = Set(locations.values.map(\.fused))
        let parts = locations.filter { base.contains($0.value.fused) }.map(\.key)
        return (base.tensorNames.filter { !fusedNames.contains($0) } + parts).sorted()
    }

    public func contains(_ name: String) -> Bool {
        if let l = locations[name] { return base.contains(l.fused) }
        return base.contains(name)
    }

    public func tensor(named name: String) throws -> Tensor {
        guard let l = locations[name] else { return try base.tensor(named: name) }
        let t = try base.tensor(named: l.fused)
        let total = locations.values.filter { $0.fused == l.fused }.reduce(0) { $0 + $1.rows }
        guard t.rank >= 1, t.shape[0] == total else {
            throw FileError(file: base.sourceName, location: l.fused,
                            "shape \(t.shape) does not stack the \(total) rows the config implies")
        }
        return withoutGradients { t.slice(axis: 0, start: l.start, length: l.rows) }
    }
}
