import ArgumentParser
import XCTest
@testable import distill

/// The command line's own checks: options that no library function sees are rejected with a
/// message naming the option, before any work starts (a model load, a benchmark, a training run).
final class OptionCheckTests: XCTestCase {
    /// The message `distill ARGS` stops with: from parsing and `validate()`, or else from `run()`.
    private func failure(_ args: [String], file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            var command = try Distill.parseAsRoot(args)
            try command.run()
            XCTFail("distill \(args.joined(separator: " ")) did not fail", file: file, line: line)
            return ""
        } catch {
            return Distill.message(for: error)
        }
    }

    private func assertFails(_ args: [String], mentioning parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        let message = failure(args, file: file, line: line)
        for p in parts {
            XCTAssertTrue(message.contains(p), "distill \(args.joined(separator: " ")): '\(message)' does not mention \(p)", file: file, line: line)
        }
    }

    /// `score --jsonl`: a bad line names the file and line; no text, no file, or two inputs are refused.
    func testScoreJSONLInput() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("score-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.jsonl"), empty = dir.appendingPathComponent("empty.jsonl")
        try "{\"text\": \"one plus one\"}\n{\"prompt\": \"no text\"}\n".write(to: bad, atomically: true, encoding: .utf8)
        try "\n  \n".write(to: empty, atomically: true, encoding: .utf8)
        let base = ["score", "--model", "demo/teacher"]
        assertFails(base + ["--jsonl", bad.path], mentioning: [bad.path, "line 2", "expected a JSON object with a \"text\" string"])
        assertFails(base + ["--jsonl", empty.path], mentioning: [empty.path, "no text to score"])
        assertFails(base + ["--jsonl", dir.appendingPathComponent("missing.jsonl").path], mentioning: ["missing.jsonl", "cannot read the file"])
        assertFails(base + ["--jsonl", bad.path, "--text", "x"], mentioning: ["exactly one of --text, --text-file and --jsonl"])
    }

    func testTracesOptions() {
        let base = ["traces", "--task", "word-problems", "--teacher-local", "demo/teacher"]
        assertFails(base + ["--n", "2", "--consensus", "3"], mentioning: ["--consensus", "1...--n (2)", "3"])
        assertFails(base + ["--consensus", "0"], mentioning: ["--consensus"])
        assertFails(base + ["--n", "2", "--consensus", "2", "--verifier", "none"], mentioning: ["--consensus needs a verifier"])
        assertFails(base + ["--n", "0"], mentioning: ["--n must be at least 1"])
        assertFails(base + ["--keep", "longest"], mentioning: ["--keep", "longest"])
        assertFails(["traces", "--task", "word-problems"], mentioning: ["--teacher-url or --teacher-local"])
        assertFails(["traces", "--task", "word-problems", "--teacher-url", "http://127.0.0.1:1/v1"], mentioning: ["--teacher-model"])
        // Real reasoning teachers' options.
        assertFails(base + ["--samples-per-request", "0"], mentioning: ["--samples-per-request must be at least 1", "0"])
        assertFails(base + ["--logprobs", "21"], mentioning: ["--logprobs must be in 1...20", "21"])
        assertFails(base + ["--logprobs", "0"], mentioning: ["--logprobs must be in 1...20"])
        // (--logprobs without --tokenizer is allowed: it writes the tokens file only.)
        assertFails(base + ["--think-tags", "<think>"], mentioning: ["--think-tags must be OPEN,CLOSE", "<think>"])
        assertFails(base + ["--think-tags", "<t>,<t>"], mentioning: ["--think-tags"])
        assertFails(base + ["--think-tags", ",</think>"], mentioning: ["--think-tags"])
        assertFails(base + ["--targets-max-length", "1"], mentioning: ["--targets-max-length must be at least 2"])
    }

    func testDemoOptions() {
        for option in ["--student-heads", "--student-kv-heads", "--student-batch", "--student-steps", "--train-prompts"] {
            assertFails(["demo", option, "0"], mentioning: [option, "must be positive"])
        }
        assertFails(["demo", "--alpha", "1.5"], mentioning: ["--alpha"])
        assertFails(["demo", "--student-layer-map", "0,x"], mentioning: ["--student-layer-map", "'x'"])
        assertFails(["demo", "--task", "addition", "--student-examples", "0"], mentioning: ["--student-examples"])
    }

    func testBenchOptions() {
        assertFails(["bench", "train", "--preset", "sft-reference", "--steps", "0"], mentioning: ["--steps must be at least 1"])
        assertFails(["bench", "train", "--preset", "nonsense"], mentioning: ["nonsense"])
        assertFails(["bench", "train", "--preset", "kd-reference", "--teacher-dtype", "f8"],
                    mentioning: ["--teacher-dtype must be f32 or bf16", "'f8'"])
        assertFails(["bench", "generate", "--model", "m", "--batch", "1,x"], mentioning: ["--batch", "'x'"])
        assertFails(["bench", "generate", "--model", "m", "--new-tokens", "1"], mentioning: ["--new-tokens > 1"])
        assertFails(["bench", "generate", "--model", "some/hf-directory", "--compare-llamacpp"], mentioning: ["--compare-llamacpp needs a .gguf"])
        assertFails(["bench", "serve", "--model", "m", "--clients", "0"], mentioning: ["--clients"])
        assertFails(["bench", "ops", "--sizes", "64,-1"], mentioning: ["--sizes", "'-1'"])
    }

    func testEvalServeAndModelOptions() {
        assertFails(["eval", "--task", "word-problems"], mentioning: ["at least one --model"])
        assertFails(["eval", "--model", "m", "--task", "word-problems", "--batch-size", "0"], mentioning: ["--batch-size"])
        assertFails(["serve", "--model", "m", "--port", "70000"], mentioning: ["--port", "70000"])
        assertFails(["serve", "--model", "m", "--max-batch", "0"], mentioning: ["--max-batch"])
        assertFails(["convert", "m", "--out", "out", "--dtype", "f8"], mentioning: ["--dtype", "f8"])
        assertFails(["mix", "--out", "x.jsonl"], mentioning: ["--input"])
        assertFails(["mix", "--input", "a.jsonl:1", "--out", "x.jsonl", "--ngram", "0"], mentioning: ["--ngram", "0"])
    }

    func testAugmentOptions() {
        assertFails(["augment", "d.jsonl", "--method", "shuffle", "--out", "x.jsonl"], mentioning: ["--method", "shuffle"])
        assertFails(["augment", "d.jsonl", "--copies", "0", "--out", "x.jsonl"], mentioning: ["--copies"])
        assertFails(["augment", "d.jsonl", "--p", "1.5", "--out", "x.jsonl"], mentioning: ["--p", "1.5"])
        assertFails(["augment", "d.jsonl", "--method", "paraphrase", "--out", "x.jsonl"], mentioning: ["--server-url", "--server-model"])
        assertFails(["augment", "d.jsonl", "--method", "swap", "--word-list", "w.txt", "--out", "x.jsonl"], mentioning: ["--word-list"])
        assertFails(["augment", "missing.jsonl", "--out", "x.jsonl"], mentioning: ["missing.jsonl", "cannot read the file"])
    }

    /// `decontaminate`: option checks, bad files named, and a run that writes the kept lines and the report.
    func testDecontaminate() throws {
        assertFails(["decontaminate", "d.jsonl", "--out", "x.jsonl"], mentioning: ["--against"])
        assertFails(["decontaminate", "d.jsonl", "--against", "e.jsonl", "--out", "x.jsonl", "--ngram", "0"], mentioning: ["--ngram", "0"])
        assertFails(["traces", "--task", "word-problems", "--teacher-local", "m", "--ngram", "0"], mentioning: ["--ngram", "0"])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("decon-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let eval = dir.appendingPathComponent("eval.jsonl"), train = dir.appendingPathComponent("train.jsonl")
        let out = dir.appendingPathComponent("clean.jsonl"), report = dir.appendingPathComponent("report.json")
        try #"{"question": "Ann has five red pens and buys two more pens today", "answer": "7"}"#.appending("\n")
            .write(to: eval, atomically: true, encoding: .utf8)
        try [#"{"text": "ann has five red pens, and buys two more pens today."}"#, #"{"text": "Bob has a dog."}"#, "{oops"]
            .joined(separator: "\n").appending("\n").write(to: train, atomically: true, encoding: .utf8)
        assertFails(["decontaminate", train.path, "--against", eval.path, "--out", out.path], mentioning: [train.path, ":3:", "not valid JSON"])
        try [#"{"text": "ann has five red pens, and buys two more pens today."}"#, #"{"text": "Bob has a dog."}"#]
            .joined(separator: "\n").appending("\n").write(to: train, atomically: true, encoding: .utf8)
        var command = try Distill.parseAsRoot(["decontaminate", train.path, "--against", eval.path, "--out", out.path, "--report", report.path])
        try command.run()
        XCTAssertEqual(try String(contentsOf: out, encoding: .utf8), #"{"text": "Bob has a dog."}"# + "\n")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as! [String: Any]
        XCTAssertEqual(json["removed"] as? Int, 1)
        XCTAssertEqual(json["kept"] as? Int, 1)
        let overlaps = json["overlaps"] as! [[String: Any]]
        XCTAssertEqual(overlaps.first?["eval_line"] as? Int, 1)
        XCTAssertEqual(overlaps.first?["ngram"] as? String, "ann has five red pens and buys two")
    }

    /// `check`: a recipe that loads passes (exit 0); a missing data file and --strict with a warning fail.
    func testCheck() throws {
        assertFails(["check", "recipes/sft.yaml", "--steps", "-1"], mentioning: ["--steps"])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("check-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("train.jsonl")
        try (0..<6).map { #"{"messages": [{"role": "user", "content": "\#($0)+1?"}, {"role": "assistant", "content": "\#($0 + 1)"}]}"# }
            .joined(separator: "\n").write(to: data, atomically: true, encoding: .utf8)
        let base = ["check", "recipes/sft.yaml", "--set", "student.path=demo/teacher", "--set", "data.train=\(data.path)",
                    "--set", "output.dir=\(dir.appendingPathComponent("out").path)", "--set", "schedule.batch_size=2", "--examples", "1"]
        var command = try Distill.parseAsRoot(base + ["--set", "data.eval=\(data.path)"])
        try command.run()
        // No held-out data is a warning: a failure only with --strict.
        var lenient = try Distill.parseAsRoot(base + ["--set", "data.eval=null", "--steps", "0"])
        try lenient.run()
        assertFails(base + ["--set", "data.eval=null", "--steps", "0", "--strict"], mentioning: ["1 warning", "--strict"])
        assertFails(base + ["--set", "data.eval=\(dir.appendingPathComponent("none.jsonl").path)", "--steps", "0"],
                    mentioning: ["check: 1 error found"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out").path))
    }

    /// `distill pipeline`: a missing or invalid pipeline file is named; --status reads a fresh setup.
    func testPipeline() throws {
        assertFails(["pipeline", "nowhere.yaml"], mentioning: ["cannot read the pipeline file nowhere.yaml"])
        assertFails(["pipeline", "recipes/pipeline/pipeline.yaml", "--once"], mentioning: ["pipeline.yaml:", "gate.task:", "data/gsm8k-test.jsonl: no such task file"])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pipeline-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("inbox"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "some text".write(to: dir.appendingPathComponent("text.txt"), atomically: true, encoding: .utf8)
        let config = dir.appendingPathComponent("p.yaml")
        try """
            inbox: inbox
            work: work
            versions: models
            teacher: {url: "http://127.0.0.1:9/v1", model: t}
            train: {recipe: \(FileManager.default.currentDirectoryPath)/recipes/sft.yaml}
            gate: {task: text.txt}
            """.write(to: config, atomically: true, encoding: .utf8)
        var status = try Distill.parseAsRoot(["pipeline", config.path, "--status"])
        try status.run()
        assertFails(["pipeline", config.path, "--set", "gate.margin=-2"], mentioning: ["p.yaml", "gate.margin", "≥ 0"])
        // No version and no initial_student: named before anything runs.
        assertFails(["pipeline", config.path, "--once"], mentioning: ["holds no version yet: give initial_student"])
    }

    /// `serve --watch`, `bench serve --stagger-ms` and `bench soak`: bad values named before any model loads.
    func testServingOptions() throws {
        assertFails(["serve"], mentioning: ["exactly one of --model and --watch"])
        assertFails(["serve", "--model", "m.gguf", "--watch", "versions"], mentioning: ["exactly one of --model and --watch"])
        assertFails(["serve", "--watch", "versions", "--watch-interval", "0"], mentioning: ["--watch-interval must be positive"])
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        assertFails(["serve", "--watch", empty.path, "--port", "0"], mentioning: [empty.path + "/current", "no version to serve"])
        assertFails(["bench", "serve", "--model", "m.gguf", "--stagger-ms=-1"], mentioning: ["--stagger-ms must be at least 0"])
        assertFails(["bench", "allreduce", "--sizes-mb", "1,0"], mentioning: ["--sizes-mb must be positive numbers"])
        assertFails(["bench", "allreduce", "--iterations", "0"], mentioning: ["--iterations must be at least 1"])
        assertFails(["bench", "allreduce"], mentioning: ["run it under an MPI launcher", "mpirun -np 2"])
        assertFails(["bench", "soak", "--model", "m.gguf", "--clients", "0"], mentioning: ["--clients must be at least 1"])
        assertFails(["bench", "soak", "--model", "m.gguf", "--seconds", "0"], mentioning: ["--seconds must be positive"])
        assertFails(["bench", "soak", "--model", "m.gguf", "--max-batch", "0"], mentioning: ["--max-batch must be at least 1"])
    }

    /// `eval --model PATH,adapter=DIR`: split into the model and its adapter, named after both.
    func testEvalModelWithAdapter() throws {
        let s = try Eval.spec("runs/base,adapter=runs/lora-1")
        XCTAssertEqual([s.path, s.adapter, s.name], ["runs/base", "runs/lora-1", "base+lora-1"])
        XCTAssertNil(try Eval.spec("runs/base").adapter)
        XCTAssertEqual(try Eval.spec("t,adapter=a", name: "teacher", isTeacher: true).name, "teacher")
        XCTAssertThrowsError(try Eval.spec("runs/base,adapter="))
        assertFails(["eval", "--model", ",adapter=x", "--task", "word-problems"], mentioning: ["PATH,adapter=DIR"])
    }

    /// `export`, `lora merge` and `--adapter`: bad values are refused naming the option, before any model loads.
    func testExportAndLoRAOptions() throws {
        let base = ["export", "demo/teacher", "--out", "/tmp/x.gguf"]
        assertFails(base + ["--type", "q3_k"], mentioning: ["--type must be one of", "q4_k_m", "'q3_k'"])
        assertFails(base + ["--format", "tflite"], mentioning: ["--format must be gguf or onnx", "'tflite'"])
        assertFails(base + ["--dtype", "f16"], mentioning: ["--dtype and --external-data are for --format onnx"])
        assertFails(base + ["--external-data"], mentioning: ["--dtype and --external-data are for --format onnx"])
        let onnx = ["export", "demo/teacher", "--format", "onnx", "--out", "/tmp/onnx-out"]
        assertFails(onnx + ["--dtype", "int8"], mentioning: ["--dtype must be one of f32, f16", "'int8'"])
        assertFails(onnx + ["--type", "q8_0"], mentioning: ["--type is for --format gguf"])
        assertFails(["export", "demo/teacher", "--format", "onnx", "--out", "/tmp/x.onnx"],
                    mentioning: ["--out names a directory for --format onnx", "/tmp/x.onnx"])
        assertFails(["export", "demo/teacher", "--out", "/tmp/x.bin"], mentioning: ["--out must name a .gguf file", "/tmp/x.bin"])
        assertFails(["lora", "merge", "--base", "demo/teacher", "--adapter", "demo", "--out", "/tmp/m", "--dtype", "q8"],
                    mentioning: ["--dtype must be f32, f16 or bf16", "'q8'"])
        assertFails(["convert", "demo/teacher", "--out", "/tmp/m", "--dtype", "f8"], mentioning: ["--dtype must be f32, f16 or bf16", "'f8'"])
        let notAdapter = FileManager.default.temporaryDirectory.appendingPathComponent("no-adapter-\(UUID().uuidString)").path
        assertFails(["score", "--model", "demo/teacher", "--text", "one plus one", "--adapter", notAdapter],
                    mentioning: [notAdapter, "adapter_config.json", "cannot read the adapter config"])
    }
}
