import ArgumentParser
import DistillEval
import Foundation

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Builds report.html and report.json for a training run: loss curves with phase markers, the models' comparison (--eval), attention maps of teacher and student (--example).")

    @Argument(help: "The run directory (output.dir of distill train: metrics.jsonl, recipe.json, the student).") var runDir: String
    @Option(help: "A distill eval report.json to include (the comparison table and trade-off charts).") var eval: String?
    @Option(help: "Text on which to draw attention maps of the teacher and the student.") var example: String?
    @Option(help: "The teacher [the recipe's teacher.path].") var teacher: String?
    @Option(help: "The student [the run directory].") var student: String?
    @Option(help: "Teacher layer of the attention map [last].") var teacherLayer: Int?
    @Option(help: "Student layer of the attention map [last].") var studentLayer: Int?
    @Option(help: "Attention head.") var head = 0
    @Option(help: "Output directory [the run directory].") var out: String?

    func run() throws {
        var o = RunReport.Options(runDirectory: runDir)
        o.evaluation = eval
        o.example = example
        o.teacher = teacher
        o.student = student
        o.teacherLayer = teacherLayer
        o.studentLayer = studentLayer
        o.head = head
        let report: EvalReport
        do { report = try RunReport.build(o) } catch { throw CLIError("\(error)") }
        let dir = URL(fileURLWithPath: out ?? runDir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.keyEncodingStrategy = .convertToSnakeCase
        try enc.encode(report).write(to: dir.appendingPathComponent("report.json"), options: .atomic)
        try Data(report.html().utf8).write(to: dir.appendingPathComponent("report.html"), options: .atomic)
        print("wrote \(dir.path)/report.html and report.json")
    }
}
