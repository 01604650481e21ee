import ArgumentParser
import DistillModels
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exports a model for deployment: a llama.cpp GGUF file (llama.cpp, Ollama, LM Studio), quantized or not, or an ONNX decoder with a key/value cache (onnxruntime, optimum).",
        discussion: """
        GGUF (--format gguf --out FILE.gguf): --type picks the file type as llama.cpp names them: \
        f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k. Vectors stay F32; the quantized types store \
        the output head in Q6_K, and q4_k_m / q5_k_m give some attn_v and ffn_down tensors Q6_K, as \
        llama.cpp's quantize does. Rows whose length is not a multiple of 256 fall back from K-quants \
        to Q5_0, Q5_1 or Q8_0.

        ONNX (--format onnx --out DIR): DIR/model.onnx (opset 17) in optimum's layout — inputs \
        input_ids, attention_mask, position_ids and past_key_values.N.key|value [batch, kv_heads, past, \
        head_dim]; outputs logits and present.N.key|value — with config.json, generation_config.json \
        and the tokenizer files beside it. --dtype f16 stores the matrices in float16 (half the size) \
        and computes in float32. Weights past 1.8 GB (or with --external-data) go to \
        DIR/model.onnx_data.

        Files are written beside their final names and renamed when complete.
        """)

    @Argument(help: "A Hugging Face model directory (e.g. `distill train` output) or a .gguf file.") var model: String
    @Option(help: "Output format: gguf or onnx.") var format = "gguf"
    @Option(help: "GGUF file type: \(GGUFExportType.allCases.map(\.rawValue).joined(separator: ", ")) [f16].") var type: String?
    @Option(help: "ONNX weight type: \(ONNXExportType.allCases.map(\.rawValue).joined(separator: ", ")) [f32].") var dtype: String?
    @Flag(help: "ONNX: weights in model.onnx_data even when they would fit in model.onnx.") var externalData = false
    @Option(help: "Output: a .gguf file, or a directory for ONNX.") var out: String
    @OptionGroup var lora: AdapterOption

    func validate() throws {
        switch format {
        case "gguf":
            guard GGUFExportType(rawValue: type ?? "f16") != nil else {
                throw ValidationError("--type must be one of \(GGUFExportType.allCases.map(\.rawValue).joined(separator: ", ")), got '\(type!)'")
            }
            guard dtype == nil, !externalData else { throw ValidationError("--dtype and --external-data are for --format onnx; GGUF takes --type") }
            guard out.lowercased().hasSuffix(".gguf") else { throw ValidationError("--out must name a .gguf file, got '\(out)'") }
        case "onnx":
            guard ONNXExportType(rawValue: dtype ?? "f32") != nil else {
                throw ValidationError("--dtype must be one of \(ONNXExportType.allCases.map(\.rawValue).joined(separator: ", ")), got '\(dtype!)'")
            }
            guard type == nil else { throw ValidationError("--type is for --format gguf; ONNX takes --dtype f32 or f16") }
            guard !out.lowercased().hasSuffix(".gguf"), !out.lowercased().hasSuffix(".onnx") else {
                throw ValidationError("--out names a directory for --format onnx (model.onnx is written inside it), got '\(out)'")
            }
        default:
            throw ValidationError("--format must be gguf or onnx, got '\(format)'")
        }
    }

    func run() throws {
        let m = try lora.load(model)
        let start = Date()
        func progress(_ i: Int, _ n: Int, _ name: String) {
            if i % 50 == 0 || i == n - 1 { FileHandle.standardError.write("tensor \(i + 1)/\(n): \(name)\n".data(using: .utf8)!) }
        }
        let kind: String
        var size = 0
        do {
            if format == "onnx" {
                kind = dtype ?? "f32"
                try m.exportONNX(to: out, dtype: ONNXExportType(rawValue: kind)!, externalDataThreshold: externalData ? 0 : nil,
                                 progress: progress)
                for name in ["model.onnx", "model.onnx_data"] {
                    size += (try? FileManager.default.attributesOfItem(atPath: out + "/" + name)[.size] as? Int) ?? 0
                }
            } else {
                kind = type ?? "f16"
                let notices = try m.exportGGUF(to: out, type: GGUFExportType(rawValue: kind)!, progress: progress)
                for n in notices { print("note: \(n)") }
                size = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
            }
        } catch { throw CLIError("\(error)") }
        print(String(format: "wrote %@ (%@, %@ %@, %.1f MB) in %.1f s", out, m.architecture.className, format, kind,
                     Double(size) / 1e6, Date().timeIntervalSince(start)))
    }
}
