import Foundation
import Yams

/// A recipe that cannot be used: the file, the line (when known), the dotted key path and what
/// is wrong, e.g. `kd.yaml:12: schedule.lr_warmup: unknown key; known keys: steps, batch_size, …`.
public struct RecipeError: Error, Equatable, CustomStringConvertible {
    /// The recipe file's name as given (or `--set` for a value that came from an override).
    public var file: String
    public var line: Int?
    /// Dotted key path (`schedule.lr`); empty for the document itself.
    public var key: String
    public var message: String

    public init(file: String, line: Int?, key: String, _ message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        return key.isEmpty ? "\(place): \(message)" : "\(place): \(key): \(message)"
    }
}

/// The YAML document as a tree with line numbers (1-based, from Yams' marks), which overrides
/// (`--set key.path=value`) can edit before the recipe is read.
package indirect enum RecipeNode {
    case scalar(String, plain: Bool, line: Int?)
    case mapping([(key: String, value: RecipeNode, line: Int?)], line: Int?)
    case sequence([RecipeNode], line: Int?)

    package var line: Int? {
        switch self {
        case .scalar(_, _, let l), .mapping(_, let l), .sequence(_, let l): return l
        }
    }

    /// A plain `~`, `null`, `Null`, `NULL` or empty scalar.
    package var isNull: Bool {
        if case let .scalar(s, plain, _) = self, plain, ["", "~", "null", "Null", "NULL"].contains(s) { return true }
        return false
    }

    /// How an unexpected value is shown in errors: `"abc"`, `3`, `a mapping`, `a list`.
    /// Whether this is a list with no items.
    package var isEmptySequence: Bool {
        if case let .sequence(items, _) = self { return items.isEmpty }
        return false
    }

    package var found: String {
        switch self {
        case let .scalar(s, plain, _):
            if isNull { return "null" }
            if plain, Double(s) != nil || ["true", "false", "yes", "no", "on", "off"].contains(s.lowercased()) { return s }
            return "\"\(s)\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        }
    }

    /// Converts a Yams node; `lineOffset` shifts lines (0 for a file).
    static func from(_ node: Node, file: String, key: String) throws -> RecipeNode {
        let line = node.mark?.line
        switch node {
        case .scalar(let s):
            return .scalar(s.string, plain: s.style == .plain, line: line)
        case .sequence(let seq):
            return .sequence(try seq.enumerated().map { try from($1, file: file, key: "\(key)[\($0)]") }, line: line)
        case .mapping(let map):
            var entries: [(key: String, value: RecipeNode, line: Int?)] = []
            for (k, v) in map {
                guard case .scalar(let ks) = k else {
                    throw RecipeError(file: file, line: k.mark?.line, key: key, "keys must be plain strings")
                }
                let path = key.isEmpty ? ks.string : key + "." + ks.string
                if entries.contains(where: { $0.key == ks.string }) {
                    throw RecipeError(file: file, line: k.mark?.line, key: path, "duplicate key")
                }
                entries.append((ks.string, try from(v, file: file, key: path), k.mark?.line))
            }
            return .mapping(entries, line: line)
        @unknown default:
            throw RecipeError(file: file, line: line, key: key, "unsupported YAML node (aliases are not allowed)")
        }
    }

    /// Parses YAML text into a tree; syntax errors name the file and line.
    /// Parses a document and applies `overrides` (`key.path=value`, the value YAML) in order;
    /// an empty document is an empty mapping.
    package static func parse(_ yaml: String, file: String, overrides: [String]) throws -> RecipeNode {
        var root = try parse(yaml, file: file) ?? .mapping([], line: 1)
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else {
                throw RecipeError(file: "--set", line: nil, key: o, "expected key.path=value")
            }
            let key = String(o[..<eq]).trimmingCharacters(in: .whitespaces)
            let value = String(o[o.index(after: eq)...])
            let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !key.isEmpty, !parts.contains(where: \.isEmpty) else {
                throw RecipeError(file: "--set", line: nil, key: key, "expected key.path=value")
            }
            let node = try parse(value, file: "--set \(key)").map(\.withoutLines) ?? .scalar("", plain: true, line: nil)
            try root.set(parts, to: node, file: "--set")
        }
        return root
    }

    /// The value at a dotted path of mappings, nil when absent.
    package func value(at path: [String]) -> RecipeNode? {
        guard let first = path.first else { return self }
        guard case let .mapping(entries, _) = self, let child = entries.first(where: { $0.key == first })?.value else { return nil }
        return child.value(at: Array(path.dropFirst()))
    }

    /// The node with no line numbers (a value from the command line has none in the file).
    var withoutLines: RecipeNode {
        switch self {
        case let .scalar(s, p, _): return .scalar(s, plain: p, line: nil)
        case let .sequence(items, _): return .sequence(items.map(\.withoutLines), line: nil)
        case let .mapping(entries, _): return .mapping(entries.map { ($0.key, $0.value.withoutLines, nil) }, line: nil)
        }
    }

    package static func parse(_ yaml: String, file: String) throws -> RecipeNode? {
        let node: Node?
        do { node = try Yams.compose(yaml: yaml) } catch let e as YamlError {
            throw RecipeError(file: file, line: yamlErrorLine(e), key: "", "invalid YAML: \(yamlErrorProblem(e))")
        } catch {
            throw RecipeError(file: file, line: nil, key: "", "invalid YAML: \(error)")
        }
        return try node.map { try from($0, file: file, key: "") }
    }

    static func yamlErrorLine(_ e: YamlError) -> Int? {
        switch e {
        case let .scanner(_, _, mark, _), let .parser(_, _, mark, _), let .composer(_, _, mark, _): return mark.line
        default: return nil
        }
    }

    static func yamlErrorProblem(_ e: YamlError) -> String {
        switch e {
        case let .scanner(_, problem, _, _), let .parser(_, problem, _, _), let .composer(_, problem, _, _): return problem
        default: return "\(e)"
        }
    }

    /// Sets `path` (dotted) to `value`, creating mappings on the way. Fails when the path goes
    /// through a value that is not a mapping.
    package mutating func set(_ path: [String], to value: RecipeNode, file: String, done: [String] = []) throws {
        guard let first = path.first else { self = value; return }
        guard case .mapping(var entries, let line) = self else {
            throw RecipeError(file: file, line: nil, key: done.joined(separator: "."),
                              "cannot set \(path.joined(separator: ".")) inside \(found)")
        }
        if let i = entries.firstIndex(where: { $0.key == first }) {
            try entries[i].value.set(Array(path.dropFirst()), to: value, file: file, done: done + [first])
        } else {
            var child: RecipeNode = .mapping([], line: nil)
            try child.set(Array(path.dropFirst()), to: value, file: file, done: done + [first])
            entries.append((first, child, nil))
        }
        self = .mapping(entries, line: line)
    }
}

/// Reads one mapping of a recipe: checks its keys against the known ones, then hands out typed
/// values, each error naming the file, line and key path.
package struct RecipeSection {
    package let file: String
    package let path: String
    package let line: Int?
    package let entries: [(key: String, value: RecipeNode, line: Int?)]

    /// `keyLine`: the line of the key that holds this mapping (errors about missing keys point there).
    package init(_ node: RecipeNode, file: String, path: String, known: [String], keyLine: Int? = nil) throws {
        guard case let .mapping(entries, mappingLine) = node else {
            throw RecipeError(file: file, line: node.line, key: path, "expected a mapping, found \(node.found)")
        }
        self.file = file
        self.path = path
        self.line = keyLine ?? (path.isEmpty ? nil : mappingLine)
        self.entries = entries
        for e in entries where !known.contains(e.key) {
            throw RecipeError(file: file, line: e.line ?? self.line, key: keyPath(e.key),
                              "unknown key; known keys: \(known.joined(separator: ", "))")
        }
    }

    package func keyPath(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    /// The value of `key`, nil when absent or null.
    package func node(_ key: String) -> RecipeNode? {
        guard let n = entries.first(where: { $0.key == key })?.value, !n.isNull else { return nil }
        return n
    }

    package func has(_ key: String) -> Bool { node(key) != nil }

    package func fail(_ key: String, _ node: RecipeNode?, _ message: String) -> RecipeError {
        RecipeError(file: file, line: node?.line ?? entries.first(where: { $0.key == key })?.line ?? line,
                    key: keyPath(key), message)
    }

    package func missing(_ key: String) -> RecipeError {
        RecipeError(file: file, line: line, key: keyPath(key), "missing required key")
    }

    package func required<T>(_ key: String, _ read: (String) throws -> T?) throws -> T {
        guard let v = try read(key) else { throw missing(key) }
        return v
    }

    package func section(_ key: String, known: [String]) throws -> RecipeSection? {
        guard let n = node(key) else { return nil }
        return try RecipeSection(n, file: file, path: keyPath(key), known: known,
                                 keyLine: entries.first(where: { $0.key == key })?.line)
    }

    package func string(_ key: String) throws -> String? {
        guard let n = node(key) else { return nil }
        guard case let .scalar(s, _, _) = n, !s.isEmpty else { throw fail(key, n, "expected a string, found \(n.found)") }
        return s
    }

    package func int(_ key: String, min: Int? = nil) throws -> Int? {
        guard let n = node(key) else { return nil }
        let expected = min.map { "an integer ≥ \($0)" } ?? "an integer"
        guard case let .scalar(s, _, _) = n, let v = Int(s.replacingOccurrences(of: "_", with: "")) else {
            throw fail(key, n, "expected \(expected), found \(n.found)")
        }
        if let min, v < min { throw fail(key, n, "expected \(expected), found \(v)") }
        return v
    }

    /// A number in a range: `lower` (inclusive unless `openLower`) up to `upper` (inclusive unless `openUpper`).
    package func double(_ key: String, lower: Double? = nil, openLower: Bool = false, upper: Double? = nil, openUpper: Bool = false) throws -> Double? {
        guard let n = node(key) else { return nil }
        var expected = "a number"
        switch (lower, upper) {
        case let (l?, u?): expected += " in \(openLower ? "(" : "[")\(fmt(l)), \(fmt(u))\(openUpper ? ")" : "]")"
        case let (l?, nil): expected += openLower ? " > \(fmt(l))" : " ≥ \(fmt(l))"
        case let (nil, u?): expected += openUpper ? " < \(fmt(u))" : " ≤ \(fmt(u))"
        default: break
        }
        guard case let .scalar(s, _, _) = n, let v = Double(s.replacingOccurrences(of: "_", with: "")), v.isFinite else {
            throw fail(key, n, "expected \(expected), found \(n.found)")
        }
        if let l = lower, openLower ? v <= l : v < l { throw fail(key, n, "expected \(expected), found \(s)") }
        if let u = upper, openUpper ? v >= u : v > u { throw fail(key, n, "expected \(expected), found \(s)") }
        return v
    }

    package func float(_ key: String, lower: Double? = nil, openLower: Bool = false, upper: Double? = nil, openUpper: Bool = false) throws -> Float? {
        try double(key, lower: lower, openLower: openLower, upper: upper, openUpper: openUpper).map { Float($0) }
    }

    package func bool(_ key: String) throws -> Bool? {
        guard let n = node(key) else { return nil }
        if case let .scalar(s, _, _) = n {
            switch s.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: break
            }
        }
        throw fail(key, n, "expected true or false, found \(n.found)")
    }

    package func choice(_ key: String, _ options: [String]) throws -> String? {
        guard let n = node(key) else { return nil }
        guard case let .scalar(s, _, _) = n, options.contains(s) else {
            throw fail(key, n, "expected one of \(options.joined(separator: ", ")), found \(n.found)")
        }
        return s
    }

    package func strings(_ key: String) throws -> [String]? {
        guard let n = node(key) else { return nil }
        guard case let .sequence(items, _) = n, !items.isEmpty else {
            throw fail(key, n, "expected a non-empty list of strings, found \(n.found)")
        }
        return try items.map { item in
            guard case let .scalar(s, _, _) = item, !s.isEmpty else {
                throw fail(key, item, "expected a non-empty list of strings, found \(item.found) in the list")
            }
            return s
        }
    }

    private func fmt(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v) }
}
