import DistillTensor
import Foundation

/// A Hugging Face checkpoint directory: `model.safetensors.index.json` with its `weight_map`
/// (tensor name → shard file), or a single `model.safetensors`.
public final class ShardedSafetensors: @unchecked Sendable {
    public static let indexName = "model.safetensors.index.json"
    public static let singleName = "model.safetensors"

    public let directory: String
    /// Open shards by file name.
    public let shards: [String: SafetensorsFile]
    /// Tensor name → shard file name.
    public let weightMap: [String: String]
    /// Tensor names, sorted.
    public let tensorNames: [String]
    /// The index's "metadata" object (e.g. total_size); empty for a single file.
    public let indexMetadata: [String: Any]

    public convenience init(url: URL) throws { try self.init(directory: url.path) }

    public init(directory: String) throws {
        self.directory = directory
        let dir = URL(fileURLWithPath: directory)
        let indexURL = dir.appendingPathComponent(Self.indexName)
        let singleURL = dir.appendingPathComponent(Self.singleName)
        let fm = FileManager.default
        if fm.fileExists(atPath: indexURL.path) {
            let path = indexURL.path
            let data: Data
            do { data = try Data(contentsOf: indexURL) } catch {
                throw FileError(file: path, "cannot read: \(ioFailureReason(error))")
            }
            let json: Any
            do { json = try JSONSerialization.jsonObject(with: data) } catch {
                throw FileError(file: path, "malformed JSON: \(error.localizedDescription)")
            }
            guard let obj = json as? [String: Any] else { throw FileError(file: path, "expected a JSON object") }
            guard let map = obj["weight_map"] as? [String: Any] else {
                throw FileError(file: path, location: "weight_map", "missing or not an object of tensor name → file name")
            }
            var weightMap: [String: String] = [:]
            for (name, v) in map.sorted(by: { $0.key < $1.key }) {   // deterministic: the first bad name
                guard let f = v as? String else { throw FileError(file: path, location: "weight_map.\(name)", "expected a file name, found \(v)") }
                guard !f.contains("/"), !f.isEmpty, f != ".", f != ".." else {
                    throw FileError(file: path, location: "weight_map.\(name)", "'\(f)' is not a file name in the checkpoint directory")
                }
                weightMap[name] = f
            }
            var shards: [String: SafetensorsFile] = [:]
            for f in Set(weightMap.values).sorted() {
                let shardPath = dir.appendingPathComponent(f).path
                guard fm.fileExists(atPath: shardPath) else {
                    let names = weightMap.filter { $0.value == f }.keys.sorted()
                    throw FileError(file: path, location: "weight_map",
                                    "shard '\(f)' (holding \(someNames(names))) is missing from \(directory)")
                }
                shards[f] = try SafetensorsFile(path: shardPath)
            }
            for (name, f) in weightMap.sorted(by: { $0.key < $1.key }) where !shards[f]!.contains(name) {
                throw FileError(file: shards[f]!.path, location: name,
                                "listed in \(Self.indexName) but not in this shard, which holds \(someNames(shards[f]!.tensorNames))")
            }
            self.weightMap = weightMap
            self.shards = shards
            indexMetadata = obj["metadata"] as? [String: Any] ?? [:]
        } else if fm.fileExists(atPath: singleURL.path) {
            let file = try SafetensorsFile(path: singleURL.path)
            shards = [Self.singleName: file]
            weightMap = Dictionary(uniqueKeysWithValues: file.tensorNames.map { ($0, Self.singleName) })
            indexMetadata = [:]
        } else {
            let present = ((try? fm.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
            throw FileError(file: directory,
                            "no \(Self.indexName) or \(Self.singleName) here" +
                            (present.isEmpty ? "" : " (found \(someNames(present)); open a single file with SafetensorsFile)"))
        }
        tensorNames = weightMap.keys.sorted()
    }

    public func contains(_ name: String) -> Bool { weightMap[name] != nil }

    /// The shard holding `name`, or an error naming a few tensors that exist.
    public func shard(holding name: String) throws -> SafetensorsFile {
        guard let f = weightMap[name], let shard = shards[f] else {
            throw FileError(file: directory, location: name,
                            "no such tensor; the checkpoint holds \(tensorNames.count) tensors: \(someNames(tensorNames))")
        }
        return shard
    }

    public func info(named name: String) throws -> SafetensorsTensorInfo {
        try shard(holding: name).info(named: name)
    }

    /// The tensor `name` as Float32 (see `SafetensorsFile.tensor(named:)`).
    public func tensor(named name: String) throws -> Tensor {
        try shard(holding: name).tensor(named: name)
    }
}
