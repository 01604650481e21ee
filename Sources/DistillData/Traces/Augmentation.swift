import DistillTensor
import Foundation

/// Data augmentation of training prompts (seed 000): more varied inputs from the same examples.
///
/// Local methods work on words (maximal runs of letters; numbers, punctuation and spacing are
/// left exactly as they are, so a word problem keeps its quantities):
/// - `synonym`: each word with an entry in the synonym list is replaced with probability p by
///   one of its synonyms (capitalisation kept);
/// - `swap`: round(p · words) times, two random words trade places;
/// - `delete`: each word is dropped with probability p (at least one word stays).
/// Server methods ask an OpenAI-compatible model (`AugmentationServer`):
/// - `paraphrase`: a rewording that keeps every number and the meaning;
/// - `backTranslate`: into a pivot language and back.
///
/// Only the asking side changes: `text`, `prompt` and `question` strings and the content of
/// `user` messages; answers, assistant turns and every other key stay as they were. Each
/// augmented line gets `"augmentation": {"method", "seed", "source_line"}` (its provenance).
/// Draws come from `RandomGenerator(seed)` mixed with the line and copy numbers, so a rerun gives
/// the same file.
public enum AugmentationMethod: String, CaseIterable, Sendable {
    case synonym, swap, delete, paraphrase
    case backTranslate = "back-translate"

    public var needsServer: Bool { self == .paraphrase || self == .backTranslate }
}

/// A small built-in English synonym list (everyday words and the verbs and nouns of word
/// problems), each group a set of interchangeable words; a word maps to the others of its group.
public struct SynonymList: Sendable {
    public let synonyms: [String: [String]]

    /// Groups of interchangeable lower-case words.
    public init(groups: [[String]]) {
        var map: [String: [String]] = [:]
        for g in groups {
            for w in g { map[w, default: []] += g.filter { $0 != w && !(map[w]?.contains($0) ?? false) } }
        }
        synonyms = map
    }

    /// Reads a word list file: one group per line, words separated by commas; blank lines and
    /// lines starting with # are skipped. A line with fewer than two words is an error.
    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw TraceDataError.file(file: path, reason: "cannot read the word list")
        }
        var groups: [[String]] = []
        for (i, raw) in text.components(separatedBy: "\n").enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let words = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
            guard words.count >= 2 else {
                throw TraceDataError.line(file: path, line: i + 1, reason: "expected two or more comma-separated words, found \"\(line)\"")
            }
            groups.append(words)
        }
        guard !groups.isEmpty else { throw TraceDataError.file(file: path, reason: "the word list holds no groups") }
        self.init(groups: groups)
    }

    public static let english = SynonymList(groups: [
        ["buys", "purchases", "gets"], ["buy", "purchase", "get"], ["bought", "purchased", "got"],
        ["gives", "hands", "passes"], ["give", "hand", "pass"], ["gave", "handed", "passed"],
        ["has", "owns", "holds"], ["have", "own", "hold"], ["had", "owned", "held"],
        ["sells", "trades"], ["sold", "traded"], ["makes", "produces", "creates"], ["made", "produced", "created"],
        ["eats", "consumes"], ["ate", "consumed"], ["finds", "discovers"], ["found", "discovered"],
        ["takes", "grabs"], ["took", "grabbed"], ["wants", "wishes", "hopes"], ["needs", "requires"],
        ["starts", "begins"], ["started", "began"], ["ends", "finishes"], ["ended", "finished"],
        ["shares", "splits", "divides"], ["shared", "split", "divided"], ["collects", "gathers"], ["collected", "gathered"],
        ["spends", "uses"], ["spent", "used"], ["saves", "keeps"], ["saved", "kept"],
        ["picks", "chooses", "selects"], ["picked", "chose", "selected"], ["walks", "strolls"], ["runs", "jogs"],
        ["says", "states"], ["said", "stated"], ["asks", "wonders"], ["asked", "wondered"],
        ["big", "large", "huge"], ["small", "little", "tiny"], ["quick", "fast", "rapid"], ["slow", "unhurried"],
        ["happy", "glad", "cheerful"], ["sad", "unhappy"], ["easy", "simple"], ["hard", "difficult", "tough"],
        ["total", "sum"], ["each", "every"], ["whole", "entire"], ["many", "numerous"], ["several", "a few"],
        ["friend", "pal", "buddy"], ["friends", "pals", "buddies"], ["shop", "store"], ["shops", "stores"],
        ["kid", "child"], ["kids", "children"], ["car", "automobile"], ["cars", "automobiles"],
        ["gift", "present"], ["gifts", "presents"], ["job", "task"], ["jobs", "tasks"], ["trip", "journey"],
        ["road", "street"], ["house", "home"], ["houses", "homes"], ["bag", "sack"], ["bags", "sacks"],
        ["box", "crate", "carton"], ["boxes", "crates", "cartons"], ["pile", "heap", "stack"], ["piles", "heaps", "stacks"],
        ["money", "cash"], ["price", "cost"], ["prices", "costs"], ["answer", "reply", "response"],
        ["question", "query"], ["problem", "puzzle"], ["begin", "start"], ["finish", "complete", "end"],
        ["also", "too"], ["then", "afterwards"], ["later", "afterwards"], ["now", "currently"],
        ["very", "really", "quite"], ["more", "additional", "extra"], ["rest", "remainder"],
    ])
}

/// Paraphrase and back-translation through an OpenAI-compatible chat model.
public struct AugmentationServer: Sendable {
    public var client: any TeacherClient
    /// The language back-translation goes through.
    public var pivot: String
    public var temperature: Double
    public var maxTokens: Int

    public init(client: any TeacherClient, pivot: String = "French", temperature: Double = 0.7, maxTokens: Int = 512) {
        self.client = client
        self.pivot = pivot
        self.temperature = temperature
        self.maxTokens = maxTokens
    }

    func ask(_ instruction: String, _ text: String, seed: UInt64) async throws -> String {
        let r = try await client.complete(messages: [TeacherMessage(role: "system", content: instruction), TeacherMessage(role: "user", content: text)],
                                          sampling: TeacherSampling(n: 1, temperature: temperature, maxTokens: maxTokens, seed: seed))
        guard let out = r.completions.first?.text.trimmingCharacters(in: .whitespacesAndNewlines), !out.isEmpty else {
            throw TraceDataError.invalidArgument("the augmentation server (\(client.modelName)) returned no text")
        }
        return out
    }

    public func paraphrase(_ text: String, seed: UInt64) async throws -> String {
        try await ask("Rewrite the user's text in different words. Keep its meaning, every number and every name exactly. Reply with the rewritten text only.", text, seed: seed)
    }

    public func backTranslate(_ text: String, seed: UInt64) async throws -> String {
        let there = try await ask("Translate the user's text into \(pivot). Keep every number. Reply with the translation only.", text, seed: seed)
        return try await ask("Translate the user's text into English. Keep every number. Reply with the translation only.", there, seed: seed &+ 1)
    }
}

/// Augments JSONL data (see `AugmentationMethod`).
public struct Augmenter: Sendable {
    public var method: AugmentationMethod
    /// Per-word probability (synonym, delete) or share of words swapped (swap).
    public var probability: Double
    public var seed: UInt64
    public var synonyms: SynonymList
    public var server: AugmentationServer?

    public init(method: AugmentationMethod, probability: Double = 0.2, seed: UInt64 = 0, synonyms: SynonymList = .english,
                server: AugmentationServer? = nil) throws {
        guard probability > 0, probability <= 1 else {
            throw TraceDataError.invalidArgument("the augmentation probability must be in (0, 1], got \(probability)")
        }
        if method.needsServer && server == nil {
            throw TraceDataError.invalidArgument("\(method.rawValue) needs an OpenAI-compatible server (--server-url and --server-model)")
        }
        self.method = method
        self.probability = probability
        self.seed = seed
        self.synonyms = synonyms
        self.server = server
    }

    /// Keys whose strings are the asking side.
    static let promptKeys: Set<String> = ["text", "prompt", "question"]

    /// What `augment` wrote.
    public struct Output: Sendable {
        public var lines: [String]
        /// Variants not written because the server changed the numbers of a string in every try.
        public var dropped: Int
    }

    /// Tries per string for the server methods: a rewording whose numbers differ from the
    /// original's (a broken word problem) is asked again with another seed.
    public static let serverTries = 3

    /// The input's lines, and after each `copies` augmented variants (with provenance). Errors name
    /// file and line.
    public func augment(path: String, copies: Int, keepOriginals: Bool = true) async throws -> Output {
        guard copies >= 1 else { throw TraceDataError.invalidArgument("copies must be at least 1, got \(copies)") }
        let lines = try TraceJSONL.lines(path: path)
        guard !lines.isEmpty else { throw TraceDataError.file(file: path, reason: "the file holds no examples (empty)") }
        var out: [String] = [], dropped = 0
        for (line, text) in lines {
            let obj = try TraceJSONL.object(text, file: path, line: line, expected: "one example per line")
            guard Self.hasPromptText(obj) else {
                throw TraceDataError.line(file: path, line: line, reason: "nothing to augment: no \"text\", \"prompt\" or \"question\" string and no user message")
            }
            if keepOriginals { out.append(text.trimmingCharacters(in: .whitespaces)) }
            for copy in 0..<copies {
                let s = Self.mix(seed, UInt64(line), UInt64(copy))
                var g = RandomGenerator(seed: s)
                guard var changed = try await transform(obj, rng: &g, seed: s) else { dropped += 1; continue }
                changed["augmentation"] = ["method": method.rawValue, "seed": NSNumber(value: s), "source_line": line] as [String: Any]
                let data = try JSONSerialization.data(withJSONObject: changed, options: [.sortedKeys, .withoutEscapingSlashes])
                out.append(String(decoding: data, as: UTF8.self))
            }
        }
        return Output(lines: out, dropped: dropped)
    }

    static func hasPromptText(_ obj: [String: Any]) -> Bool {
        if promptKeys.contains(where: { obj[$0] is String }) { return true }
        return (obj["messages"] as? [[String: Any]])?.contains { $0["role"] as? String == "user" && $0["content"] is String } ?? false
    }

    /// The object with its asking side augmented; nil when a server rewording kept changing numbers.
    func transform(_ obj: [String: Any], rng: inout RandomGenerator, seed: UInt64) async throws -> [String: Any]? {
        var out = obj
        var k: UInt64 = 0
        for key in Self.promptKeys.sorted() {
            if let s = obj[key] as? String {
                guard let a = try await augmentText(s, rng: &rng, seed: seed &+ k) else { return nil }
                out[key] = a
                k += UInt64(2 * Self.serverTries)
            }
        }
        if var messages = obj["messages"] as? [[String: Any]] {
            for i in messages.indices where messages[i]["role"] as? String == "user" {
                if let s = messages[i]["content"] as? String {
                    guard let a = try await augmentText(s, rng: &rng, seed: seed &+ k) else { return nil }
                    messages[i]["content"] = a
                    k += UInt64(2 * Self.serverTries)
                }
            }
            out["messages"] = messages
        }
        return out
    }

    /// One string, augmented; nil when every server try changed its numbers.
    public func augmentText(_ text: String, rng: inout RandomGenerator, seed: UInt64) async throws -> String? {
        guard method.needsServer, let server else { return localAugment(text, rng: &rng) }
        let numbers = Self.numbers(text)
        for t in 0..<Self.serverTries {
            let s = seed &+ UInt64(2 * t)
            let out = method == .paraphrase ? try await server.paraphrase(text, seed: s) : try await server.backTranslate(text, seed: s)
            if Self.numbers(out) == numbers { return out }
        }
        return nil
    }

    /// The numbers of a text (runs of digits, with a decimal part), sorted: what a rewording of a
    /// word problem must keep.
    static func numbers(_ text: String) -> [String] {
        var out: [String] = [], current = ""
        let chars = Array(text)
        for (i, ch) in chars.enumerated() {
            if ch.isASCII && ch.isNumber {
                current.append(ch)
            } else if ch == ".", !current.isEmpty, i + 1 < chars.count, chars[i + 1].isASCII, chars[i + 1].isNumber {
                current.append(ch)
            } else if !current.isEmpty {
                out.append(current)
                current = ""
            }
        }
        if !current.isEmpty { out.append(current) }
        return out.sorted()
    }

    /// The local methods on one string.
    public func localAugment(_ text: String, rng: inout RandomGenerator) -> String {
        var pieces = Self.pieces(text)
        let words = pieces.indices.filter { pieces[$0].isWord }
        guard !words.isEmpty else { return text }
        switch method {
        case .synonym:
            for i in words {
                guard let options = synonyms.synonyms[pieces[i].text.lowercased()], !options.isEmpty else { continue }
                guard Double(rng.nextFloat()) < probability else { continue }
                let choice = options[Int(rng.next() % UInt64(options.count))]
                pieces[i].text = Self.matchCase(choice, like: pieces[i].text)
            }
        case .swap:
            let n = Swift.max(1, Int((probability * Double(words.count)).rounded()))
            guard words.count >= 2 else { return text }
            for _ in 0..<n {
                let a = words[Int(rng.next() % UInt64(words.count))], b = words[Int(rng.next() % UInt64(words.count))]
                let t = pieces[a].text
                pieces[a].text = pieces[b].text
                pieces[b].text = t
            }
        case .delete:
            var dropped = Set<Int>()
            for i in words where Double(rng.nextFloat()) < probability { dropped.insert(i) }
            if dropped.count == words.count { dropped.remove(words[Int(rng.next() % UInt64(words.count))]) }
            // A dropped word takes the space after it along.
            var kept: [Piece] = []
            var skipSpace = false
            for (i, p) in pieces.enumerated() {
                if dropped.contains(i) { skipSpace = true; continue }
                if skipSpace && p.kind == 1 { skipSpace = false; continue }
                skipSpace = false
                kept.append(p)
            }
            pieces = kept
        case .paraphrase, .backTranslate:
            return text
        }
        return pieces.map(\.text).joined()
    }

    struct Piece {
        var text: String
        /// 0: a word (letters), 1: spaces, 2: anything else (digits, punctuation, line breaks).
        var kind: Int
        var isWord: Bool { kind == 0 }
    }

    /// The text as runs of letters, of spaces, and of anything else, so that joining the pieces
    /// gives the text back.
    static func pieces(_ text: String) -> [Piece] {
        var out: [Piece] = []
        for ch in text {
            let kind = ch.isLetter ? 0 : ch == " " ? 1 : 2
            if let last = out.last, last.kind == kind {
                out[out.count - 1].text.append(ch)
            } else {
                out.append(Piece(text: String(ch), kind: kind))
            }
        }
        return out
    }

    static func matchCase(_ word: String, like original: String) -> String {
        if original.count > 1, original == original.uppercased() { return word.uppercased() }
        if let f = original.first, f.isUppercase { return word.prefix(1).uppercased() + word.dropFirst() }
        return word
    }

    static func mix(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 {
        var z = a &+ 0x9E37_79B9_7F4A_7C15 &* (b &+ 1) &+ 0xBF58_476D_1CE4_E5B9 &* (c &+ 1)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
