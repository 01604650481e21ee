import ArgumentParser
import Distillation
import Foundation

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Runs a distillation end to end on built-in data (two-digit addition).",
        discussion: """
        Trains a teacher transformer, then two students a quarter of its size for the same number of
        steps on the same examples: one on ground-truth answers only, one also matching the teacher's
        soft targets (0.5·KL at τ=2 + 0.5·cross-entropy). Prints held-out accuracy, loss, parameters
        and decode speed, and writes report.json.
        """)

    @Option(help: "Teacher training steps.") var teacherSteps = 1500
    @Option(help: "Training steps for each student.") var studentSteps = 1500
    @Option(help: "Examples the students see.") var studentExamples = 600
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Option(help: "Where to write report.json.") var out = "report.json"
    @Flag(help: "Print the report as JSON instead of a table.") var json = false
    @Option(help: "Train the word-problem teacher from scratch into this directory (resumable) and stop.") var trainTeacher: String?

    func run() throws {
        if let dir = trainTeacher {
            let start = Date()
            try DemoModels.trainTeacher(out: dir, steps: teacherSteps) { event in
                switch event {
                case let .step(m, total):
                    if m.step % 20 == 0 {
                        let line = String(format: "step %d/%d loss %.4f %.0f tok/s %.0fs", m.step, total, m.loss, m.tokensPerSecond,
                                          Date().timeIntervalSince(start))
                        print(line); fflush(stdout)
                    }
                case let .evaluated(step, acc):
                    print(String(format: "step %d: held-out accuracy %.1f%%", step, 100 * acc)); fflush(stdout)
                }
            }
            print("teacher written to \(dir)")
            return
        }
        guard teacherSteps > 0, studentSteps > 0 else { throw ValidationError("step counts must be positive") }
        guard studentExamples > 0 && studentExamples <= 9000 else { throw ValidationError("--student-examples must be in 1...9000") }
        var o = ArithmeticDemo.Options()
        o.teacherSteps = teacherSteps
        o.studentSteps = studentSteps
        o.studentExamples = studentExamples
        o.seed = seed
        let report = ArithmeticDemo.run(o) { event in
            guard !json else { return }
            switch event {
            case let .training(model, step, total, loss):
                FileHandle.standardError.write("\r\(model): step \(step)/\(total) loss \(String(format: "%.4f", loss))   \(step == total ? "\n" : "")".data(using: .utf8)!)
            case .evaluating(let model):
                FileHandle.standardError.write("evaluating \(model)\n".data(using: .utf8)!)
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.keyEncodingStrategy = .convertToSnakeCase
        let data = try enc.encode(report)
        try data.write(to: URL(fileURLWithPath: out), options: .atomic)
        if json { print(String(data: data, encoding: .utf8)!); return }
        print("\nmodel               params   accuracy   held-out loss   decode tokens/s")
        for (name, r) in [("teacher", report.teacher), ("baseline student", report.baselineStudent),
                          ("distilled student", report.distilledStudent)] {
            print(pad(name, 20) + pad("\(r.params)", 9) + pad(String(format: "%.1f%%", 100 * r.accuracy), 11)
                  + pad(String(format: "%.4f", r.heldOutLoss), 16) + String(format: "%.0f", r.tokensPerSecond))
        }
        print(String(format: "\n%.1f s in all; report written to %@", report.seconds, out))
    }
}
