import DistillNN

/// What an architecture contributes: how its config maps onto the shared decoder, and any
/// checkpoint-layout quirks. One file per architecture registers one of these.
public struct Architecture: Sendable {
    /// `model_type` in config.json (e.g. "qwen2", "llama").
    public var modelType: String
    /// `architectures[0]` written when saving.
    public var className: String
    /// GGUF `general.architecture` values that map here.
    public var ggufNames: [String]
    /// Reads the config with the architecture's `transformers` defaults.
    public var decoderConfig: @Sendable (ModelConfig) throws -> TransformerConfig
    /// GGUF block tensors of this architecture beyond or instead of the shared Llama layout
    /// (`GGUFNames.shared`), as (llama.cpp name, Hugging Face name) without the `blk.N.` /
    /// `model.layers.N.` prefix; an entry replaces the shared one with either name.
    public var ggufBlockNames: [(gguf: String, hf: String)] = []
    /// Whether llama.cpp's converter permuted the Q/K rows for interleaved RoPE (`LlamaModel.permute`).
    public var ggufPermutesRotary = false
    /// `rope_theta` when a GGUF file does not say.
    public var ggufDefaultRopeTheta: Double = 10_000
    /// Whether the architecture reads `partial_rotary_factor`, which a GGUF file's
    /// `rope.dimension_count` below the head size becomes (other architectures refuse such files).
    public var ggufPartialRotary = false
    /// What llama.cpp's converter added to every `*norm.weight` (1 for Gemma, whose RMSNorm
    /// multiplies by 1 + w while ggml's multiplies by w); subtracted on load.
    public var ggufNormShift: Float = 0
    /// `config.json` keys beyond `GGUFModelConfig` that the architecture reads from a GGUF file's
    /// metadata or tensors, given the file, its `general.architecture` (the key prefix) and the
    /// shared config.
    public var ggufConfig: @Sendable (GGUFFile, String, GGUFModelConfig) throws -> [String: Any] = { _, _, _ in [:] }
    /// Writing GGUF: a model llama.cpp runs as Llama instead of under this architecture's own GGUF
    /// name (Q/K rows permuted, llama's tensor names): every Mistral (llama.cpp has no mistral
    /// layout), a Qwen2 whose heads × head_dim is not its hidden size (llama.cpp's qwen2 assumes
    /// it; Llama's layout has q/k/v biases too).
    public var ggufExportAsLlama: @Sendable (TransformerConfig) -> Bool = { _ in false }
    /// Writing GGUF: metadata beyond the shared keys (soft caps, windows, LongRoPE), given the
    /// decoder config, the GGUF architecture name (the key prefix) and the model path for errors;
    /// settings llama.cpp cannot express are errors.
    public var ggufExportMetadata: @Sendable (TransformerConfig, String, String) throws -> [(String, GGUFValue)] = { _, _, _ in [] }
    /// Checkpoint tensors that stack several of the decoder's (split on load, stacked on save).
    public var fusedTensors: @Sendable (TransformerConfig) -> [FusedTensor] = { _ in [] }

    /// Every architecture Distill can run.
    public static let all: [Architecture] = [.gemma, .gemma2, .gemma3Text, .llama, .mistral, .phi3, .qwen2, .qwen3]

    /// The architecture of a GGUF file's `general.architecture`, if supported.
    public static func gguf(_ name: String) -> Architecture? { all.first { $0.ggufNames.contains(name) } }

    /// The architecture for `modelType`, or an error listing the known ones.
    public static func named(_ modelType: String?, source: String) throws -> Architecture {
        guard let t = modelType else {
            throw FileError(file: source, location: "model_type", "missing; known types: \(all.map(\.modelType).joined(separator: ", "))")
        }
        guard let a = all.first(where: { $0.modelType == t }) else {
            throw FileError(file: source, location: "model_type",
                            "unknown model type '\(t)'; known types: \(all.map(\.modelType).joined(separator: ", "))")
        }
        return a
    }
}

/// Checks that heads divide the widths; shared by the architectures.
func validateAttention(_ c: TransformerConfig, source: String) throws {
    guard c.heads % c.kvHeads == 0 else {
        throw FileError(file: source, location: "num_key_value_heads",
                        "\(c.kvHeads) does not divide num_attention_heads = \(c.heads)")
    }
    guard c.explicitHeadDim != nil || c.hidden % c.heads == 0 else {
        throw FileError(file: source, location: "num_attention_heads", "\(c.heads) does not divide hidden_size = \(c.hidden)")
    }
    guard c.headDim % 2 == 0 else {
        throw FileError(file: source, location: "head_dim", "rotary embeddings need an even head dimension, found \(c.headDim)")
    }
}
