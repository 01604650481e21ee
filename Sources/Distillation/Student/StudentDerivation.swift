import DistillModels
import DistillNN
import DistillTensor
import Foundation

// Student derivation: a smaller model of the teacher's architecture, with the teacher's
// tokenizer and vocabulary, initialised from the teacher where the widths allow it.
//
// When hidden size, heads, key/value heads, head dimension and intermediate size all equal the
// teacher's, the student is the teacher with fewer layers (DistilBERT's recipe): embedding,
// final norm and untied output head are copied, and student layer i copies teacher layer
//     j(i) = round(i·(L_t − 1)/(L_s − 1))   (rounded half away from zero; j(0) = 0 when L_s = 1),
// a uniform pick that keeps the first and last layers (L_t = 24, L_s = 4 → 0, 8, 15, 23).
// When only the intermediate size is smaller, the MLPs are width-pruned (as Minitron prunes
// neurons): each student MLP keeps, in their original order, the teacher layer's I_s neurons of
// highest importance ‖gate_k‖·‖up_k‖·‖down_{:,k}‖ (rows of gate/up, column of down; ties go to the
// lower index); every other tensor is copied as above.
// With fewer attention heads at the same hidden size (and the same number of query heads per
// key/value head), the attention is width-pruned by whole key/value groups: each layer keeps the
// K_s groups of highest importance ‖v_g‖·Σ_{h∈g}‖o_{:,h}‖ (the group's value rows, its query heads'
// output-projection columns), with their query heads, keys, values and biases; the head size
// stays the teacher's (written as `head_dim`).
// Otherwise every weight is drawn as `transformers`' `_init_weights` does: linear weights and
// embeddings N(0, initializer_range²) (config's `initializer_range`, default 0.02), biases 0,
// norm weights 1.

/// The student's shape (`distill student` options).
public struct StudentOptions: Equatable, Sendable {
    public var layers: Int
    public var hidden: Int
    public var heads: Int
    public var kvHeads: Int
    public var intermediate: Int
    /// Seed of the random initialisation (unused when the weights are copied).
    public var seed: UInt64
    /// The teacher layer copied into each student layer, strictly increasing; nil = the uniform
    /// pick (`StudentDerivation.layerMap`). Used only when the student is copied from the teacher.
    public var layerMap: [Int]?

    public init(layers: Int, hidden: Int, heads: Int, kvHeads: Int, intermediate: Int, seed: UInt64 = 0, layerMap: [Int]? = nil) {
        self.layers = layers
        self.hidden = hidden
        self.heads = heads
        self.kvHeads = kvHeads
        self.intermediate = intermediate
        self.seed = seed
        self.layerMap = layerMap
    }

    /// Checks the options on their own; errors name the CLI option.
    public func validate() throws {
        for (name, v) in [("--layers", layers), ("--hidden", hidden), ("--heads", heads), ("--kv-heads", kvHeads),
                          ("--intermediate", intermediate)] where v <= 0 {
            throw StudentError.invalidOption(name, "must be positive, found \(v)")
        }
        guard hidden % heads == 0 else {
            throw StudentError.invalidOption("--heads", "\(heads) does not divide --hidden \(hidden)")
        }
        guard heads % kvHeads == 0 else {
            throw StudentError.invalidOption("--kv-heads", "\(kvHeads) does not divide --heads \(heads)")
        }
        guard (hidden / heads) % 2 == 0 else {
            throw StudentError.invalidOption("--heads", "head dimension --hidden / --heads = \(hidden / heads) must be even (rotary embeddings)")
        }
        if let map = layerMap {
            guard map.count == layers else {
                throw StudentError.invalidOption("--layer-map", "\(map.count) teacher layers given for \(layers) student layers")
            }
            guard map.allSatisfy({ $0 >= 0 }), zip(map, map.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw StudentError.invalidOption("--layer-map", "teacher layers must be ≥ 0 and strictly increasing, found \(map)")
            }
        }
    }

    /// Parses a layer map written "i,j,…" (the `--layer-map` option); the order is checked by
    /// `validate()`.
    public static func parseLayerMap(_ text: String, option: String = "--layer-map") throws -> [Int] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map { part in
            let p = part.trimmingCharacters(in: .whitespaces)
            guard let i = Int(p) else { throw StudentError.invalidOption(option, "'\(p)' is not a layer number (expected e.g. 0,3)") }
            return i
        }
    }

    /// The layer map for a teacher of `teacherLayers` layers: the given one (checked against the
    /// teacher's depth) or the uniform pick.
    func resolvedLayerMap(teacherLayers lt: Int) throws -> [Int] {
        guard let map = layerMap else { return StudentDerivation.layerMap(teacherLayers: lt, studentLayers: layers) }
        if let bad = map.first(where: { $0 >= lt }) {
            throw StudentError.invalidOption("--layer-map", "teacher layer \(bad) does not exist (the teacher has \(lt) layers)")
        }
        return map
    }
}

public enum StudentError: Error, Equatable, CustomStringConvertible {
    case invalidOption(String, String)
    case teacher(String)

    public var description: String {
        switch self {
        case let .invalidOption(o, m): return "\(o): \(m)"
        case .teacher(let m): return "teacher: \(m)"
        }
    }
}

/// A derived student and how it was made.
public struct DerivedStudent {
    public enum Initialization: Equatable, Sendable {
        /// Widths equal the teacher's: `layerMap[i]` is the teacher layer copied into layer i.
        case copiedFromTeacher(layerMap: [Int])
        /// A smaller intermediate size or fewer heads: layers copied as above, each MLP keeping the
        /// teacher's `intermediate` most important neurons and each attention its most important
        /// key/value groups (see `keptKeyValueGroups`).
        case prunedFromTeacher(layerMap: [Int], intermediate: Int)
        /// Widths differ: random weights N(0, std²) from `seed`.
        case random(std: Float, seed: UInt64)
    }

    public let model: PretrainedModel
    public let initialization: Initialization
    public let parameterCount: Int
    public let teacherParameterCount: Int
    /// With fewer heads than the teacher: the teacher's key/value groups each student layer kept.
    public var keptKeyValueGroups: [[Int]] = []

    /// Student parameters / teacher parameters.
    public var ratio: Double { Double(parameterCount) / Double(max(teacherParameterCount, 1)) }
}

public enum StudentDerivation {
    /// Tokenizer files copied from a teacher directory into the student's.
    public static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja"]

    /// Teacher layer copied into each of `studentLayers` layers (see the file comment).
    public static func layerMap(teacherLayers lt: Int, studentLayers ls: Int) -> [Int] {
        guard ls > 1 else { return [0] }
        return (0..<ls).map { i in Int((Double(i) * Double(lt - 1) / Double(ls - 1)).rounded()) }
    }

    /// The student's config.json: the teacher's, with the new sizes (and `head_dim`,
    /// `layer_types` adjusted where the teacher's config has them).
    public static func studentConfig(teacher: PretrainedModel, options o: StudentOptions) throws -> ModelConfig {
        try o.validate()
        let t = try teacher.architecture.decoderConfig(teacher.config)
        var json = teacher.config.json
        json["num_hidden_layers"] = o.layers
        json["hidden_size"] = o.hidden
        json["num_attention_heads"] = o.heads
        json["num_key_value_heads"] = o.kvHeads
        json["intermediate_size"] = o.intermediate
        json["vocab_size"] = t.vocabSize
        json["model_type"] = teacher.architecture.modelType
        json.removeValue(forKey: "_name_or_path")
        if Self.prunesHeads(teacher: t, options: o) {
            json["head_dim"] = t.headDim
        } else if json["head_dim"] != nil, !(json["head_dim"] is NSNull) {
            json["head_dim"] = (o.hidden == t.hidden && o.heads == t.heads) ? t.headDim : o.hidden / o.heads
        }
        if let types = json["layer_types"] as? [Any], types.count == t.layers {
            json["layer_types"] = try o.resolvedLayerMap(teacherLayers: t.layers).map { types[$0] }
        }
        return ModelConfig(json: json, source: "student config.json")
    }

    /// Whether the student keeps the teacher's hidden size and head size with fewer whole
    /// key/value groups (same query heads per group): then its attention is pruned from the teacher's.
    static func prunesHeads(teacher t: TransformerConfig, options o: StudentOptions) -> Bool {
        o.hidden == t.hidden && o.kvHeads < t.kvHeads && o.heads * t.kvHeads == t.heads * o.kvHeads
    }

    /// Derives a student in memory (nothing printed or written). `path` is recorded as the
    /// student's location.
    public static func derive(from teacher: PretrainedModel, options: StudentOptions, path: String = "") throws -> DerivedStudent {
        let config = try studentConfig(teacher: teacher, options: options)
        let s: TransformerConfig
        do { s = try teacher.architecture.decoderConfig(config) } catch {
            throw StudentError.teacher("the student config is not valid for \(teacher.architecture.modelType): \(error)")
        }
        let t = try teacher.architecture.decoderConfig(teacher.config)
        let lm = TransformerLM(s, initialize: false)
        let headPruning = prunesHeads(teacher: t, options: options)
        let sameAttention = s.hidden == t.hidden && (headPruning || (s.heads == t.heads && s.kvHeads == t.kvHeads))
            && s.headDim == t.headDim && s.vocabSize == t.vocabSize && s.tieEmbeddings == t.tieEmbeddings && s.qkvBias == t.qkvBias
        let initialization: DerivedStudent.Initialization
        var keptGroups: [Int: [Int]] = [:]   // teacher layer → key/value groups kept
        if sameAttention && s.intermediate <= t.intermediate {
            let map = try options.resolvedLayerMap(teacherLayers: t.layers)
            let source = Dictionary(teacher.lm.namedParameters().map { ($0.name, $0.parameter) }, uniquingKeysWith: { a, _ in a })
            func teacherTensor(_ name: String) throws -> Tensor {
                guard let tp = source[name] else { throw StudentError.teacher("no tensor '\(name)' in the teacher") }
                return tp.value
            }
            var kept: [Int: [Int]] = [:]   // teacher layer → neurons kept
            for (name, p) in lm.namedParameters() {
                let from = teacherName(name, layerMap: map)
                var value = try teacherTensor(from)
                if value.shape != p.shape, headPruning, let (layer, kind) = attentionTensor(from) {
                    let prefix = "model.layers.\(layer).self_attn."
                    if keptGroups[layer] == nil {
                        keptGroups[layer] = try mostImportantGroups(value: teacherTensor(prefix + "v_proj.weight"),
                                                                    output: teacherTensor(prefix + "o_proj.weight"),
                                                                    kvHeads: t.kvHeads, headDim: t.headDim, keep: s.kvHeads)
                    }
                    let groups = keptGroups[layer]!, perGroup = t.heads / t.kvHeads, d = t.headDim
                    let kvRows = groups.flatMap { g in (g * d)..<((g + 1) * d) }
                    let qRows = groups.flatMap { g in ((g * perGroup * d)..<((g + 1) * perGroup * d)) }
                    let w = value
                    value = withoutGradients {
                        switch kind {
                        case "q_proj": return w.indexSelect(qRows, axis: 0)
                        case "o_proj": return w.indexSelect(qRows, axis: 1)
                        default: return w.indexSelect(kvRows, axis: 0)          // k_proj, v_proj
                        }
                    }
                }
                if value.shape != p.shape, s.intermediate < t.intermediate, let (layer, kind) = mlpTensor(from) {
                    let prefix = "model.layers.\(layer).mlp."
                    if kept[layer] == nil {
                        kept[layer] = try mostImportantNeurons(gate: teacherTensor(prefix + "gate_proj.weight"),
                                                                up: teacherTensor(prefix + "up_proj.weight"),
                                                                down: teacherTensor(prefix + "down_proj.weight"), keep: s.intermediate)
                    }
                    let neurons = kept[layer]!, w = value
                    value = withoutGradients { w.indexSelect(neurons, axis: kind == "down_proj" ? 1 : 0) }
                }
                guard value.shape == p.shape else {
                    throw StudentError.teacher("no tensor '\(from)' of shape \(p.shape) in the teacher for student '\(name)'")
                }
                p.assign(value.detached())
            }
            initialization = s.intermediate == t.intermediate && !headPruning ? .copiedFromTeacher(layerMap: map)
                : .prunedFromTeacher(layerMap: map, intermediate: s.intermediate)
        } else {
            let std = (try? config.float("initializer_range")) ?? nil
            let sd = std ?? 0.02
            var rng = RandomGenerator(seed: options.seed)
            for (name, p) in lm.namedParameters() {
                if name.hasSuffix("norm.weight") { p.assign(Tensor([Float](repeating: 1 - (s.normOffset ?? 0), count: p.value.count), shape: p.shape)) }
                else if name.hasSuffix(".bias") { p.assign(Tensor(zeros: p.shape)) }
                else { p.assign(.randomNormal(p.shape, std: sd, using: &rng)) }
            }
            initialization = .random(std: sd, seed: options.seed)
        }
        let model = PretrainedModel(architecture: teacher.architecture, config: config, lm: lm, path: path,
                                    generationConfig: teacher.generationConfig, tokenizer: teacher.tokenizer,
                                    chatTemplate: teacher.chatTemplate)
        var derived = DerivedStudent(model: model, initialization: initialization, parameterCount: lm.parameterCount,
                                     teacherParameterCount: teacher.lm.parameterCount)
        if headPruning, case .prunedFromTeacher(let map, _) = initialization { derived.keptKeyValueGroups = map.map { keptGroups[$0] ?? [] } }
        return derived
    }

    /// (layer, projection) for a teacher tensor `model.layers.<layer>.<block>.<projection>.<suffix>`
    /// whose projection is one of `projections` and suffix one of `suffixes`.
    static func layerTensor(_ name: String, block: String, projections: Set<String>,
                            suffixes: Set<String> = ["weight"]) -> (Int, String)? {
        let parts = name.split(separator: ".").map(String.init)
        guard parts.count == 6, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), parts[3] == block,
              projections.contains(parts[4]), suffixes.contains(parts[5]) else { return nil }
        return (layer, parts[4])
    }

    /// (layer, "gate_proj" | "up_proj" | "down_proj") for a teacher MLP weight name.
    static func mlpTensor(_ name: String) -> (Int, String)? {
        layerTensor(name, block: "mlp", projections: ["gate_proj", "up_proj", "down_proj"])
    }

    /// (layer, "q_proj" | "k_proj" | "v_proj" | "o_proj") for a teacher attention weight or bias name.
    static func attentionTensor(_ name: String) -> (Int, String)? {
        layerTensor(name, block: "self_attn", projections: ["q_proj", "k_proj", "v_proj", "o_proj"], suffixes: ["weight", "bias"])
    }

    /// The indices of the `keep` highest scores (ties: the lower index), in ascending order.
    static func topIndices(_ score: [Double], keep: Int) -> [Int] {
        let order = score.indices.sorted { score[$0] != score[$1] ? score[$0] > score[$1] : $0 < $1 }
        return order.prefix(keep).sorted()
    }

    /// The `keep` key/value groups of highest ‖v_g‖·Σ_{h∈g}‖o_{:,h}‖, in ascending order.
    /// value: [K·D, H]; output: [H, Q·D] with Q/K query heads per group.
    public static func mostImportantGroups(value: Tensor, output: Tensor, kvHeads: Int, headDim d: Int, keep: Int) -> [Int] {
        let h = value.shape[1], q = output.shape[1] / d, perGroup = q / kvHeads
        let v = value.scalars, o = output.scalars
        let score = (0..<kvHeads).map { g -> Double in
            var vv = 0.0
            for r in (g * d)..<((g + 1) * d) { for c in 0..<h { vv += Double(v[r * h + c]) * Double(v[r * h + c]) } }
            var oo = 0.0
            for head in (g * perGroup)..<((g + 1) * perGroup) {
                var n = 0.0
                for r in 0..<output.shape[0] { for c in (head * d)..<((head + 1) * d) { n += Double(o[r * q * d + c]) * Double(o[r * q * d + c]) } }
                oo += n.squareRoot()
            }
            return vv.squareRoot() * oo
        }
        return topIndices(score, keep: keep)
    }

    /// The `keep` neurons of highest ‖gate_k‖·‖up_k‖·‖down_{:,k}‖, in ascending index order.
    /// gate, up: [I, H]; down: [H, I].
    public static func mostImportantNeurons(gate: Tensor, up: Tensor, down: Tensor, keep: Int) -> [Int] {
        let i = gate.shape[0], h = gate.shape[1]
        let g = gate.scalars, u = up.scalars, d = down.scalars
        var score = [Double](repeating: 0, count: i)
        for k in 0..<i {
            var gg = 0.0, uu = 0.0, dd = 0.0
            for c in 0..<h {
                gg += Double(g[k * h + c]) * Double(g[k * h + c])
                uu += Double(u[k * h + c]) * Double(u[k * h + c])
                dd += Double(d[c * i + k]) * Double(d[c * i + k])
            }
            score[k] = (gg * uu * dd).squareRoot()
        }
        return topIndices(score, keep: keep)
    }

    /// `model.layers.i.…` → `model.layers.map[i].…`; other names are unchanged.
    static func teacherName(_ name: String, layerMap: [Int]) -> String {
        let prefix = "model.layers."
        guard name.hasPrefix(prefix) else { return name }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) else { return name }
        return prefix + "\(layerMap[i])" + rest[dot...]
    }

    /// Writes the student as a Hugging Face directory, with the teacher's tokenizer files when the
    /// teacher is a directory.
    public static func write(_ student: DerivedStudent, teacher: PretrainedModel, to directory: String) throws {
        try student.model.saveDirectory(directory)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: teacher.path, isDirectory: &isDir), isDir.boolValue else { return }
        let src = URL(fileURLWithPath: teacher.path), dst = URL(fileURLWithPath: directory)
        for name in tokenizerFiles {
            let from = src.appendingPathComponent(name), to = dst.appendingPathComponent(name)
            guard from.standardizedFileURL != to.standardizedFileURL, FileManager.default.fileExists(atPath: from.path) else { continue }
            do {
                try? FileManager.default.removeItem(at: to)
                try FileManager.default.copyItem(at: from, to: to)
            } catch {
                throw FileError(file: to.path, "cannot copy the teacher's \(name): \(error.localizedDescription)")
            }
        }
    }

    /// Loads the teacher at `teacherPath` (directory or .gguf), derives the student and writes it
    /// to `output`.
    public static func derive(teacherPath: String, options: StudentOptions, output: String) throws -> DerivedStudent {
        try options.validate()
        let teacher = try PretrainedModel.load(teacherPath)
        let student = try derive(from: teacher, options: options, path: output)
        try write(student, teacher: teacher, to: output)
        return student
    }
}
