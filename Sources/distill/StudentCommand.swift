import ArgumentParser
import Distillation
import Foundation

struct Student: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Derives a smaller student from a teacher: same architecture and tokenizer; copies the teacher's embedding, head and a uniform pick of layers (or --layer-map) when the hidden size matches, pruning MLP neurons when --intermediate is smaller and whole key/value groups when --heads/--kv-heads are fewer (same query heads per group; the head size stays the teacher's); else random weights.")

    @Option(help: "The teacher: a Hugging Face model directory or a .gguf file.") var from: String
    @OptionGroup var shape: StudentShape
    @Option(help: "Output directory.") var out: String
    @Option(help: "Seed of the random initialisation.") var seed: UInt64 = 0

    var options: StudentOptions { get throws { try shape.options(seed: seed) } }

    func run() throws {
        let s: DerivedStudent
        do { s = try StudentDerivation.derive(teacherPath: from, options: options, output: out) } catch { throw CLIError("\(error)") }
        switch s.initialization {
        case .copiedFromTeacher(let map):
            print("initialised from the teacher: layers ← teacher layers \(map.map(String.init).joined(separator: ", "))")
        case let .prunedFromTeacher(map, intermediate):
            let groups = s.keptKeyValueGroups.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: " ")
            print("initialised from the teacher: layers ← teacher layers \(map.map(String.init).joined(separator: ", ")); "
                  + "MLPs pruned to the \(intermediate) most important neurons"
                  + (groups.isEmpty ? "" : "; attention pruned to each layer's most important key/value groups \(groups)"))
        case let .random(std, seed):
            print("random initialisation: N(0, \(std)²), seed \(seed)")
        }
        print("parameters: \(s.parameterCount) (\(String(format: "%.1f", Double(s.parameterCount) / 1e6))M), "
              + String(format: "%.3f", s.ratio) + "× the teacher's \(s.teacherParameterCount)")
        print("wrote \(out)")
    }
}

/// The student's sizes, as `distill student` and `distill bench kd` take them.
struct StudentShape: ParsableArguments {
    @Option(help: "Student decoder layers.") var layers: Int
    @Option(help: "Student hidden size.") var hidden: Int
    @Option(help: "Student attention (query) heads.") var heads: Int
    @Option(help: "Student key/value heads (divides --heads).") var kvHeads: Int
    @Option(help: "Student MLP intermediate size.") var intermediate: Int
    @Option(help: ArgumentHelp("Teacher layers copied into the student's, comma-separated and increasing (e.g. 0,3); default: a uniform pick keeping the first and last.", valueName: "i,j,…"))
    var layerMap: String?

    func options(seed: UInt64) throws -> StudentOptions {
        StudentOptions(layers: layers, hidden: hidden, heads: heads, kvHeads: kvHeads, intermediate: intermediate, seed: seed,
                       layerMap: try layerMap.map { try StudentOptions.parseLayerMap($0) })
    }

    func validate() throws {
        do { try options(seed: 0).validate() } catch { throw ValidationError("\(error)") }
    }
}
