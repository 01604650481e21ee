import DistillNN
import DistillTensor
import Foundation

/// A decoder-only language model as users have it: a Hugging Face directory (config.json,
/// safetensors, tokenizer files) or a GGUF file — loaded into Distill's modules.
public final class PretrainedModel {
    public let architecture: Architecture
    /// config.json (for GGUF: built from the file's metadata).
    public let config: ModelConfig
    public let lm: TransformerLM
    /// Where it was loaded from.
    public let path: String
    /// generation_config.json, when present.
    public var generationConfig: [String: Any]

    public init(architecture: Architecture, config: ModelConfig, lm: TransformerLM, path: String,
                generationConfig: [String: Any] = [:]) {
        self.architecture = architecture
        self.config = config
        self.lm = lm
        self.path = path
        self.generationConfig = generationConfig
    }

    /// Loads a Hugging Face model directory (config.json + model.safetensors or sharded
    /// model-*.safetensors with model.safetensors.index.json).
    public static func loadDirectory(_ path: String) throws -> PretrainedModel {
        let dir = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FileError(file: path, "no such file or directory")
        }
        guard isDir.boolValue else { throw FileError(file: path, "expected a model directory or a .gguf file") }
        let config = try ModelConfig(contentsOf: dir.appendingPathComponent("config.json"))
        let arch = try Architecture.named(config.modelType, source: config.source)
        let decoder = try arch.decoderConfig(config)
        let lm = TransformerLM(decoder, initialize: false)
        try loadWeights(into: lm, from: try ShardedSafetensors(directory: path), tiedOutput: decoder.tieEmbeddings)
        var generation: [String: Any] = [:]
        let gen = dir.appendingPathComponent("generation_config.json")
        if let data = try? Data(contentsOf: gen) {
            guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw FileError(file: gen.path, "not a JSON object")
            }
            generation = obj
        }
        return PretrainedModel(architecture: arch, config: config, lm: lm, path: path, generationConfig: generation)
    }

    /// End-of-sequence ids: generation_config.json's, else config.json's.
    public var eosTokenIds: [Int] {
        let g = ModelConfig(json: generationConfig, source: "generation_config.json")
        if let ids = try? g.ints("eos_token_id"), !ids.isEmpty { return ids }
        return (try? config.ints("eos_token_id")) ?? []
    }

    /// Writes a Hugging Face directory that `transformers` loads: config.json (with
    /// `architectures` and `torch_dtype`), model.safetensors (sharded above `maxShardBytes`) and
    /// generation_config.json.
    public func saveDirectory(_ path: String, dtype: SafetensorsWriter.StoredType = .f32,
                              maxShardBytes: Int = 5_000_000_000) throws {
        let dir = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var cfg = config
        cfg.json["architectures"] = [architecture.className]
        cfg.json["model_type"] = architecture.modelType
        cfg.json["torch_dtype"] = ["f32": "float32", "f16": "float16", "bf16": "bfloat16"][dtype.rawValue] ?? "float32"
        try atomicWrite(try cfg.data(), to: dir.appendingPathComponent("config.json"))
        var tensors: [String: Tensor] = [:]
        for (name, p) in lm.namedParameters() { tensors[name] = p.value.detached() }
        _ = try SafetensorsWriter.writeSharded(tensors, to: path, dtype: dtype, maxShardSize: maxShardBytes)
        var gen = generationConfig
        if gen.isEmpty {
            gen["_from_model_config"] = true
            if let bos = try? config.int("bos_token_id") { gen["bos_token_id"] = bos }
            let eos = eosTokenIds
            if !eos.isEmpty { gen["eos_token_id"] = eos.count == 1 ? eos[0] as Any : eos as Any }
        }
        try atomicWrite(try JSONSerialization.data(withJSONObject: gen, options: [.prettyPrinted, .sortedKeys]),
                        to: dir.appendingPathComponent("generation_config.json"))
    }
}

/// Writes `data` to a temporary file beside `url`, then renames it into place.
func atomicWrite(_ data: Data, to url: URL) throws {
    do { try data.write(to: url, options: .atomic) } catch {
        throw FileError(file: url.path, "cannot write: \(error.localizedDescription)")
    }
}
