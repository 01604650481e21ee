import DistillNN
import Foundation

/// A Hugging Face `config.json`, kept as its JSON object (so unknown keys survive a save) with
/// typed accessors. Architectures read it with their own defaults (those of `transformers`).
public struct ModelConfig: @unchecked Sendable {
    public var json: [String: Any]
    /// Where it came from, for error messages.
    public var source: String

    public init(json: [String: Any], source: String = "config.json") {
        self.json = json
        self.source = source
    }

    /// Reads and parses `config.json`.
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw FileError(file: url.path, "cannot read the model config: \(ioFailureReason(error))")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FileError(file: url.path, "not a JSON object (a Hugging Face config.json was expected)")
        }
        self.init(json: obj, source: url.path)
    }

    public var modelType: String? { json["model_type"] as? String }

    public func int(_ key: String) throws -> Int? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        if let n = v as? NSNumber, !isJSONBool(n), n.doubleValue == n.doubleValue.rounded() { return n.intValue }
        throw FileError(file: source, location: key, "expected an integer, found \(v)")
    }

    public func float(_ key: String) throws -> Float? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        if let n = v as? NSNumber, !isJSONBool(n) { return n.floatValue }
        throw FileError(file: source, location: key, "expected a number, found \(v)")
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        if let n = v as? NSNumber, isJSONBool(n) { return n.boolValue }
        throw FileError(file: source, location: key, "expected true or false, found \(v)")
    }

    public func string(_ key: String) throws -> String? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        if let s = v as? String { return s }
        throw FileError(file: source, location: key, "expected a string, found \(v)")
    }

    /// An integer or a list of integers (as `eos_token_id` may be).
    public func ints(_ key: String) throws -> [Int] {
        guard let v = json[key], !(v is NSNull) else { return [] }
        if let a = v as? [NSNumber] { return a.map(\.intValue) }
        if let i = try int(key) { return [i] }
        throw FileError(file: source, location: key, "expected an integer or a list of integers")
    }

    /// A required positive integer.
    public func positive(_ key: String, default d: Int? = nil) throws -> Int {
        guard let v = try int(key) ?? d else { throw FileError(file: source, location: key, "missing (required)") }
        guard v > 0 else { throw FileError(file: source, location: key, "must be positive, found \(v)") }
        return v
    }

    /// `rope_scaling`: nil, or a supported rule; unknown types are errors.
    public func ropeScaling() throws -> RopeScaling? {
        guard let v = json["rope_scaling"], !(v is NSNull) else { return nil }
        guard let d = v as? [String: Any] else { throw FileError(file: source, location: "rope_scaling", "expected an object") }
        let type = (d["rope_type"] as? String) ?? (d["type"] as? String) ?? ""
        let sub = ModelConfig(json: d, source: source)
        func need(_ k: String) throws -> Float {
            guard let f = try sub.float(k) else { throw FileError(file: source, location: "rope_scaling.\(k)", "missing (required for \(type))") }
            return f
        }
        switch type {
        case "default": return nil
        case "linear": return .linear(factor: try need("factor"))
        case "llama3":
            return .llama3(factor: try need("factor"), lowFreqFactor: try need("low_freq_factor"),
                           highFreqFactor: try need("high_freq_factor"),
                           originalMaxPositions: try sub.positive("original_max_position_embeddings"))
        case "longrope", "su":
            // Phi-3: the factor is max_position_embeddings / original_max_position_embeddings when
            // both are given (transformers' rule), the attention factor √(1 + ln f / ln original).
            func factors(_ k: String) throws -> [Float] {
                guard let a = d[k] as? [NSNumber], !a.isEmpty else {
                    throw FileError(file: source, location: "rope_scaling.\(k)", "expected a list of numbers (required for \(type))")
                }
                return a.map(\.floatValue)
            }
            let short = try factors("short_factor"), long = try factors("long_factor")
            guard short.count == long.count else {
                throw FileError(file: source, location: "rope_scaling.long_factor", "\(long.count) values, but short_factor has \(short.count)")
            }
            let maxPositions = try positive("max_position_embeddings")
            let original = try int("original_max_position_embeddings") ?? maxPositions
            let factor = try int("original_max_position_embeddings") != nil ? Float(maxPositions) / Float(original)
                : try sub.float("factor") ?? 1
            let attention = try sub.float("attention_factor")
                ?? (factor <= 1 ? 1 : (1 + Foundation.log(factor) / Foundation.log(Float(original))).squareRoot())
            return .longrope(shortFactor: short, longFactor: long, originalMaxPositions: original, attentionFactor: attention)
        default:
            throw FileError(file: source, location: "rope_scaling.rope_type",
                            "unsupported RoPE scaling '\(type)' (supported: default, linear, llama3, longrope)")
        }
    }

    /// Serialises with sorted keys and two-space indentation, as `transformers` writes it.
    public func data() throws -> Data {
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    }
}

/// JSONSerialization gives booleans as NSNumbers of Objective-C type "c" (char).
func isJSONBool(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

extension ModelConfig {
    /// Checks that each of `keys` that is set names the activation `expected` (error: the key, what
    /// was expected and found).
    public func requireActivation(_ expected: String, keys: [String] = ["hidden_act"]) throws {
        for key in keys {
            if let act = try string(key), act != expected {
                throw FileError(file: source, location: key, "expected \(expected), found \(act)")
            }
        }
    }

    /// Refuses a boolean option the architecture does not support when it is true.
    public func refuse(_ key: String, _ message: String) throws {
        if try bool(key) == true { throw FileError(file: source, location: key, message) }
    }

    /// A positive integer that may be null (off): the default when the key is absent, nil when null.
    public func optionalPositive(_ key: String, default d: Int?) throws -> Int? {
        guard let v = json[key] else { return d }
        if v is NSNull { return nil }
        return try positive(key)
    }

    /// A positive number that may be null (off): the default when the key is absent, nil when null.
    public func optionalPositiveFloat(_ key: String, default d: Float?) throws -> Float? {
        guard let v = json[key] else { return d }
        if v is NSNull { return nil }
        guard let f = try float(key), f > 0 else { throw FileError(file: source, location: key, "must be a positive number or null, found \(v)") }
        return f
    }

    /// `layer_types` ("sliding_attention" / "full_attention" per layer) as sliding flags, or
    /// `defaultSliding(i)` per layer when absent.
    public func layerTypes(layers: Int, default defaultSliding: (Int) -> Bool) throws -> [Bool] {
        guard let v = json["layer_types"], !(v is NSNull) else { return (0..<layers).map(defaultSliding) }
        guard let types = v as? [String], types.count == layers else {
            throw FileError(file: source, location: "layer_types", "expected \(layers) strings (one per layer), found \(v)")
        }
        return try types.map { t in
            switch t {
            case "sliding_attention": return true
            case "full_attention": return false
            default: throw FileError(file: source, location: "layer_types", "expected sliding_attention or full_attention, found \(t)")
            }
        }
    }
}
