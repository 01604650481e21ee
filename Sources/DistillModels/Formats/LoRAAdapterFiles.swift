import DistillNN
import DistillTensor
import Foundation

/// LoRA adapters on disk in PEFT's layout: `adapter_config.json` (peft_type LORA, r, lora_alpha,
/// lora_dropout, target_modules) and `adapter_model.safetensors` holding only the adapter weights,
/// keyed `base_model.model.<module>.lora_A.weight` / `.lora_B.weight` as PEFT saves them.
public enum LoRAAdapterFiles {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"
    static let keyPrefix = "base_model.model."

    /// Writes the adapters of `model` (attached with `config`) to `directory`.
    public static func save(_ model: Module, config: LoRAConfig, to directory: String, baseModel: String? = nil) throws {
        let state = loraStateDict(of: model)
        guard !state.isEmpty else { throw LoRAError.invalidOption("adapters", "the model has no LoRA adapters to save") }
        var tensors: [String: Tensor] = [:]
        for (k, v) in state { tensors[keyPrefix + k] = v }
        try AdapterFiles.write(tensors, config: [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": config.rank, "lora_alpha": Double(config.alpha),
            "lora_dropout": Double(config.dropout), "target_modules": config.targetModules, "bias": "none",
            "fan_in_fan_out": false, "inference_mode": true, "use_rslora": config.useRSLoRA == true, "use_dora": false,
        ], baseModel: baseModel, to: directory)
    }

    /// Reads `adapter_config.json`.
    public static func readConfig(_ directory: String) throws -> LoRAConfig {
        let (url, obj) = try AdapterFiles.configObject(directory)
        let c = ModelConfig(json: obj, source: url.path)
        if let t = try c.string("peft_type"), t != "LORA" {
            throw FileError(file: url.path, location: "peft_type", "expected LORA, found \(t)")
        }
        let targets: [String]
        if let list = obj["target_modules"] as? [String] { targets = list }
        else if let one = obj["target_modules"] as? String { targets = [one] }
        else { throw FileError(file: url.path, location: "target_modules", "expected a list of module names") }
        // What PEFT can write that changes the arithmetic Distill does not do is refused by name.
        try c.refuse("use_dora", "DoRA adapters (use_dora) are not supported")
        try c.refuse("fan_in_fan_out", "fan_in_fan_out adapters (Conv1D layers) are not supported")
        for key in ["rank_pattern", "alpha_pattern"] {
            if let p = obj[key] as? [String: Any], !p.isEmpty {
                throw FileError(file: url.path, location: key, "per-module ranks or alphas are not supported")
            }
        }
        for key in ["modules_to_save", "layers_to_transform", "layer_replication"] {
            if let v = obj[key], !(v is NSNull) {
                throw FileError(file: url.path, location: key, "is set (\(v)); Distill reads adapters without it")
            }
        }
        if let bias = try c.string("bias"), bias != "none" {
            throw FileError(file: url.path, location: "bias", "expected none (bias adapters are not supported), found \(bias)")
        }
        let config = LoRAConfig(rank: try c.positive("r"), alpha: try c.float("lora_alpha") ?? 8,
                                dropout: try c.float("lora_dropout") ?? 0, targetModules: targets,
                                useRSLoRA: try c.bool("use_rslora") ?? false)
        do { try config.validate() } catch { throw FileError(file: url.path, "\(error)") }
        return config
    }

    /// Loads the adapter in `directory` onto `model` and merges it into the base weights
    /// (PEFT's `merge_and_unload`): the model then runs as base + adapter at the base's speed.
    /// Returns the adapter's config.
    @discardableResult
    public static func merge(_ directory: String, into model: PretrainedModel) throws -> LoRAConfig {
        guard loraModules(of: model.lm).isEmpty else {
            throw LoRAError.invalidOption("adapter", "the model already has adapters attached")
        }
        let config = try load(into: model.lm, from: directory)
        mergeLoRA(in: model.lm, unload: true)
        model.lm.unfreeze()
        return config
    }

    /// Attaches adapters to `model` as the directory's config says (unless already attached) and
    /// loads their weights. Returns the config.
    @discardableResult
    public static func load(into model: Module, from directory: String) throws -> LoRAConfig {
        let config = try readConfig(directory)
        if loraModules(of: model).isEmpty { try applyLoRA(to: model, config: config) }
        let path = URL(fileURLWithPath: directory).appendingPathComponent(weightsFile).path
        let file = try SafetensorsFile(path: path)
        var tensors: [String: Tensor] = [:]
        for name in file.tensorNames {
            let key = name.hasPrefix(keyPrefix) ? String(name.dropFirst(keyPrefix.count)) : name
            tensors[key] = try file.tensor(named: name).detached()
        }
        do { try loadLoRAStateDict(tensors, into: model) } catch { throw FileError(file: path, "\(error)") }
        return config
    }
}
