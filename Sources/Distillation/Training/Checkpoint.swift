import DistillModels
import DistillNN
import DistillTensor
import Foundation

/// Scalar training state saved beside the weights (`state.json`).
public struct TrainerState: Codable, Equatable, Sendable {
    public static let currentVersion = 1
    public var version: Int
    /// Optimizer steps done; the learning-rate schedule and the training plan resume at this step.
    public var step: Int
    /// AdamW's own update count (bias correction).
    public var optimizerStep: Int
    public var data: DataPosition
    /// The trainer's random generator (curriculum sampling).
    public var rng: RandomGenerator
    public var learningRate: Float
    /// Where the trainer is in its replay set, when it replays data.
    public var replayData: DataPosition? = nil
    /// The student's dropout generators by module name (residual, attention, LoRA), when it has any.
    public var dropout: [String: RandomGenerator]? = nil

    public init(step: Int, optimizerStep: Int, data: DataPosition, rng: RandomGenerator, learningRate: Float) {
        self.version = TrainerState.currentVersion
        self.step = step
        self.optimizerStep = optimizerStep
        self.data = data
        self.rng = rng
        self.learningRate = learningRate
    }
}

/// Errors of training runs. Each names what to fix.
public enum TrainerError: Error, Equatable, CustomStringConvertible {
    /// The loss (or gradient norm) became NaN or infinite at optimizer step `step` (1-based: the
    /// update that would have been step `step`); no update was applied.
    case nonFiniteLoss(step: Int, loss: Float, gradNorm: Float)
    /// A checkpoint directory is missing a file or holds something unexpected.
    case badCheckpoint(path: String, reason: String)
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case let .nonFiniteLoss(step, loss, norm):
            return "training diverged at step \(step): loss \(loss), gradient norm \(norm) (lower the learning rate or clip gradients)"
        case let .badCheckpoint(path, reason): return "checkpoint \(path): \(reason)"
        case .invalidConfiguration(let r): return "trainer configuration: \(r)"
        }
    }
}

/// A training checkpoint: a directory `step-NNNNNNNN` holding
/// - `model.safetensors`: every student parameter under its dotted name (F32),
/// - `projector.safetensors`: the feature projections, when there are any,
/// - `optimizer.safetensors`: AdamW's moments as `exp_avg.<name>` / `exp_avg_sq.<name>`,
/// - `state.json`: `TrainerState` (step, optimizer step, data position, random state).
///
/// The directory is written under a temporary name in the same parent and renamed into place,
/// so a crash never leaves a half-written `step-…` directory.
/// A checkpoint that could not be written (a full disk, permissions); the previous ones are intact.
public struct CheckpointWriteError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "cannot write checkpoint \(path): \(reason); the checkpoints before it are intact" }
}

public enum Checkpoint {
    public static func directoryName(step: Int) -> String { "step-" + String(format: "%08d", step) }

    /// Checkpoint directories under `dir`, by step, ascending.
    public static func list(in dir: URL) -> [(step: Int, url: URL)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.compactMap { name -> (Int, URL)? in
            guard name.hasPrefix("step-"), let s = Int(name.dropFirst(5)) else { return nil }
            return (s, dir.appendingPathComponent(name))
        }.sorted { $0.0 < $1.0 }
    }

    /// The checkpoint of the highest step under `dir`, if any.
    public static func latest(in dir: URL) -> URL? { list(in: dir).last?.url }

    /// Writes a checkpoint into `dir` and returns its directory.
    @discardableResult
    public static func save(in dir: URL, model: Module, projector: Module?, optimizer: AdamW, state: TrainerState) throws -> URL {
        let fm = FileManager.default
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        let final = dir.appendingPathComponent(directoryName(step: state.step))
        let tmp = dir.appendingPathComponent(".tmp-\(directoryName(step: state.step))-\(UUID().uuidString)")
        try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        do {
            var weights: [String: Tensor] = [:]
            for (n, p) in model.namedParameters() { weights[n] = p.value.detached() }
            try SafetensorsWriter.write(weights, to: tmp.appendingPathComponent("model.safetensors").path)
            if let projector {
                var pw: [String: Tensor] = [:]
                for (n, p) in projector.namedParameters() { pw[n] = p.value.detached() }
                try SafetensorsWriter.write(pw, to: tmp.appendingPathComponent("projector.safetensors").path)
            }
            var moments: [String: Tensor] = [:]
            for (n, mv) in optimizer.moments { moments["exp_avg." + n] = mv.m; moments["exp_avg_sq." + n] = mv.v }
            try SafetensorsWriter.write(moments, metadata: ["format": "distill-adamw"],
                                        to: tmp.appendingPathComponent("optimizer.safetensors").path)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(state).write(to: tmp.appendingPathComponent("state.json"), options: .atomic)
            if fm.fileExists(atPath: final.path) {
                let old = dir.appendingPathComponent(".old-\(UUID().uuidString)")
                try fm.moveItem(at: final, to: old)
                try fm.moveItem(at: tmp, to: final)
                try? fm.removeItem(at: old)
            } else {
                try fm.moveItem(at: tmp, to: final)
            }
        } catch {
            try? fm.removeItem(at: tmp)
            // Named by the checkpoint it was to become (the temporary directory is gone).
            throw CheckpointWriteError(path: final.path, reason: "\(error)".replacingOccurrences(of: tmp.path + "/", with: ""))
        }
        return final
    }

    /// Loads a checkpoint into `model`, `projector` and `optimizer` and returns its state.
    public static func load(from url: URL, model: Module, projector: Module?, optimizer: AdamW) throws -> TrainerState {
        func file(_ name: String) throws -> SafetensorsFile {
            let path = url.appendingPathComponent(name).path
            guard FileManager.default.fileExists(atPath: path) else {
                throw TrainerError.badCheckpoint(path: url.path, reason: "missing \(name)")
            }
            return try SafetensorsFile(path: path)
        }
        func tensors(_ f: SafetensorsFile) throws -> [String: Tensor] {
            var out: [String: Tensor] = [:]
            for n in f.tensorNames { out[n] = try f.tensor(named: n).copy() }
            return out
        }
        let statePath = url.appendingPathComponent("state.json")
        guard let data = try? Data(contentsOf: statePath) else {
            throw TrainerError.badCheckpoint(path: url.path, reason: "missing state.json")
        }
        let state = try JSONDecoder().decode(TrainerState.self, from: data)
        guard state.version == TrainerState.currentVersion else {
            throw TrainerError.badCheckpoint(path: url.path, reason: "state version \(state.version), expected \(TrainerState.currentVersion)")
        }
        try model.load(try tensors(try file("model.safetensors")))
        if let projector { try projector.load(try tensors(try file("projector.safetensors"))) }
        let raw = try tensors(try file("optimizer.safetensors"))
        var moments: [String: (m: Tensor, v: Tensor)] = [:]
        for (k, m) in raw where k.hasPrefix("exp_avg.") {
            let name = String(k.dropFirst("exp_avg.".count))
            guard let v = raw["exp_avg_sq." + name], v.shape == m.shape else {
                throw TrainerError.badCheckpoint(path: url.path, reason: "optimizer moments of '\(name)' incomplete")
            }
            moments[name] = (m, v)
        }
        optimizer.restore(step: state.optimizerStep, moments: moments)
        optimizer.learningRate = state.learningRate
        return state
    }
}
