import DistillData
import Foundation

/// What `distill eval` measures the models on.
///
/// Task files are JSONL, one item per line; the keys of the first line decide the kind and every
/// line must be of that kind (errors name the file and line):
///
///     {"prompt": "Tom has 3 apples …", "answer": "7"}                          reasoning / QA
///     {"prompt": "Review: great film. Sentiment:", "choices": ["positive", "negative"], "label": "positive"}
///                                                                              classification
///     {"prompt": "Translate to French: cat", "reference": "chat"}              generation
///     ({"references": ["…", "…"]} for several references)
///
/// - reasoning: the model answers (greedy, chat template when it has one); right = the final
///   answer (`\boxed{}`, `#### …`, or the last number) equals `answer` by the math rules of the
///   verifiers. Also reported: template compliance (`<think>…</think>` then an answer) and
///   reasoning success (compliant and right).
/// - classification: the choice whose tokens have the highest total log-probability after the
///   prompt is the prediction; accuracy and macro-F1.
/// - generation: greedy output against the references; BLEU (sacreBLEU) and ROUGE-1/2/L F.
/// - A `.txt` file is a language-modelling task: perplexity over the text.
/// - `word-problems`: the built-in reasoning task (generated multi-step arithmetic word problems).
public enum EvalTask: Sendable {
    case reasoning([ReasoningItem])
    case classification([ClassificationItem])
    case generation([GenerationItem])
    case languageModeling(text: String, source: String)

    public struct ReasoningItem: Sendable, Equatable {
        public var prompt: String
        public var answer: String
        public init(prompt: String, answer: String) { self.prompt = prompt; self.answer = answer }
    }

    public struct ClassificationItem: Sendable, Equatable {
        public var prompt: String
        public var choices: [String]
        public var label: String
        public init(prompt: String, choices: [String], label: String) { self.prompt = prompt; self.choices = choices; self.label = label }
    }

    public struct GenerationItem: Sendable, Equatable {
        public var prompt: String
        public var references: [String]
        public init(prompt: String, references: [String]) { self.prompt = prompt; self.references = references }
    }

    public var kind: String {
        switch self {
        case .reasoning: return "reasoning"
        case .classification: return "classification"
        case .generation: return "generation"
        case .languageModeling: return "language modelling"
        }
    }

    /// The items' prompts (nil for a language-modelling text).
    public var prompts: [String]? {
        switch self {
        case .reasoning(let i): return i.map(\.prompt)
        case .classification(let i): return i.map(\.prompt)
        case .generation(let i): return i.map(\.prompt)
        case .languageModeling: return nil
        }
    }

    public var count: Int { prompts?.count ?? 1 }

    /// The first `n` items (a text stays whole).
    public func prefix(_ n: Int) -> EvalTask {
        switch self {
        case .reasoning(let i): return .reasoning(Array(i.prefix(n)))
        case .classification(let i): return .classification(Array(i.prefix(n)))
        case .generation(let i): return .generation(Array(i.prefix(n)))
        case .languageModeling: return self
        }
    }

    /// The built-in task names.
    public static let builtIn = ["word-problems"]

    /// A built-in task name or a file (`.jsonl` items, `.txt` text). `limit` keeps the first items.
    public static func load(_ name: String, limit: Int? = nil, seed: UInt64 = 2024) throws -> EvalTask {
        if name == "word-problems" {
            let problems = WordProblems.generate(count: limit ?? 200, seed: seed, idPrefix: "eval")
            return .reasoning(problems.map { ReasoningItem(prompt: $0.prompt, answer: String($0.answer)) })
        }
        guard FileManager.default.fileExists(atPath: name) else {
            throw TraceDataError.file(file: name, reason: "no such task file (built-in tasks: \(builtIn.joined(separator: ", ")); files: .jsonl items or .txt text)")
        }
        if name.hasSuffix(".txt") {
            guard let data = FileManager.default.contents(atPath: name), let text = String(data: data, encoding: .utf8) else {
                throw TraceDataError.file(file: name, reason: "cannot read the file as UTF-8 text")
            }
            guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw TraceDataError.file(file: name, reason: "the text is empty")
            }
            return .languageModeling(text: text, source: name)
        }
        let task = try parse(lines: try TraceJSONL.lines(path: name), file: name)
        return limit.map(task.prefix) ?? task
    }

    static func parse(lines: [(line: Int, text: String)], file: String) throws -> EvalTask {
        guard !lines.isEmpty else { throw TraceDataError.file(file: file, reason: "the task holds no items (empty)") }
        enum Kind { case reasoning, classification, generation }
        var kind: Kind?
        var reasoning: [ReasoningItem] = [], classification: [ClassificationItem] = [], generation: [GenerationItem] = []
        let expected = "\"prompt\" and one of \"answer\", \"choices\"+\"label\", \"reference\"/\"references\""
        for (line, text) in lines {
            let d = try TraceJSONL.object(text, file: file, line: line, expected: expected)
            func fail(_ r: String) -> TraceDataError { .line(file: file, line: line, reason: r) }
            func string(_ key: String) throws -> String? {
                guard let v = d[key], !(v is NSNull) else { return nil }
                guard let s = TraceJSONL.scalarString(v) else { throw fail("\"\(key)\" must be a string, found \(TraceJSONL.describe(v))") }
                return s
            }
            guard let prompt = try string("prompt"), !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw fail(d["prompt"] == nil ? "missing \"prompt\" (expected \(expected))" : "\"prompt\" is empty")
            }
            let here: Kind
            if d["choices"] != nil || d["label"] != nil { here = .classification }
            else if d["answer"] != nil { here = .reasoning }
            else if d["reference"] != nil || d["references"] != nil { here = .generation }
            else { throw fail("no \"answer\", \"choices\"/\"label\" or \"reference\"/\"references\" (expected \(expected))") }
            if let k = kind, k != here {
                throw fail("this item is a \(name(here)) item but line \(lines[0].line) made the task \(name(k)); one kind per file")
            }
            kind = here
            switch here {
            case .reasoning:
                guard let a = try string("answer"), !a.isEmpty else { throw fail("\"answer\" is empty") }
                reasoning.append(ReasoningItem(prompt: prompt, answer: a))
            case .classification:
                guard let c = d["choices"] as? [Any], !c.isEmpty else { throw fail("\"choices\" must be a non-empty array of strings") }
                let choices = try c.map { v -> String in
                    guard let s = v as? String, !s.isEmpty else { throw fail("\"choices\" must hold non-empty strings, found \(TraceJSONL.describe(v))") }
                    return s
                }
                guard Set(choices).count == choices.count else { throw fail("\"choices\" holds a choice twice") }
                guard let label = try string("label") else { throw fail("missing \"label\"") }
                guard choices.contains(label) else { throw fail("\"label\" \"\(label)\" is not one of the choices \(choices)") }
                classification.append(ClassificationItem(prompt: prompt, choices: choices, label: label))
            case .generation:
                var refs: [String] = []
                if let r = try string("reference") { refs.append(r) }
                if let rs = d["references"] {
                    guard let arr = rs as? [Any], !arr.isEmpty else { throw fail("\"references\" must be a non-empty array of strings") }
                    for v in arr {
                        guard let s = v as? String else { throw fail("\"references\" must hold strings, found \(TraceJSONL.describe(v))") }
                        refs.append(s)
                    }
                }
                generation.append(GenerationItem(prompt: prompt, references: refs))
            }
        }
        switch kind! {
        case .reasoning: return .reasoning(reasoning)
        case .classification: return .classification(classification)
        case .generation: return .generation(generation)
        }
        func name(_ k: Kind) -> String {
            switch k {
            case .reasoning: return "reasoning (\"answer\")"
            case .classification: return "classification (\"choices\"/\"label\")"
            case .generation: return "generation (\"reference\")"
            }
        }
    }
}
