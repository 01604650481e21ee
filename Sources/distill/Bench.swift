import ArgumentParser
import Distillation
import DistillBench
import DistillEval
import DistillModels
import DistillNN
import DistillTensor
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (speed is measured here, never by tests).",
        subcommands: [Ops.self, TrainBench.self, GenerateBench.self, KD.self, LossMemory.self, ServeBench.self, SoakBench.self, AllReduceBench.self])
}

extension Bench {
    struct TrainBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "train",
            abstract: "The reference KD and SFT training steps: step time, tokens/s, GFLOP/s and share of the GEMM peak; --compare runs scripts/bench_pytorch.py side by side.")

        enum PresetArgument: String, ExpressibleByArgument { case kdReference = "kd-reference", sftReference = "sft-reference" }

        @Option(help: "kd-reference | sft-reference.") var preset: PresetArgument
        @Option(help: "Timed steps (after one warm-up step); the median is reported.") var steps = 5
        @Flag(help: "Also run the PyTorch script (python3 scripts/bench_pytorch.py) and print the ratio.") var compare = false
        @Option(help: "kd-reference: the teacher's matrices in f32 or bf16 (half the memory; multiplied in bfloat16 pairs where the CPU has AVX512_BF16, else in Float32); --compare runs PyTorch's teacher in the same dtype.") var teacherDtype = "f32"
        @Option(help: "The Python interpreter for --compare.") var python = "python3"
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
            guard teacherDtype == "f32" || teacherDtype == "bf16" else { throw ValidationError("--teacher-dtype must be f32 or bf16, got '\(teacherDtype)'") }
            let p: TrainBenchmark.Preset = preset == .kdReference ? .kdReference : .sftReference
            var result: TrainBenchmark.Result?
            try inProcessGroup { group in
                if group != nil && compare { throw CLIError("--compare runs PyTorch in one process: leave it out under mpirun") }
                let main = group?.isMain ?? true
                result = try TrainBenchmark.run(p, steps: steps, teacherBFloat16: teacherDtype == "bf16", processGroup: group) { i, s in
                    if !json && main { FileHandle.standardError.write(String(format: "step %d: %.3f s\n", i, s).data(using: .utf8)!) }
                }
                if !main { result = nil }
            }
            guard let r = result else { return }
            var torch: [String: Any]?
            if compare {
                torch = try runPyTorch(preset.rawValue, steps: steps, threads: r.threads, teacherDtype: p == .kdReference ? teacherDtype : nil)
            }
            if json {
                var obj: [String: Any] = ["distill": try JSONSerialization.jsonObject(with: try JSONEncoder().encode(r))]
                if let torch { obj["pytorch"] = torch }
                print(String(data: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .prettyPrinted]), encoding: .utf8)!)
                return
            }
            print(String(format: "%@%@: %.3f s/step, %.0f tokens/s, %.1f GFLOP/step, %.1f GFLOP/s = %.0f%% of the measured GEMM peak %.1f GFLOP/s (%d threads%@), peak memory %.0f MB",
                         r.preset, p == .kdReference ? " (teacher \(teacherDtype))" : "", r.stepSeconds, r.tokensPerSecond, r.gflopsPerStep, r.achievedGflops, 100 * r.shareOfPeak,
                         r.gemmPeakGflops, r.threads, r.processes > 1 ? " × \(r.processes) processes" : "",
                         Double(r.peakResidentBytes) / 1_048_576))
            if let ps = r.productSeconds, let pg = r.productGflops {
                print(String(format: "  Float32 matrix products outside attention: %.3f s/step (%.0f%% of the step) at %.1f GFLOP/s = %.0f%% of the peak; the rest of the step: %.3f s",
                             ps, 100 * ps / r.stepSeconds, pg, 100 * pg / r.gemmPeakGflops, r.stepSeconds - ps))
            }
            if let torch, let tps = torch["tokens_per_second"] as? Double, let secs = torch["step_seconds"] as? Double {
                let mem = (torch["peak_resident_bytes"] as? Double).map { String(format: ", peak memory %.0f MB", $0 / 1_048_576) } ?? ""
                let best = (torch["best"] as? String).map { ", fastest of its variants: \($0)" } ?? ""
                let dtype = (torch["teacher_dtype"] as? String).map { ", teacher \($0)" } ?? ""
                print(String(format: "pytorch %@: %.3f s/step, %.0f tokens/s%@%@%@", (torch["torch"] as? String) ?? "?", secs, tps, dtype, mem, best))
                print(String(format: "distill / pytorch tokens/s: %.2f×", r.tokensPerSecond / tps))
            }
        }

        /// `teacherDtype` bf16: PyTorch's teacher in bfloat16 too (weights converted, or autocast;
        /// the faster counts).
        func runPyTorch(_ preset: String, steps: Int, threads: Int, teacherDtype: String?) throws -> [String: Any] {
            try runPythonBenchmark(python: python, script: "scripts/bench_pytorch.py",
                                   arguments: ["--preset", preset, "--steps", "\(steps)", "--threads", "\(threads)", "--json"]
                                       + (teacherDtype.map { ["--teacher-dtype", $0] } ?? []))
        }
    }

    /// Runs a committed Python benchmark script that prints one JSON object on its last line; a
    /// missing script, interpreter or torch is a clear error.
    static func runPythonBenchmark(python: String, script: String, arguments: [String],
                                   installHint: String = "pip install torch==2.5.1 transformers==4.46.3") throws -> [String: Any] {
        guard FileManager.default.fileExists(atPath: script) else {
            throw CLIError("--compare: \(script) not found (run from the repository root)")
        }
        let r: ChildProcess.Output
        do { r = try ChildProcess.run("/usr/bin/env", [python, script] + arguments) } catch {
            throw CLIError("--compare: cannot run \(python): \(error)")
        }
        guard r.status == 0, let line = r.lastLine,
              let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw CLIError("--compare: \(script) failed (is the peer installed? \(installHint)): \(r.stderr.suffix(400))")
        }
        return obj
    }

    struct Ops: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "GEMM GFLOP/s per backend, attention forward/backward time, a small transformer training step.")

        @Option(help: "Comma-separated square GEMM sizes.")
        var sizes: String = "128,256,512,1024,2048"

        @Flag(help: "Print the results as JSON.")
        var json = false

        func run() throws {
            let sizeList = try sizes.split(separator: ",").map { s -> Int in
                guard let n = Int(s.trimmingCharacters(in: .whitespaces)), n > 0 else {
                    throw ValidationError("--sizes: '\(s)' is not a positive integer")
                }
                return n
            }
            // Measure the backends again (and update the cached choice), then say what runs and why.
            GemmSelection.remeasure()
            let choice = Gemm.choice
            let backend = Gemm.backend
            var header = "backend: \(backend.rawValue)" + (Gemm.blasName.map { " (\($0))" } ?? " (no BLAS library found)")
                + "; built-in kernel: \(Gemm.builtinKernelName); threads: \(Threads.count)"
            let kc = Gemm.kernelChoice
            header += "\nbuilt-in kernel chosen: \(kc.reason)"
            if let rates = kc.gflops {
                header += " (" + rates.sorted { $0.key < $1.key }.map { "\($0.key) " + f1($0.value) }.joined(separator: ", ") + " GFLOP/s)"
            }
            header += "\nbackend chosen: \(choice.reason)"
            if let b = choice.blasGflops, let k = choice.builtinGflops {
                header += String(format: " (BLAS %.1f GFLOP/s, built-in %.1f GFLOP/s)", b, k)
            }
            let (core, warning) = GemmSelection.blasCoreReport()
            if let core { header += "\nOpenBLAS core: \(core)" }
            if !json {
                print(header)
                if let warning { print("warning: \(warning)") }
            }
            var gemms: [OpBenchmarks.GemmResult] = []
            if !json {
                print("\nGEMM C = A·B, square, GFLOP/s (median)")
                print(pad("size", 6) + pad("cblas_sgemm", 13) + pad("matmul", 10) + pad("%cblas", 8)
                      + pad("built-in", 10) + pad("%cblas", 8) + pad("portable", 10))
            }
            for n in sizeList {
                let r = OpBenchmarks.gemm(size: n)
                gemms.append(r)
                if !json {
                    let pct = { (x: Double) in r.cblasGflops.map { String(format: "%.0f%%", 100 * x / $0) } ?? "-" }
                    print(pad("\(n)", 6) + pad(r.cblasGflops.map { f1($0) } ?? "-", 13) + pad(f1(r.matmulGflops), 10)
                          + pad(pct(r.matmulGflops), 8) + pad(f1(r.builtinGflops), 10) + pad(pct(r.builtinGflops), 8)
                          + pad(f1(r.portableGflops), 10))
                }
            }
            let att = OpBenchmarks.attention()
            if !json {
                print("\nattention (\(att.shape))")
                print("  fused forward           \(f1(att.forwardMs)) ms")
                print("  fused forward+backward  \(f1(att.forwardBackwardMs)) ms")
                print("  unfused forward+backward \(f1(att.unfusedForwardBackwardMs)) ms")
            }
            let step = OpBenchmarks.trainStep()
            if !json {
                print("\ntraining step (\(step.config))")
                print("  \(f1(step.stepMs)) ms/step, \(f1(step.tokensPerSecond)) tokens/s")
            } else {
                struct Report: Encodable {
                    var backend: String, blas: String?, builtinKernel: String, threads: Int
                    var choice: GemmChoice, kernelChoice: GemmKernelChoice, openblasCore: String?, warning: String?
                    var gemm: [OpBenchmarks.GemmResult], attention: OpBenchmarks.AttentionResult
                    var trainStep: OpBenchmarks.TrainStepResult
                }
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                let rep = Report(backend: backend.rawValue, blas: Gemm.blasName, builtinKernel: Gemm.builtinKernelName,
                                 threads: Threads.count, choice: choice, kernelChoice: Gemm.kernelChoice, openblasCore: core, warning: warning, gemm: gemms, attention: att, trainStep: step)
                print(String(data: try enc.encode(rep), encoding: .utf8)!)
            }
        }
    }
}

func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count) }
func f1(_ x: Double) -> String { String(format: "%.1f", x) }

extension Bench {
    struct GenerateBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate",
            abstract: "Prompt and decode tokens/s of a model (greedy, random prompt ids); --compare runs transformers, --compare-llamacpp llama.cpp on the same file side by side.")

        @Option(help: "A Hugging Face model directory or a .gguf file.") var model: String
        @Option(help: "Prompt length in tokens.") var promptTokens = 40
        @Option(help: "Tokens to generate.") var newTokens = 128
        @Option(help: "Comma-separated batch sizes.") var batch = "1,8"
        @Flag(help: "Fast decoding: a GGUF's quantized matrices multiply with 8-bit activations (integer dot products, as llama.cpp); logits change slightly.") var fast = false
        @Flag(help: "Also run scripts/bench_generate_transformers.py (transformers, float32) and print the ratios.") var compare = false
        @Flag(help: "Also run scripts/bench_generate_llamacpp.py (llama.cpp through llama-cpp-python, batch 1, a .gguf model) and print the ratios.") var compareLlamacpp = false
        @Option(help: "The Python interpreter for --compare and --compare-llamacpp.") var python = "python3"
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            QuantizedMatrix.fastDecoding = fast
            let batches: [Int]
            do { batches = try GenerationBenchmark.batchSizes(batch) } catch { throw ValidationError("--batch: \(error)") }
            guard promptTokens > 0, newTokens > 1 else { throw ValidationError("--prompt-tokens must be > 0 and --new-tokens > 1") }
            if compareLlamacpp && !model.lowercased().hasSuffix(".gguf") { throw ValidationError("--compare-llamacpp needs a .gguf model") }
            let m = try loadModel(model)
            var results: [GenerationBenchmark.Result] = []
            if !json {
                print("model: \(model); threads: \(Threads.count); GEMM: \(Gemm.backend.rawValue)"
                      + (fast ? "; int8 kernel: \(QuantizedMatrix.Int8Kernel.startingChoice.reason)" : ""))
            }
            for b in batches {
                let r = try GenerationBenchmark.run(model: m, promptTokens: promptTokens, newTokens: newTokens, batch: b)
                results.append(r)
                if !json {
                    print("batch \(b): prompt \(f1(r.promptTokensPerSecond)) tokens/s, decode \(f1(r.decodeTokensPerSecond)) tokens/s"
                          + " (\(promptTokens)-token prompt, \(newTokens) new tokens)")
                }
            }
            // Peers on the same file, run after Distill: (name, version, results per batch size).
            var peers: [(name: String, version: String, results: [[String: Any]])] = []
            let common = ["--batch", batch, "--prompt-tokens", "\(promptTokens)", "--new-tokens", "\(newTokens)",
                          "--threads", "\(Threads.count)", "--json"]
            if compare {
                let obj = try runPythonBenchmark(python: python, script: "scripts/bench_generate_transformers.py", arguments: [model] + common)
                peers.append(("transformers", "torch " + (obj["torch"] as? String ?? "?"), obj["results"] as? [[String: Any]] ?? []))
            }
            if compareLlamacpp {
                let obj = try runPythonBenchmark(python: python, script: "scripts/bench_generate_llamacpp.py", arguments: [model] + common,
                                                 installHint: "CMAKE_ARGS=\"-DGGML_NATIVE=ON\" pip install llama-cpp-python")
                peers.append(("llama.cpp", "llama-cpp-python " + (obj["llama_cpp"] as? String ?? "?"), obj["results"] as? [[String: Any]] ?? []))
            }
            if json {
                var obj: [String: Any] = ["distill": try JSONSerialization.jsonObject(with: try JSONEncoder().encode(results))]
                for p in peers { obj[p.name] = ["version": p.version, "results": p.results] }
                print(String(data: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .prettyPrinted]), encoding: .utf8)!)
                return
            }
            for p in peers {
                for (r, t) in zip(results, p.results) {
                    guard let pt = t["prompt_tokens_per_second"] as? Double, let d = t["decode_tokens_per_second"] as? Double else {
                        print("\(p.name) batch \(r.batch): \(t["skipped"] as? String ?? "no result")")
                        continue
                    }
                    print("\(p.name) (\(p.version)) batch \(r.batch): prompt \(f1(pt)) tokens/s, decode \(f1(d)) tokens/s; "
                          + String(format: "distill / %@: prompt %.2f×, decode %.2f×", p.name, r.promptTokensPerSecond / pt, r.decodeTokensPerSecond / d))
                }
            }
        }
    }
}

extension Bench {
    struct KD: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "kd",
            abstract: "Soft targets vs hard labels on real text: two identical derived students, same steps, held-out perplexity.")

        @Option(help: "The teacher: a Hugging Face model directory or a .gguf file.") var teacher: String
        @Option(help: "A UTF-8 text file (the last 10% of its token chunks are held out).") var text: String
        @OptionGroup var shape: StudentShape
        @Option(help: "Training steps for each student.") var steps = 100
        @Option(help: "Sequences per step.") var batchSize = 4
        @Option(help: "Tokens per sequence.") var length = 128
        @Option(help: "Peak learning rate.") var lr: Float = 1e-3
        @Option(help: "Weight of the soft (KL) term.") var alpha: Float = 0.5
        @Option(help: "Distillation temperature.") var temperature: Float = 2
        @Option(help: "Random seed.") var seed: UInt64 = 0
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            var o = KDBenchmark.Options(student: try shape.options(seed: seed))
            o.steps = steps
            o.batchSize = batchSize
            o.length = length
            o.learningRate = lr
            o.alpha = alpha
            o.temperature = temperature
            o.seed = seed
            let r: KDBenchmark.Result
            do {
                r = try KDBenchmark.run(teacherPath: teacher, textFile: text, options: o) { p in
                    if case let .step(run, step, total, loss) = p, step % 10 == 0 || step == total {
                        FileHandle.standardError.write("\(run): step \(step)/\(total) loss \(String(format: "%.4f", loss))\n".data(using: .utf8)!)
                    }
                }
            } catch { throw CLIError("\(error)") }
            if json { try printJSON(r); return }
            print("""
            teacher: \(r.teacherParameters) parameters, held-out perplexity \(String(format: "%.2f", r.teacherPerplexity))
            student: \(r.studentParameters) parameters (\(String(format: "%.1f%%", 100 * Double(r.studentParameters) / Double(r.teacherParameters))) of the teacher), initial perplexity \(String(format: "%.2f", r.initialStudentPerplexity))
            after \(r.steps) steps (\(r.trainTokens) training tokens; \(r.evalTokens) held-out tokens):
              hard labels only:           perplexity \(String(format: "%.2f", r.hardOnlyPerplexity))
              soft targets (α=\(alpha), τ=\(temperature)): perplexity \(String(format: "%.2f", r.distilledPerplexity))
            \(String(format: "%.0f", r.seconds)) s
            """)
        }
    }
}
