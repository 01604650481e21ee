import ArgumentParser
import DistillModels
import Distillation
import Foundation

/// `--adapter DIR` for the commands that run a model: a LoRA adapter merged in after loading.
struct AdapterOption: ParsableArguments {
    @Option(help: "A LoRA adapter directory (adapter_config.json + adapter_model.safetensors, as `distill train` or PEFT writes them), merged into the model after loading.")
    var adapter: String?

    /// Loads the model and merges the adapter, if any.
    func load(_ path: String) throws -> PretrainedModel {
        let m = try loadModel(path)
        if let adapter {
            do { try LoRAAdapterFiles.merge(adapter, into: m) } catch { throw CLIError("\(adapter): \(error)") }
        }
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
        guard let stored = SafetensorsWriter.StoredType(rawValue: dtype.uppercased()) else {
            throw ValidationError("--dtype must be f32, f16 or bf16, got '\(dtype)'")
        }
        let m = try AdapterOption.parse(["--adapter", adapter]).load(base)
        do { try m.saveDirectory(out, dtype: stored) } catch { throw CLIError("\(error)") }
        print("wrote \(out): \(base) with \(adapter) merged (\(m.architecture.className), \(dtype))")
    }
}
