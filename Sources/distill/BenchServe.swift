import ArgumentParser
import DistillBench
import DistillModels
import DistillServer
import DistillTensor
import Foundation

extension Bench {
    struct ServeBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            abstract: "Serving throughput: concurrent vs sequential streaming chat requests to the OpenAI-compatible server.",
            discussion: """
            Starts the server in this process on 127.0.0.1 (a free port), sends --clients streaming \
            requests at once (they share generation batches), then the same requests one at a time, and \
            prints generated tokens/s for both, their ratio, errors, and latency and time-to-first-token \
            percentiles. Requests run to --max-tokens (ignore_eos) unless --stop-at-eos. With \
            --stagger-ms, the requests are then sent once more spread out in time (request i that many \
            milliseconds × i after the first), to a server with continuous batching and to one with static \
            batching, side by side.
            """)

        @Option(help: "A Hugging Face model directory or a .gguf file.") var model: String
        @Option(help: "Requests (and concurrent clients).") var clients = 32
        @Option(help: "Tokens each request generates.") var maxTokens = 32
        @Option(help: "The server's most sequences per batch (default: --clients).") var maxBatch: Int?
        @Option(help: "Milliseconds an idle server waits for more requests to batch with the first.") var batchWindowMs = 5.0
        @Option(help: "Sampling temperature (0: greedy).") var temperature = 0.0
        @Flag(help: "Let requests end at the end-of-sequence token.") var stopAtEos = false
        @Option(help: "Also send the requests this many milliseconds apart, to continuous and to static batching.") var staggerMs: Double?
        @Flag(help: "Print JSON (with every request's figures).") var json = false

        func validate() throws {
            guard clients >= 1 else { throw ValidationError("--clients must be at least 1") }
            guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
            if let b = maxBatch, b < 1 { throw ValidationError("--max-batch must be at least 1") }
            guard batchWindowMs >= 0 else { throw ValidationError("--batch-window-ms must be at least 0") }
            guard temperature >= 0 else { throw ValidationError("--temperature must be at least 0") }
            if let s = staggerMs, !(s >= 0) { throw ValidationError("--stagger-ms must be at least 0") }
        }

        func run() throws {
            let m = try loadModel(model)
            var o = ServerBenchmark.Options(clients: clients, maxTokens: maxTokens)
            o.maxBatch = maxBatch
            o.batchWindow = batchWindowMs / 1000
            o.temperature = temperature
            o.stopAtEOS = stopAtEos
            o.stagger = staggerMs.map { $0 / 1000 }
            let quiet = json
            if !quiet {
                print("model: \(model); threads: \(Threads.count); GEMM: \(Gemm.backend.rawValue); \(clients) clients × \(maxTokens) tokens")
                fflush(stdout)
            }
            let r: ServerBenchmark.Result
            do {
                r = try runBlocking {
                    try await ServerBenchmark.run(model: m, options: o) { line in
                        if !quiet { FileHandle.standardError.write((line + "\n").data(using: .utf8)!) }
                    }
                }
            } catch { throw CLIError("bench serve: \(error)") }
            if json { try printJSON(r) } else { Self.report(r) }
            if r.errors > 0 { throw CLIError("\(r.errors) request\(r.errors == 1 ? "" : "s") failed") }
        }

        static func report(_ r: ServerBenchmark.Result) {
            let ms = { (x: Double) in String(format: "%.0f ms", x * 1000) }
            print("served \(r.model) at \(r.endpoint), max batch \(r.maxBatch)")
            print(pad("", 22) + pad("tokens", 8) + pad("seconds", 9) + pad("tokens/s", 10) + pad("errors", 8) + pad("batches", 9)
                  + pad("latency p50", 13) + pad("p95", 10) + pad("TTFT p50", 10) + pad("p95", 10) + "tokens/client")
            for p in [r.concurrent, r.sequential] + (r.staggered ?? []) {
                print(pad(p.mode, 22) + pad("\(p.generatedTokens)", 8) + pad(String(format: "%.2f", p.seconds), 9)
                      + pad(f1(p.tokensPerSecond), 10) + pad("\(p.errors)", 8) + pad("\(p.serverBatches)", 9)
                      + pad(ms(p.latency.p50), 13) + pad(ms(p.latency.p95), 10)
                      + pad(ms(p.timeToFirstToken.p50), 10) + pad(ms(p.timeToFirstToken.p95), 10)
                      + (p.tokensPerClientMin == p.tokensPerClientMax ? "\(p.tokensPerClientMin)" : "\(p.tokensPerClientMin)–\(p.tokensPerClientMax)"))
                for e in p.errorMessages { print("  error: \(e)") }
            }
            print(String(format: "concurrent / sequential: %.2f× tokens/s", r.speedup))
            if let st = r.staggered, st.count == 2, let gap = r.staggerSeconds {
                let (c, s) = (st[0], st[1])
                print(String(format: "staggered every %.0f ms: continuous / static %.2f× tokens/s, TTFT p95 %@ vs %@; %d requests joined a running batch",
                             gap * 1000, c.tokensPerSecond / s.tokensPerSecond, ms(c.timeToFirstToken.p95), ms(s.timeToFirstToken.p95),
                             c.joinedRunning))
            }
        }
    }
}

extension Bench {
    struct SoakBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "soak",
            abstract: "Soak test of the OpenAI-compatible server: many clients, random hang-ups and malformed requests, memory watched.",
            discussion: """
            Starts the server in this process and keeps --clients clients sending requests for --seconds: \
            streaming chat requests read to the end or hung up on after a few events, non-streaming ones, \
            and malformed ones (bad JSON, wrong types, values out of range, an unknown model). Prints how \
            many were answered, hung up on, refused (4xx), failed and got a 5xx, and resident memory at the \
            start, its peak and at the end. Exits non-zero on any failure or 5xx.
            """)

        @Option(help: "A Hugging Face model directory or a .gguf file.") var model: String
        @Option(help: "Concurrent clients.") var clients = 64
        @Option(help: "How long, seconds.") var seconds = 300.0
        @Option(help: "Tokens each valid request asks for.") var maxTokens = 16
        @Option(help: "The server's most sequences per batch.") var maxBatch = 64
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            guard clients >= 1 else { throw ValidationError("--clients must be at least 1") }
            guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
            guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
            guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
        }

        func run() throws {
            let m = try loadModel(model)
            var o = ServerSoak.Options(clients: clients, seconds: seconds)
            o.maxTokens = maxTokens
            o.maxBatch = maxBatch
            let quiet = json
            let r: ServerSoak.Result
            do {
                r = try runBlocking {
                    try await ServerSoak.run(model: m, options: o) { line in
                        if !quiet { FileHandle.standardError.write((line + "\n").data(using: .utf8)!) }
                    }
                }
            } catch { throw CLIError("bench soak: \(error)") }
            if json {
                try printJSON(r)
            } else {
                print(String(format: "%d clients for %.0f s: %d answered (%d tokens), %d hung up on, %d malformed refused, %d failures, %d server errors",
                             r.clients, r.seconds, r.completed, r.generatedTokens, r.disconnected, r.refused, r.failures, r.serverErrors))
                print(String(format: "resident memory: %.0f MB after warm-up, peak %.0f MB, %.0f MB at the end; %d batches, %d requests joined running ones",
                             r.residentStartMB, r.residentMaxMB, r.residentEndMB, r.serverBatches, r.joinedRunning))
                for m in r.failureMessages { print("  failure: \(m)") }
            }
            if r.failures > 0 || r.serverErrors > 0 { throw CLIError("bench soak: \(r.failures) failures, \(r.serverErrors) server errors") }
        }
    }
}
