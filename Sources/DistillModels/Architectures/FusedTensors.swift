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

    /// Full names of every layer: part name → (fused name, its first row, its rows, the fused rows).
    static func locations(_ fused: [FusedTensor], layers: Int) -> [String: Location] {
        var out: [String: Location] = [:]
        for layer in 0..<layers {
            let prefix = "model.layers.\(layer)."
            for f in fused {
                let total = f.parts.reduce(0) { $0 + $1.rows }
                var start = 0
                for p in f.parts {
                    out[prefix + p.name] = Location(fused: prefix + f.fused, start: start, rows: p.rows, total: total)
                    start += p.rows
                }
            }
        }
        return out
    }

    struct Location {
        var fused: String
        var start, rows, total: Int
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
/// `loadWeights`); a fused tensor whose rows do not add up is an error naming it. The last fused
/// tensor read is kept, so its parts (asked for one after another) read it once.
public struct SplittingWeights: WeightSource {
    public let base: WeightSource
    let locations: [String: FusedTensor.Location]
    private final class LastRead {
        var name: String?
        var tensor: Tensor?
    }
    private let last = LastRead()

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
        let t: Tensor
        if last.name == l.fused, let cached = last.tensor {
            t = cached
        } else {
            t = try base.tensor(named: l.fused)
            (last.name, last.tensor) = (l.fused, t)
        }
        guard t.rank >= 1, t.shape[0] == l.total else {
            throw FileError(file: base.sourceName, location: l.fused,
                            "shape \(t.shape) does not stack the \(l.total) rows the config implies")
        }
        return withoutGradients { t.slice(axis: 0, start: l.start, length: l.rows) }
    }
}
