import DistillTensor
import Foundation

/// PEFT adapter directories of either kind.
public enum AdapterFiles {
    /// The `peft_type` of the adapter in `directory` (LORA, PREFIX_TUNING, …).
    public static func peftType(_ directory: String) throws -> String {
        try configObject(directory).json["peft_type"] as? String ?? "LORA"
    }

    /// `adapter_config.json` of `directory` as a JSON object, with its URL.
    static func configObject(_ directory: String) throws -> (url: URL, json: [String: Any]) {
        let url = URL(fileURLWithPath: directory).appendingPathComponent(LoRAAdapterFiles.configFile)
        guard let data = try? Data(contentsOf: url) else { throw FileError(file: url.path, "cannot read the adapter config") }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FileError(file: url.path, "not a JSON object")
        }
        return (url, obj)
    }

    /// Writes an adapter directory (created if missing): `tensors` as `adapter_model.safetensors`
    /// and `config` (with `base_model_name_or_path` when given) as `adapter_config.json`.
    static func write(_ tensors: [String: Tensor], config: [String: Any], baseModel: String?, to directory: String) throws {
        let dir = URL(fileURLWithPath: directory)
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw FileError(file: directory, "cannot create the adapter directory: \(ioFailureReason(error))")
        }
        try SafetensorsWriter.write(tensors, to: dir.appendingPathComponent(LoRAAdapterFiles.weightsFile).path)
        var json = config
        if let baseModel { json["base_model_name_or_path"] = baseModel }
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        let url = dir.appendingPathComponent(LoRAAdapterFiles.configFile)
        do { try data.write(to: url, options: .atomic) } catch { throw FileError(file: url.path, "cannot write: \(ioFailureReason(error))") }
    }

    /// Applies the adapter in `directory` to `model`: a LoRA adapter is merged into the weights, a
    /// prefix is attached. Other kinds are refused by name.
    public static func apply(_ directory: String, to model: PretrainedModel) throws {
        switch try peftType(directory) {
        case "LORA": try LoRAAdapterFiles.merge(directory, into: model)
        case "PREFIX_TUNING": try PrefixAdapterFiles.load(into: model.lm, from: directory)
        case let other:
            throw FileError(file: URL(fileURLWithPath: directory).appendingPathComponent(LoRAAdapterFiles.configFile).path,
                            location: "peft_type", "\(other) adapters are not supported (LORA and PREFIX_TUNING are)")
        }
    }
}
