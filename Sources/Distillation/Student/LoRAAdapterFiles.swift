import DistillModels
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
        let dir = URL(fileURLWithPath: directory)
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw FileError(file: directory, "cannot create the adapter directory: \(error.localizedDescription)")
        }
        var tensors: [String: Tensor] = [:]
        for (k, v) in state { tensors[keyPrefix + k] = v }
        try SafetensorsWriter.write(tensors, to: dir.appendingPathComponent(weightsFile).path)
        var json: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": config.rank, "lora_alpha": Double(config.alpha),
            "lora_dropout": Double(config.dropout), "target_modules": config.targetModules, "bias": "none",
            "fan_in_fan_out": false, "inference_mode": true,
        ]
        if let baseModel { json["base_model_name_or_path"] = baseModel }
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        do { try data.write(to: dir.appendingPathComponent(configFile), options: .atomic) } catch {
            throw FileError(file: dir.appendingPathComponent(configFile).path, "cannot write: \(error.localizedDescription)")
        }
    }

    /// Reads `adapter_config.json`.
    public static func readConfig(_ directory: String) throws -> LoRAConfig {
        let url = URL(fileURLWithPath: directory).appendingPathComponent(configFile)
        guard let data = try? Data(contentsOf: url) else { throw FileError(file: url.path, "cannot read the adapter config") }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FileError(file: url.path, "not a JSON object")
        }
        let c = ModelConfig(json: obj, source: url.path)
        if let t = try c.string("peft_type"), t != "LORA" {
            throw FileError(file: url.path, location: "peft_type", "expected LORA, found \(t)")
        }
        let targets: [String]
        if let list = obj["target_modules"] as? [String] { targets = list }
        else if let one = obj["target_modules"] as? String { targets = [one] }
        else { throw FileError(file: url.path, location: "target_modules", "expected a list of module names") }
        let config = LoRAConfig(rank: try c.positive("r"), alpha: try c.float("lora_alpha") ?? 8,
                                dropout: try c.float("lora_dropout") ?? 0, targetModules: targets)
        do { try config.validate() } catch { throw FileError(file: url.path, "\(error)") }
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
