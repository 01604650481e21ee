import DistillNN
import DistillTensor

/// A set of named tensors on disk (safetensors shards, a GGUF file).
public protocol WeightSource {
    /// The file or directory, for messages.
    var sourceName: String { get }
    var tensorNames: [String] { get }
    func contains(_ name: String) -> Bool
    /// The tensor in Hugging Face layout, as Float32.
    func tensor(named name: String) throws -> Tensor
}

extension ShardedSafetensors: WeightSource {
    public var sourceName: String { directory }
}

extension GGUFWeights: WeightSource {}

/// Fills every parameter of `model` from `source` by its dotted name. A missing tensor or a shape
/// that differs from the config is an error naming the tensor; so is a tensor the model does not
/// have (a config that does not match its checkpoint), except buffers `transformers` also ignores.
/// Parameters named in `skipping` are left as they are (already set, e.g. lazily from quantized
/// blocks) but must still be in the checkpoint.
public func loadWeights(into model: Module, from source: WeightSource, tiedOutput: Bool, skipping: Set<String> = []) throws {
    let params = model.namedParameters()
    for (name, p) in params {
        if skipping.contains(name) {
            guard source.contains(name) else {
                throw FileError(file: source.sourceName, location: name, "tensor missing from the checkpoint")
            }
            continue
        }
        guard source.contains(name) else {
            throw FileError(file: source.sourceName, location: name, "tensor missing from the checkpoint")
        }
        let t = try source.tensor(named: name)
        guard t.shape == p.shape else {
            throw FileError(file: source.sourceName, location: name,
                            "shape \(t.shape) does not match the config, which implies \(p.shape)")
        }
        p.assign(t)
    }
    let known = Set(params.map(\.name))
    let ignorable = { (n: String) in n.hasSuffix(".rotary_emb.inv_freq") || (tiedOutput && n == "lm_head.weight") }
    if let extra = source.tensorNames.sorted().first(where: { !known.contains($0) && !ignorable($0) }) {
        throw FileError(file: source.sourceName, location: extra,
                        "the checkpoint has a tensor the model does not (does config.json match the weights?)")
    }
}
