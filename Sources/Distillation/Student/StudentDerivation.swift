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
            // Whole tensors: embedding, final norm, head, and each picked block's norms (by the
            // block's own parameter names); then the attention and MLP projections, pruned to the
            // student's key/value groups and neurons where they are fewer.
            try copy(teacher.lm.model.embedTokens, to: lm.model.embedTokens, what: "model.embed_tokens")
            try copy(teacher.lm.model.norm, to: lm.model.norm, what: "model.norm")
            if let head = lm.lmHead {
                guard let th = teacher.lm.lmHead else { throw StudentError.teacher("no tensor 'lm_head.weight' in the teacher") }
                try copy(th, to: head, what: "lm_head")
            }
            for (i, block) in lm.model.layers.enumerated() {
                let layer = map[i], tb = teacher.lm.model.layers[layer], what = "model.layers.\(layer)"
                try copy(tb, to: block, what: what, skipping: ["self_attn.", "mlp."])
                for (norm, tnorm) in [(block.selfAttn.qNorm, tb.selfAttn.qNorm), (block.selfAttn.kNorm, tb.selfAttn.kNorm)] {
                    if let norm, let tnorm { try copy(tnorm, to: norm, what: what + ".self_attn") }
                }
                // Attention: the key/value groups kept (with their query heads), or all.
                let a = block.selfAttn, ta = tb.selfAttn
                var qRows: [Int]? = nil, kvRows: [Int]? = nil
                if headPruning {
                    let groups = mostImportantGroups(value: ta.vProj.weight.value, output: ta.oProj.weight.value,
                                                     kvHeads: t.kvHeads, headDim: t.headDim, keep: s.kvHeads)
                    keptGroups[layer] = groups
                    let perGroup = t.heads / t.kvHeads, d = t.headDim
                    kvRows = groups.flatMap { g in (g * d)..<((g + 1) * d) }
                    qRows = groups.flatMap { g in (g * perGroup * d)..<((g + 1) * perGroup * d) }
                }
                try copy(ta.qProj, to: a.qProj, rows: qRows, what: what + ".self_attn.q_proj")
                try copy(ta.kProj, to: a.kProj, rows: kvRows, what: what + ".self_attn.k_proj")
                try copy(ta.vProj, to: a.vProj, rows: kvRows, what: what + ".self_attn.v_proj")
                try copy(ta.oProj, to: a.oProj, columns: qRows, what: what + ".self_attn.o_proj")
                // MLP: the most important neurons, or all.
                let m = block.mlp, tm = tb.mlp
                var neurons: [Int]? = nil
                if s.intermediate < t.intermediate, let gate = tm.gateProj {
                    neurons = try mostImportantNeurons(gate: gate.weight.value, up: tm.upProj.weight.value,
                                                       down: tm.downProj.weight.value, keep: s.intermediate)
                }
                if let g = m.gateProj, let tg = tm.gateProj { try copy(tg, to: g, rows: neurons, what: what + ".mlp.gate_proj") }
                try copy(tm.upProj, to: m.upProj, rows: neurons, what: what + ".mlp.up_proj")
                try copy(tm.downProj, to: m.downProj, columns: neurons, what: what + ".mlp.down_proj")
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

    /// Copies every parameter of `from` into the same-named one of `to` (names starting with one
    /// of `skipping` are left alone); a missing or misshapen tensor is an error naming it.
    static func copy(_ from: Module, to: Module, what: String, skipping: [String] = []) throws {
        let source = Dictionary(from.namedParameters().map { ($0.name, $0.parameter) }, uniquingKeysWith: { a, _ in a })
        for (name, p) in to.namedParameters() where !skipping.contains(where: { name.hasPrefix($0) }) {
            guard let tp = source[name], tp.shape == p.shape else {
                throw StudentError.teacher("no tensor '\(what).\(name)' of shape \(p.shape) in the teacher")
            }
            p.assign(tp.value.detached())
        }
    }

    /// A projection's weight (and bias) from the teacher's, keeping output `rows` or input
    /// `columns` when given.
    static func copy(_ from: Linear, to: Linear, rows: [Int]? = nil, columns: [Int]? = nil, what: String) throws {
        var w = from.weight.value
        if let rows { w = withoutGradients { w.indexSelect(rows, axis: 0) } }
        if let columns { w = withoutGradients { w.indexSelect(columns, axis: 1) } }
        guard w.shape == to.weight.shape else {
            throw StudentError.teacher("no tensor '\(what).weight' of shape \(to.weight.shape) in the teacher")
        }
        to.weight.assign(w.detached())
        if let bias = to.bias {
            guard var b = from.bias?.value else { throw StudentError.teacher("no tensor '\(what).bias' in the teacher") }
            if let rows { b = withoutGradients { b.indexSelect(rows, axis: 0) } }
            guard b.shape == bias.shape else {
                throw StudentError.teacher("no tensor '\(what).bias' of shape \(bias.shape) in the teacher")
            }
            bias.assign(b.detached())
        }
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
                throw FileError(file: to.path, "cannot copy the teacher's \(name): \(ioFailureReason(error))")
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
