import DistillNN
import DistillTensor
import Foundation

/// Prefix-tuning adapters on disk in PEFT's layout (`PrefixTuningConfig` without the projection):
/// `adapter_config.json` (peft_type PREFIX_TUNING, num_virtual_tokens P, num_layers L, token_dim,
/// num_attention_heads) and `adapter_model.safetensors` holding `prompt_embeddings` [P, L·2·token_dim].
/// PEFT views each row as [L·2, heads, token_dim / heads] — layer l's keys at 2l, values at 2l + 1 —
/// with `heads` the model's key/value heads (PEFT sizes token_dim by them for grouped-query models).
public enum PrefixAdapterFiles {
    static let weightName = "prompt_embeddings"

    /// Writes the prefixes of `model` to `directory`.
    public static func save(_ model: TransformerLM, to directory: String, baseModel: String? = nil) throws {
        let attentions = model.model.layers.map(\.selfAttn)
        guard let first = attentions.first, first.prefixKeys != nil else {
            throw LoRAError.invalidOption("prefix", "the model has no prefix to save")
        }
        let p = model.prefixLength, h = first.kvHeads, d = first.headDim, tokenDim = h * d, l = attentions.count
        var rows = [Float](repeating: 0, count: p * l * 2 * tokenDim)
        for (li, a) in attentions.enumerated() {
            for (kv, param) in [a.prefixKeys!, a.prefixValues!].enumerated() {
                let v = param.value.scalars                                          // [h, P, d]
                for t in 0..<p {
                    for hi in 0..<h {
                        for di in 0..<d { rows[t * l * 2 * tokenDim + ((li * 2 + kv) * h + hi) * d + di] = v[(hi * p + t) * d + di] }
                    }
                }
            }
        }
        try AdapterFiles.write([weightName: Tensor(rows, shape: [p, l * 2 * tokenDim])], config: [
            "peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": p, "num_layers": l, "token_dim": tokenDim,
            "num_attention_heads": h, "encoder_hidden_size": tokenDim, "num_transformer_submodules": 1, "prefix_projection": false,
            "inference_mode": true,
        ], baseModel: baseModel, to: directory)
    }

    /// Attaches the prefixes in `directory` to `model`. Returns their length P.
    @discardableResult
    public static func load(into model: TransformerLM, from directory: String) throws -> Int {
        let (url, obj) = try AdapterFiles.configObject(directory)
        let c = ModelConfig(json: obj, source: url.path)
        if let t = try c.string("peft_type"), t != "PREFIX_TUNING" {
            throw FileError(file: url.path, location: "peft_type", "expected PREFIX_TUNING, found \(t)")
        }
        if try c.bool("prefix_projection") == true {
            throw FileError(file: url.path, location: "prefix_projection", "prefixes made through a projection MLP are not supported")
        }
        let attentions = model.model.layers.map(\.selfAttn)
        let p = try c.positive("num_virtual_tokens"), l = try c.positive("num_layers"), tokenDim = try c.positive("token_dim")
        let h = attentions[0].kvHeads, d = attentions[0].headDim
        guard l == attentions.count else {
            throw FileError(file: url.path, location: "num_layers", "\(l), but the model has \(attentions.count) layers")
        }
        guard tokenDim == h * d else {
            throw FileError(file: url.path, location: "token_dim", "\(tokenDim), but the model's key/value heads × head size is \(h) × \(d) = \(h * d)")
        }
        let path = URL(fileURLWithPath: directory).appendingPathComponent(LoRAAdapterFiles.weightsFile).path
        let file = try SafetensorsFile(path: path)
        let w = try file.tensor(named: weightName)
        guard w.shape == [p, l * 2 * tokenDim] else {
            throw FileError(file: path, location: weightName, "shape \(w.shape), expected [\(p), \(l * 2 * tokenDim)]")
        }
        let rows = w.scalars
        var keys: [Tensor] = [], values: [Tensor] = []
        for li in 0..<l {
            for kv in 0..<2 {
                var v = [Float](repeating: 0, count: h * p * d)
                for t in 0..<p {
                    for hi in 0..<h {
                        for di in 0..<d { v[(hi * p + t) * d + di] = rows[t * l * 2 * tokenDim + ((li * 2 + kv) * h + hi) * d + di] }
                    }
                }
                if kv == 0 { keys.append(Tensor(v, shape: [h, p, d])) } else { values.append(Tensor(v, shape: [h, p, d])) }
            }
        }
        do { try PrefixTuning.assign(keys: keys, values: values, to: model) } catch { throw FileError(file: path, "\(error)") }
        return p
    }
}
