import ArgumentParser
import DistillModels
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exports a model for deployment: a llama.cpp GGUF file (llama.cpp, Ollama, LM Studio), quantized or not.",
        discussion: """
        --type picks the file type as llama.cpp names them: f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, \
        q6_k. Vectors stay F32; the quantized types store the output head in Q6_K, and q4_k_m / q5_k_m \
        give some attn_v and ffn_down tensors Q6_K, as llama.cpp's quantize does. Rows whose length is \
        not a multiple of 256 fall back from K-quants to Q5_0, Q5_1 or Q8_0. The file is written beside \
        its final name and renamed when complete.
        """)

    @Argument(help: "A Hugging Face model directory (e.g. `distill train` output) or a .gguf file.") var model: String
    @Option(help: "Output format: gguf.") var format = "gguf"
    @Option(help: "File type: \(GGUFExportType.allCases.map(\.rawValue).joined(separator: ", ")).") var type = "f16"
    @Option(help: "Output file.") var out: String
    @OptionGroup var lora: AdapterOption

    func validate() throws {
        guard format == "gguf" else { throw ValidationError("--format must be gguf, got '\(format)'") }
        guard GGUFExportType(rawValue: type) != nil else {
            throw ValidationError("--type must be one of \(GGUFExportType.allCases.map(\.rawValue).joined(separator: ", ")), got '\(type)'")
        }
        guard out.lowercased().hasSuffix(".gguf") else { throw ValidationError("--out must name a .gguf file, got '\(out)'") }
    }

    func run() throws {
        let m = try lora.load(model)
        let kind = GGUFExportType(rawValue: type)!
        let start = Date()
        do {
            let notices = try m.exportGGUF(to: out, type: kind) { i, n, name in
                if i % 50 == 0 || i == n - 1 { FileHandle.standardError.write("tensor \(i + 1)/\(n): \(name)\n".data(using: .utf8)!) }
            }
            for n in notices { print("note: \(n)") }
        } catch { throw CLIError("\(error)") }
        let size = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
        print(String(format: "wrote %@ (%@, %@, %.1f MB) in %.1f s", out, m.architecture.className, type,
                     Double(size) / 1e6, Date().timeIntervalSince(start)))
    }
}
