import ArgumentParser
import DistillModels
import DistillTensor
import Foundation

/// Loads MODEL (a Hugging Face directory or a .gguf file), turning errors into a clean message.
func loadModel(_ path: String) throws -> PretrainedModel {
    do { return try PretrainedModel.load(path) } catch { throw CLIError("\(error)") }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(data: try enc.encode(value), encoding: .utf8)!)
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Architecture, sizes, parameter count, stored types, tokenizer and chat template of a model.")

    @Argument(help: "A Hugging Face model directory or a .gguf file.") var model: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let m = try loadModel(model)
        let s = try m.summary()
        if json { try printJSON(s); return }
        print("""
        model:          \(s.path)
        architecture:   \(s.architecture) (\(m.architecture.className))
        layers:         \(s.layers)
        hidden:         \(s.hidden) (intermediate \(s.intermediate))
        heads:          \(s.heads) query, \(s.kvHeads) key/value, head dim \(s.headDim)
        variants:       \(s.attention.isEmpty ? "none (the Llama block)" : s.attention.joined(separator: ", "))
        vocabulary:     \(s.vocabSize)
        rope theta:     \(s.ropeTheta)
        tied embedding: \(s.tiedEmbeddings)
        parameters:     \(s.parameters) (\(String(format: "%.1f", Double(s.parameters) / 1e6))M)
        stored types:   \(s.storedTypes.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
        tokenizer:      \(s.tokenizer ?? "none")
        special tokens: bos \(s.bosToken ?? "none"), eos \(s.eosTokens.isEmpty ? "none" : s.eosTokens.joined(separator: " "))
        chat template:  \(s.chatTemplate.map { "\($0.count) characters" } ?? "none")
        """)
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Prints the token ids of a text as a JSON array.")

    @Option(help: "A Hugging Face model directory, a tokenizer directory or a .gguf file.") var model: String
    @Option(help: "The text to tokenize.") var text: String
    @Flag(help: "Do not add the special tokens (BOS/EOS) the tokenizer adds by default.") var noSpecialTokens = false

    func run() throws {
        let tok: Tokenizer
        do {
            if model.lowercased().hasSuffix(".gguf") { tok = try Tokenizer(gguf: try GGUFFile(path: model)) }
            else { tok = try Tokenizer(directory: URL(fileURLWithPath: model)) }
        } catch { throw CLIError("\(error)") }
        let ids = tok.encode(text, addSpecialTokens: !noSpecialTokens)
        print("[" + ids.map(String.init).joined(separator: ", ") + "]")
    }
}

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per-token log-probabilities of a text under a model, with mean NLL, perplexity and bits per byte.",
        discussion: """
            --jsonl scores every {"text": …} line of a file and prints the totals: held-out bits per \
            byte compare models whose tokenizers differ (a student distilled across tokenizers and its \
            teacher), where perplexity per token does not.
            """)

    @Option(help: "A Hugging Face model directory or a .gguf file.") var model: String
    @Option(help: "The text to score.") var text: String?
    @Option(help: "A UTF-8 file holding the text to score.") var textFile: String?
    @Option(help: "A JSONL file of {\"text\": …} lines, each scored on its own; prints the totals.") var jsonl: String?
    @Flag(help: "Print a JSON object with ids, token_logprobs, nll, perplexity, bytes and bits_per_byte (with --jsonl: the totals).") var json = false
    @OptionGroup var lora: AdapterOption
    @OptionGroup var weights: DequantizeOption

    func validate() throws {
        guard [text, textFile, jsonl].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --text, --text-file and --jsonl")
        }
    }

    /// Scores each line of --jsonl: texts, scored tokens, bytes, NLL in nats.
    func scoreLines(_ path: String, _ m: PretrainedModel) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("\(path): cannot read the file") }
        var texts = 0, tokens = 0, bytes = 0, nats = 0.0
        for (i, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], let text = obj["text"] as? String else {
                throw CLIError("\(path): line \(i + 1): expected a JSON object with a \"text\" string")
            }
            let s: TextScore
            do { s = try m.score(text: text) } catch { throw CLIError("\(path): line \(i + 1): \(error)") }
            texts += 1
            tokens += s.tokenLogprobs.count
            bytes += s.bytes ?? 0
            nats += s.nll * Double(s.tokenLogprobs.count)
        }
        guard tokens > 0 else { throw CLIError("\(path): no text to score") }
        let nll = nats / Double(tokens), bpb = bytes > 0 ? nats / Foundation.log(2) / Double(bytes) : Double.nan
        if json {
            try printJSON(["texts": Double(texts), "tokens": Double(tokens), "bytes": Double(bytes), "nll": nll,
                           "perplexity": Foundation.exp(nll), "bits_per_byte": bpb])
            return
        }
        print(String(format: "texts: %d   tokens scored: %d   bytes: %d   mean NLL: %.4f   perplexity: %.3f   bits per byte: %.4f",
                     texts, tokens, bytes, nll, Foundation.exp(nll), bpb))
    }

    func run() throws {
        if let jsonl {
            let m = weights.apply(to: try lora.load(model))
            return try scoreLines(jsonl, m)
        }
        let input: String
        if let textFile {
            guard let data = FileManager.default.contents(atPath: textFile) else { throw CLIError("\(textFile): cannot read the file") }
            guard let s = String(data: data, encoding: .utf8) else { throw CLIError("\(textFile): not valid UTF-8 text") }
            input = s
        } else { input = text! }
        let m = weights.apply(to: try lora.load(model))
        let s: TextScore
        do { s = try m.score(text: input) } catch { throw CLIError("\(error)") }
        if json { try printJSON(s); return }
        let tok = m.tokenizer!
        for (i, lp) in s.tokenLogprobs.enumerated() {
            let piece = tok.decode([s.ids[i + 1]]).debugDescription
            print(pad(piece, 24) + String(format: "%10.4f", lp))
        }
        print(String(format: "tokens scored: %d   mean NLL: %.4f   perplexity: %.3f", s.tokenLogprobs.count, s.nll, s.perplexity)
              + (s.bitsPerByte.map { String(format: "   bits per byte: %.4f", $0) } ?? ""))
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generates text from a prompt (temperature 0 is greedy).")

    @Option(help: "A Hugging Face model directory or a .gguf file.") var model: String
    @Option(help: "The prompt.") var prompt: String
    @Flag(help: "Wrap the prompt as a user turn in the model's chat template.") var chat = false
    @Option(help: "Most tokens to generate.") var maxTokens = 256
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0.7
    @Option(help: "Nucleus sampling mass.") var topP: Float = 1
    @Option(help: "Keep the k most likely tokens (0: off).") var topK = 0
    @Option(help: "Minimum probability relative to the top token (0: off).") var minP: Float = 0
    @Option(help: "Repetition penalty (1: off).") var repetitionPenalty: Float = 1
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Flag(help: "Fast decoding: a GGUF's quantized matrices multiply with 8-bit activations (integer dot products, as llama.cpp); logits change slightly.") var fast = false
    @Option(name: .short, help: "Number of samples.") var n = 1
    @Option(help: "Stop when this text appears (repeatable).") var stop: [String] = []
    @OptionGroup var lora: AdapterOption
    @OptionGroup var weights: DequantizeOption

    func run() throws {
        QuantizedMatrix.fastDecoding = fast
        let m = weights.apply(to: try lora.load(model))
        let sampling = SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP,
                                          repetitionPenalty: repetitionPenalty, seed: seed)
        let request = TextGenerationRequest(prompt: prompt, chat: chat,
                                            options: GenerationOptions(maxTokens: maxTokens, sampling: sampling, n: n, stopStrings: stop))
        do {
            if n == 1 && stop.isEmpty {
                // Stream the single sample as it is generated.
                _ = try m.generate(request) { _, piece in
                    FileHandle.standardOutput.write(piece.data(using: .utf8)!)
                }
                print("")
            } else if n == 1 {
                // With stop strings the text is printed once it is cut at the first of them.
                print(try m.generate(request)[0].text)
            } else {
                for (i, c) in try m.generate(request).enumerated() {
                    print("--- sample \(i + 1) (\(c.finishReason.rawValue)) ---")
                    print(c.text)
                }
            }
        } catch { throw CLIError("\(error)") }
    }
}

/// A failure to report to the user (printed as "Error: …", exit status 1).
/// `--dtype` of the commands that write safetensors.
func storedType(_ dtype: String) throws -> SafetensorsWriter.StoredType {
    guard let stored = SafetensorsWriter.StoredType(rawValue: dtype.uppercased()) else {
        throw ValidationError("--dtype must be f32, f16 or bf16, got '\(dtype)'")
    }
    return stored
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Writes a model as a Hugging Face directory (config.json, safetensors, generation_config.json; tokenizer.json, tokenizer_config.json — copied from a directory, written from a GGUF).")

    @Argument(help: "A Hugging Face model directory or a .gguf file.") var model: String
    @Option(help: "Output directory.") var out: String
    @Option(help: "Stored type: f32, f16 or bf16.") var dtype = "f32"

    func run() throws {
        let stored = try storedType(dtype)
        let m = try loadModel(model)
        do { try m.saveDirectory(out, dtype: stored) } catch { throw CLIError("\(error)") }
        print("wrote \(out) (\(m.architecture.className), \(m.lm.parameterCount) parameters, \(dtype))")
    }
}
