import DistillModels
import DistillTensor
import Foundation

/// Speed and memory of one model measured in a process of its own, so that its peak resident
/// memory is not mixed with other models' (or with memory an earlier model freed).
public enum SpeedProbe {
    /// In the measuring process: loads the model, runs the speed requests of `task`, and returns
    /// the measurement with this process's peak resident memory (Linux VmHWM; getrusage elsewhere).
    public static func measure(_ spec: ModelSpec, task: EvalTask, options: EvalOptions) throws -> SpeedMeasurement {
        let model = try spec.load()
        model.lm.freeze()
        var s = try Evaluator.speed(model, task: task, options: options)
        s.peakResidentBytes = ProcessMemory.peakResidentBytes()
        return s
    }

    /// A probe that runs `executable ARGUMENTS… --model PATH [--adapter DIR]` and reads a JSON `SpeedMeasurement`
    /// (snake_case keys) from the last line of its standard output.
    public static func childProcess(executable: String, arguments: [String]) -> @Sendable (ModelSpec) throws -> SpeedMeasurement {
        { spec in
            let r: ChildProcess.Output
            do { r = try ChildProcess.run(executable, arguments + ["--model", spec.path] + (spec.adapter.map { ["--adapter", $0] } ?? [])) } catch {
                throw EvalError.invalidInput("cannot start \(executable) to measure \(spec.name): \(error)")
            }
            let dec = JSONDecoder()
            dec.keyDecodingStrategy = .convertFromSnakeCase
            guard r.status == 0, let line = r.lastLine, let s = try? dec.decode(SpeedMeasurement.self, from: Data(line.utf8)) else {
                throw EvalError.invalidInput("measuring \(spec.name) in a child process failed (status \(r.status)): \(r.stderr.suffix(400))")
            }
            return s
        }
    }
}
