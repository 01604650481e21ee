import ArgumentParser
import DistillModels
import Distillation
import Foundation

/// Loads a model and applies an adapter to it, if one is given (LoRA merged in, a prefix attached).
func loadModel(_ path: String, adapter: String?) throws -> PretrainedModel {
    let m = try loadModel(path)
    if let adapter {
        do { try AdapterFiles.apply(adapter, to: m) } catch { throw CLIError("\(adapter): \(error)") }
    }
    return m
}

/// `--adapter DIR` for the commands that run a model: a LoRA adapter merged in after loading.
struct AdapterOption: ParsableArguments {
    @Option(help: "An adapter directory (adapter_config.json + adapter_model.safetensors, as `distill train` or PEFT writes them): LoRA is merged into the model after loading, a tuned prefix (PREFIX_TUNING) attached.")
    var adapter: String?

    /// Loads the model and merges the adapter, if any.
    func load(_ path: String) throws -> PretrainedModel { try loadModel(path, adapter: adapter) }
}

/// `--dequantize` for the commands that run a model without training it.
struct DequantizeOption: ParsableArguments {
    @Flag(help: "Hold a GGUF's quantized weights in Float32 (4–8× the memory) instead of multiplying from their blocks (faster decoding for the K-quants, which have no vector kernels yet).")
    var dequantize = false

    /// `m`, with its weights made Float32 when asked.
    func apply(to m: PretrainedModel) -> PretrainedModel {
        if dequantize { m.dequantizeWeights() }
        return m
    }
}

struct LoRA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora", abstract: "LoRA adapters: merge one into its base model.",
        subcommands: [LoRAMerge.self])
}

struct LoRAMerge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Writes base + adapter as one Hugging Face directory (PEFT's merge_and_unload): W + scale·B·A for every adapted projection.")

    @Option(help: "The base model: a Hugging Face directory or a .gguf file.") var base: String
    @Option(help: "The adapter directory (adapter_config.json + adapter_model.safetensors).") var adapter: String
    @Option(help: "Output directory.") var out: String
    @Option(help: "Stored type: f32, f16 or bf16.") var dtype = "f32"

    func run() throws {
        let stored = try storedType(dtype)
        let m = try loadModel(base, adapter: adapter)
        do { try m.saveDirectory(out, dtype: stored) } catch { throw CLIError("\(error)") }
        print("wrote \(out): \(base) with \(adapter) merged (\(m.architecture.className), \(dtype))")
    }
}
