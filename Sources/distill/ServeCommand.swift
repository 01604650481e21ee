import ArgumentParser
import DistillModels
import DistillTensor
import DistillServer
import Foundation

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serves a model over an OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions, /v1/completions).",
        discussion: """
        Concurrent requests are generated together in batches of up to --max-batch sequences; a \
        request arriving while a batch runs joins it at its next decoding step (--batching continuous). \
        Stop with Ctrl-C (SIGINT) or SIGTERM: requests in flight finish first.

        Example:
          distill serve --model SmolLM2-135M-Instruct.Q4_1.gguf --port 8000
          curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
            -d '{"messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 32}'
        """)

    @Option(help: "A Hugging Face model directory or a .gguf file.") var model: String?
    @Option(help: "Serve DIR/current (a symbolic link to a model version, or a file naming one) and swap to the version it points to whenever it changes, without failing requests in flight.")
    var watch: String?
    @Option(help: "Seconds between checks of --watch DIR/current.") var watchInterval = 1.0
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port).") var port = 8000
    @Option(help: "The model name clients use and /v1/models lists (default: the file or directory name).") var modelName: String?
    @Option(help: "Most sequences (prompts × n) generated in one batch.") var maxBatch = 16
    @Flag(help: "Fast decoding: a GGUF's quantized matrices multiply with 8-bit activations (integer dot products, as llama.cpp); logits change slightly.") var fast = false
    @Option(help: "Milliseconds an idle server waits for more requests to batch with the first.") var batchWindowMs = 5.0
    @Option(help: "continuous: a request joins the running batch at its next step; static: it waits until the whole batch has finished.")
    var batching: BatchingMode = .continuous
    @OptionGroup var lora: AdapterOption
    @OptionGroup var weights: DequantizeOption

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0…65535, got \(port)") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1, got \(maxBatch)") }
        guard batchWindowMs >= 0 else { throw ValidationError("--batch-window-ms must be at least 0") }
        guard (model == nil) != (watch == nil) else { throw ValidationError("give exactly one of --model and --watch") }
        guard watchInterval > 0 else { throw ValidationError("--watch-interval must be positive") }
    }

    func run() throws {
        QuantizedMatrix.fastDecoding = fast
        let (lora, weights) = (self.lora, self.weights)
        let watcher = watch.map { dir in
            ModelDirectoryWatcher(directory: URL(fileURLWithPath: dir)) { path in weights.apply(to: try lora.load(path)) }
        }
        let m: PretrainedModel
        if let watcher {
            do { m = try watcher.loadCurrent() } catch { throw CLIError("\(error)") }
        } else {
            m = weights.apply(to: try lora.load(model!))
        }
        let server: OpenAIServer
        do {
            server = try OpenAIServer(model: m, modelName: modelName ?? watch.map { OpenAIServer.defaultName($0) }, maxBatch: maxBatch, batchWindow: batchWindowMs / 1000,
                                  batching: batching)
        } catch { throw CLIError("\(error)") }
        let host = self.host
        let chat = m.chatTemplate == nil ? " (no chat template: /v1/completions only)" : ""
        do {
            let interval = watchInterval
            try runBlocking {
                let watching = Task {
                    guard let watcher else { return }
                    await watcher.watch(server, interval: interval) { event in
                        switch event {
                        case .swapped(let version): print("Now serving \(version)")
                        case .failed(let version, let reason): print("Not serving \(version): \(reason); still serving the previous version")
                        }
                        fflush(stdout)
                    }
                }
                defer { watching.cancel() }
                try await server.run(host: host, port: port) { bound in
                    let shown = host.contains(":") ? "[\(host)]" : host
                    print("Serving \(server.modelName)\(chat) at http://\(shown):\(bound)/v1" + (watcher.map { " (watching \($0.directory.path)/current)" } ?? ""))
                    fflush(stdout)
                }
            }
        } catch { throw CLIError("cannot serve on \(host):\(port): \(error)") }
    }
}

extension BatchingMode: ExpressibleByArgument {}
