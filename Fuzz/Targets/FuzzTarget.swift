import DistillModels
import DistillServer
import Distillation
import Foundation

/// The parsers of files and requests that users (or anyone on the network) hand to Distill, each
/// as a function of arbitrary bytes. A parser may throw on bad input, never crash, hang or
/// allocate without bound; `Fuzz/Driver` runs these under libFuzzer, and the DistillFuzzTests
/// replay the committed corpora (`Fuzz/Corpora/<target>/`).
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A .safetensors file: header, then every tensor read.
    case safetensors
    /// A .gguf file: header, metadata, tensor infos, every tensor read, the tokenizer it carries.
    case gguf
    /// tokenizer.json contents, then an encode and decode round.
    case tokenizer
    /// A Jinja chat template, then a render of a short conversation.
    case jinja
    /// A YAML training recipe.
    case yaml
    /// A JSONL data file (text, messages, sources).
    case jsonl
    /// A request body for /v1/chat/completions and /v1/completions.
    case request

    /// Runs the parser on `data`; thrown errors are the expected outcome for bad input.
    public func run(_ data: Data) {
        switch self {
        case .safetensors:
            withFile(data) { path in
                guard let f = try? SafetensorsFile(path: path) else { return }
                for name in f.tensorNames { _ = try? f.tensor(named: name) }
            }
        case .gguf:
            withFile(data) { path in
                guard let f = try? GGUFFile(path: path) else { return }
                for name in f.tensorNames { _ = try? f.tensor(named: name) }
                if let t = try? Tokenizer(gguf: f) { _ = t.decode(t.encode("Hello, world! 12 + 30 = 42")) }
            }
        case .tokenizer:
            guard let t = try? Tokenizer(tokenizerJSONData: data) else { return }
            _ = t.decode(t.encode("Hello, world! <|im_start|>user 12 + 30 = 42 ünïcödé 你好"))
        case .jinja:
            guard let template = try? ChatTemplate(source: String(decoding: data, as: UTF8.self)) else { return }
            let messages = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "What is 2 + 3?"),
                            ChatMessage(role: "assistant", content: "<think>\nadd\n</think>\n\n5"), ChatMessage(role: "user", content: "And 4 + 4?")]
            _ = try? template.render(messages: messages, addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
        case .yaml:
            _ = try? Recipe.parse(yaml: String(decoding: data, as: UTF8.self), file: "fuzz.yaml")
        case .jsonl:
            _ = try? TextDataFile(data: data, path: "fuzz.jsonl")
        case .request:
            let bytes = [UInt8](data)
            _ = try? OpenAIRequestParser.checkChat(bytes)
            _ = try? OpenAIRequestParser.checkCompletion(bytes)
        }
    }

    /// The file parsers map files: the input is written to a scratch file of this process first.
    private func withFile(_ data: Data, _ body: (String) -> Void) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("distill-fuzz-\(getpid()).\(rawValue)").path
        guard FileManager.default.createFile(atPath: path, contents: data) else { return }
        body(path)
    }
}
