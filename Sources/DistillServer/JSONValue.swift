import DistillModels
import Foundation

/// Request bodies are DistillModels' `JSONValue` (exact types, so that type errors can name the
/// parameter).
extension JSONValue {
    /// Parses a request body; malformed JSON is a 400.
    static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        guard !bytes.isEmpty else { throw OpenAIError.invalidRequest("the request body is empty; expected a JSON object") }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            throw OpenAIError.invalidRequest("the request body is not valid JSON")
        }
    }

    /// The JSON type name, for error messages.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// The value as a chat template sees it.
    var jinja: JinjaValue {
        switch self {
        case .null: return .none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let a): return .array(a.map(\.jinja))
        case .object(let o): return .dict(JinjaDict(o.keys.sorted().map { ($0, o[$0]!.jinja) }))
        }
    }
}

/// Typed access to a request object's fields; every mismatch is an `invalid_request_error`
/// naming the parameter.
struct JSONFields {
    let fields: [String: JSONValue]
    /// Prefix of parameter names in errors (`messages[2].`).
    var path = ""

    init(_ value: JSONValue, path: String = "") throws {
        guard case .object(let o) = value else {
            throw OpenAIError.invalidRequest(path.isEmpty ? "the request body must be a JSON object, got \(value.typeName)"
                                                          : "\(path) must be an object, got \(value.typeName)",
                                             param: path.isEmpty ? nil : path)
        }
        fields = o
        self.path = path
    }

    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The field, nil when absent or null.
    subscript(_ key: String) -> JSONValue? {
        if let v = fields[key], v != .null { return v }
        return nil
    }

    func typeError(_ key: String, _ expected: String, _ v: JSONValue) -> OpenAIError {
        .invalidRequest("'\(name(key))' must be \(expected), got \(v.typeName)", param: name(key))
    }

    func string(_ key: String) throws -> String? {
        guard let v = self[key] else { return nil }
        guard case .string(let s) = v else { throw typeError(key, "a string", v) }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = self[key] else { return nil }
        guard case .bool(let b) = v else { throw typeError(key, "a boolean", v) }
        return b
    }

    func int(_ key: String) throws -> Int? {
        guard let v = self[key] else { return nil }
        switch v {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9e15: return Int(d)
        default: throw typeError(key, "an integer", v)
        }
    }

    func double(_ key: String) throws -> Double? {
        guard let v = self[key] else { return nil }
        switch v {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: throw typeError(key, "a number", v)
        }
    }

    /// A string or a list of strings (`stop`).
    func strings(_ key: String) throws -> [String]? {
        guard let v = self[key] else { return nil }
        switch v {
        case .string(let s): return [s]
        case .array(let a):
            return try a.enumerated().map { i, e in
                guard case .string(let s) = e else {
                    throw OpenAIError.invalidRequest("'\(name(key))[\(i)]' must be a string, got \(e.typeName)", param: name(key))
                }
                return s
            }
        default: throw typeError(key, "a string or an array of strings", v)
        }
    }

    func object(_ key: String) throws -> JSONFields? {
        guard let v = self[key] else { return nil }
        return try JSONFields(v, path: name(key))
    }

    func invalid(_ key: String, _ message: String) -> OpenAIError {
        .invalidRequest("'\(name(key))' \(message)", param: name(key))
    }
}

/// An error as OpenAI's API answers it: `{"error": {"message", "type", "param", "code"}}` with an
/// HTTP status.
public struct OpenAIError: Error, Equatable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil) -> OpenAIError {
        OpenAIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    /// A scheduler's failure as the API reports it: 503 while shutting down or cancelled, 400 for
    /// a job whose own options or prompt made generation fail.
    init(_ e: GenerationSchedulerError) {
        switch e {
        case .shuttingDown: self.init(status: 503, message: "the server is shutting down", type: "server_error")
        case .cancelled: self.init(status: 503, message: "generation was cancelled", type: "server_error")
        case .generation(let m): self = .invalidRequest(m)
        }
    }

    public var description: String { "\(status) \(type): \(message)" }

    struct Body: Encodable {
        struct Inner: Encodable {
            var message: String
            var type: String
            @NullWhenNil var param: String? = nil
            @NullWhenNil var code: String? = nil
        }
        var error: Inner
    }

    var body: Body { Body(error: .init(message: message, type: type, param: param, code: code)) }
}
