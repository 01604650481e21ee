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
    /// The tokenizer (tokenizer.json, or the GGUF's embedded one), when the model has one.
    public var tokenizer: Tokenizer?
    /// The model's chat template, when it has one.
    public var chatTemplate: ChatTemplate?

    public init(architecture: Architecture, config: ModelConfig, lm: TransformerLM, path: String,
                generationConfig: [String: Any] = [:], tokenizer: Tokenizer? = nil, chatTemplate: ChatTemplate? = nil) {
        self.architecture = architecture
        self.config = config
        self.lm = lm
        self.path = path
        self.generationConfig = generationConfig
        self.tokenizer = tokenizer
        self.chatTemplate = chatTemplate
    }

    /// Loads a Hugging Face directory or a `.gguf` file.
    public static func load(_ path: String) throws -> PretrainedModel {
        path.lowercased().hasSuffix(".gguf") ? try loadGGUF(path) : try loadDirectory(path)
    }

    /// Loads a GGUF file of any architecture in `Architecture.all`: weights dequantized to Float32 in Hugging Face layout,
    /// config from the metadata, the embedded tokenizer and chat template.
    public static func loadGGUF(_ path: String) throws -> PretrainedModel {
        guard FileManager.default.fileExists(atPath: path) else { throw FileError(file: path, "no such file") }
        let file = try GGUFFile(path: path)
        let config = ModelConfig(json: try file.huggingFaceConfigJSON(), source: path)
        let arch = try Architecture.named(config.modelType, source: path)
        let decoder = try arch.decoderConfig(config)
        let lm = TransformerLM.skeleton(decoder)
        let weights = try GGUFWeights(file)
        let fused = arch.fusedTensors(decoder)
        let lazy = try attachQuantizedWeights(lm, weights)
        try loadWeights(into: lm, from: fused.isEmpty ? weights : SplittingWeights(weights, fused: fused, layers: decoder.layers),
                        tiedOutput: decoder.tieEmbeddings, skipping: lazy)
        let tokenizer = try Tokenizer(gguf: file)
        let template = file.metadata["tokenizer.chat_template"] == nil ? nil : try ChatTemplate(gguf: file)
        var generation: [String: Any] = [:]
        if let bos = tokenizer.bosTokenId { generation["bos_token_id"] = bos }
        if !tokenizer.eosTokenIds.isEmpty { generation["eos_token_id"] = tokenizer.eosTokenIds }
        return PretrainedModel(architecture: arch, config: config, lm: lm, path: path, generationConfig: generation,
                               tokenizer: tokenizer, chatTemplate: template)
    }

    /// Keeps the file's quantized matrices (`QuantizedMatrix.Format`: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
    /// Q4_K, Q5_K, Q6_K) as the layers' weights, borrowed from the mapped file: products without gradients read the blocks, and the Float32 weight is made from the
    /// file only when something needs it (training, saving). Returns the names of the parameters
    /// left lazy.
    static func attachQuantizedWeights(_ lm: TransformerLM, _ weights: GGUFWeights) throws -> Set<String> {
        var lazy = Set<String>()
        for (name, module) in lm.namedModules() {
            let weightName = name + ".weight"
            let parameter: Parameter
            let q: QuantizedMatrix?
            if let linear = module as? Linear {
                q = try weights.quantizedMatrix(named: weightName)
                linear.quantizedWeight = q
                parameter = linear.weight
            } else if let embedding = module as? Embedding {
                q = try weights.quantizedMatrix(named: weightName)
                embedding.quantizedWeight = q
                parameter = embedding.weight
            } else {
                continue
            }
            guard let q else { continue }
            guard [q.rows, q.cols] == parameter.shape else {
                throw FileError(file: weights.sourceName, location: weightName,
                                "shape \([q.rows, q.cols]) does not match the config, which implies \(parameter.shape)")
            }
            parameter.assignLazily {
                do { return try weights.tensor(named: weightName) } catch { preconditionFailure("\(error)") }
            }
            lazy.insert(weightName)
        }
        return lazy
    }

    /// Makes every weight held as quantized blocks Float32 and drops the blocks: products then use
    /// the Float32 GEMM (as training needs; 4–8× the memory of the file).
    public func dequantizeWeights() {
        for (_, module) in lm.namedModules() {
            if let linear = module as? Linear, linear.quantizedWeight != nil {
                _ = linear.weight.value
                linear.quantizedWeight = nil
            } else if let embedding = module as? Embedding, embedding.quantizedWeight != nil {
                _ = embedding.weight.value
                embedding.quantizedWeight = nil
            }
        }
    }

    /// Renders `messages` with the model's chat template (BOS/EOS strings from the tokenizer).
    public func applyChatTemplate(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws -> String {
        guard let chatTemplate else { throw FileError(file: path, location: "chat_template", "the model has no chat template") }
        return try chatTemplate.render(messages: messages, addGenerationPrompt: addGenerationPrompt,
                                       bosToken: tokenizer?.bosToken, eosToken: tokenizer?.eosToken)
    }

    /// The tokenizer, or an error saying the model has none.
    public func requireTokenizer() throws -> Tokenizer {
        guard let tokenizer else { throw FileError(file: path, "the model has no tokenizer (tokenizer.json missing)") }
        return tokenizer
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
        let lm = TransformerLM.skeleton(decoder)
        let fused = arch.fusedTensors(decoder)
        let files = try ShardedSafetensors(directory: path)
        try loadWeights(into: lm, from: fused.isEmpty ? files : SplittingWeights(files, fused: fused, layers: decoder.layers),
                        tiedOutput: decoder.tieEmbeddings)
        var generation: [String: Any] = [:]
        let gen = dir.appendingPathComponent("generation_config.json")
        if let data = try? Data(contentsOf: gen) {
            guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw FileError(file: gen.path, "not a JSON object")
            }
            generation = obj
        }
        var tokenizer: Tokenizer? = nil
        var template: ChatTemplate? = nil
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("tokenizer.json").path) {
            let tok = try Tokenizer(directory: dir)
            tokenizer = tok
            if let source = tok.chatTemplate {
                template = try ChatTemplate(source: source, file: dir.appendingPathComponent("tokenizer_config.json").path)
            }
        }
        return PretrainedModel(architecture: arch, config: config, lm: lm, path: path, generationConfig: generation,
                               tokenizer: tokenizer, chatTemplate: template)
    }

    /// End-of-sequence ids: generation_config.json's, else config.json's, else the tokenizer's.
    public var eosTokenIds: [Int] {
        let g = ModelConfig(json: generationConfig, source: "generation_config.json")
        if let ids = try? g.ints("eos_token_id"), !ids.isEmpty { return ids }
        if let ids = try? config.ints("eos_token_id"), !ids.isEmpty { return ids }
        return tokenizer?.eosTokenIds ?? []
    }

    /// Writes a Hugging Face directory that `transformers` loads: config.json (with
    /// `architectures` and `torch_dtype`), model.safetensors (sharded above `maxShardBytes`),
    /// generation_config.json and the tokenizer files (see `saveTokenizerFiles`).
    public func saveDirectory(_ path: String, dtype: SafetensorsWriter.StoredType = .f32,
                              maxShardBytes: Int = 5_000_000_000) throws {
        let dir = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var tensors: [String: Tensor] = [:]
        for (name, p) in lm.namedParameters() { tensors[name] = p.value.detached() }
        tensors = FusedTensor.fuse(tensors, architecture.fusedTensors(lm.config), layers: lm.config.layers)
        _ = try SafetensorsWriter.writeSharded(tensors, to: path, dtype: dtype, maxShardSize: maxShardBytes)
        try saveSideFiles(to: dir, torchDtype: ["F32": "float32", "F16": "float16", "BF16": "bfloat16"][dtype.rawValue] ?? "float32")
    }

    /// The files of a Hugging Face directory other than the weights: config.json (with
    /// `architectures` and `torch_dtype`), generation_config.json and the tokenizer files (see
    /// `saveTokenizerFiles`). Also written beside an ONNX export, as optimum does.
    func saveSideFiles(to dir: URL, torchDtype: String) throws {
        var cfg = config
        cfg.json["architectures"] = [architecture.className]
        cfg.json["model_type"] = architecture.modelType
        cfg.json["torch_dtype"] = torchDtype
        try atomicWrite(try cfg.data(), to: dir.appendingPathComponent("config.json"))
        var gen = generationConfig
        if gen.isEmpty {
            gen["_from_model_config"] = true
            if let bos = try? config.int("bos_token_id") { gen["bos_token_id"] = bos }
            let eos = eosTokenIds
            if !eos.isEmpty { gen["eos_token_id"] = eos.count == 1 ? eos[0] as Any : eos as Any }
        }
        try atomicWrite(try JSONSerialization.data(withJSONObject: gen, options: [.prettyPrinted, .sortedKeys]),
                        to: dir.appendingPathComponent("generation_config.json"))
        try saveTokenizerFiles(to: dir)
    }
}

extension PretrainedModel {
    /// Tokenizer files known to transformers, copied from a source directory.
    static let sourceTokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                       "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja"]

    /// A model loaded from a directory with a tokenizer.json takes its tokenizer files along
    /// unchanged. Otherwise (a GGUF, or a model built in memory) a tokenizer is written from the
    /// `Tokenizer` (tokenizer.json, tokenizer_config.json with the chat template,
    /// special_tokens_map.json) — unless `dir` already holds a tokenizer.json that reads as the
    /// same tokenizer (same fingerprint, e.g. saving into the directory it came from); stale
    /// tokenizer files of another tokenizer are removed first.
    func saveTokenizerFiles(to dir: URL) throws {
        let fm = FileManager.default
        let src = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        let fromDirectory = fm.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
            && fm.fileExists(atPath: src.appendingPathComponent("tokenizer.json").path)
        if fromDirectory && src.standardizedFileURL.resolvingSymlinksInPath() != dir.standardizedFileURL.resolvingSymlinksInPath() {
            for name in PretrainedModel.sourceTokenizerFiles {
                let from = src.appendingPathComponent(name), to = dir.appendingPathComponent(name)
                guard fm.fileExists(atPath: from.path) else { continue }
                do {
                    try? fm.removeItem(at: to)
                    try fm.copyItem(at: from, to: to)
                } catch {
                    throw FileError(file: to.path, "cannot copy \(name) from \(path): \(ioFailureReason(error))")
                }
            }
            return
        }
        guard let tokenizer else { return }
        if fm.fileExists(atPath: dir.appendingPathComponent("tokenizer.json").path),
           let existing = try? Tokenizer(directory: dir), existing.fingerprint == tokenizer.fingerprint {
            return
        }
        for name in PretrainedModel.sourceTokenizerFiles {
            let url = dir.appendingPathComponent(name)
            if fm.fileExists(atPath: url.path) { try? fm.removeItem(at: url) }
        }
        let maxLength = try? config.int("max_position_embeddings")
        try tokenizer.save(to: dir, modelMaxLength: maxLength)
    }
}

/// Writes `data` to a temporary file beside `url`, then renames it into place.
func atomicWrite(_ data: Data, to url: URL) throws {
    do { try data.write(to: url, options: .atomic) } catch {
        throw FileError(file: url.path, "cannot write: \(ioFailureReason(error))")
    }
}
