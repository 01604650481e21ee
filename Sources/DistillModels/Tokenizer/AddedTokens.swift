/// A token matched in the text before BPE (tokenizer.json `added_tokens`, or GGUF control and
/// user-defined tokens), with Hugging Face's flags.
public struct AddedToken: Equatable, Hashable, Sendable {
    public var id: Int
    public var content: String
    /// Special tokens are skipped by `decode(skipSpecialTokens: true)` and not matched when special
    /// tokens are not parsed.
    public var special: Bool
    /// Also swallow the whitespace on the left / right of a match.
    public var lstrip: Bool
    public var rstrip: Bool
    /// Match only when not inside a word (no `\w` character just before or after).
    public var singleWord: Bool
    /// Match against the normalized text (after NFC etc.) instead of the raw text.
    public var normalized: Bool

    public init(id: Int, content: String, special: Bool, lstrip: Bool = false, rstrip: Bool = false,
                singleWord: Bool = false, normalized: Bool? = nil) {
        self.id = id
        self.content = content
        self.special = special
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.singleWord = singleWord
        self.normalized = normalized ?? !special
    }
}

/// Finds added tokens in text the way `tokenizers`' AddedVocabulary does: leftmost-longest matches
/// (Aho-Corasick's LeftmostLongest), searched again from the end of each match; single_word,
/// lstrip and rstrip applied per match; special tokens passed over when they are not parsed.
struct AddedTokenMatcher {
    private(set) var tokens: [AddedToken] = []
    /// Trie over scalars: children of each node, and the token index ending at the node (or -1).
    private var children: [[UInt32: Int32]] = [[:]]
    private var terminal: [Int32] = [-1]
    /// Fast filter for the first scalar of a match.
    private var firstASCII = [Bool](repeating: false, count: 128)
    private var anyNonASCIIFirst = false

    var isEmpty: Bool { tokens.isEmpty }

    /// `patterns[i]` is what token i is matched as (its content, normalized when it is a normalized token).
    init(_ tokens: [AddedToken], patterns: [[UInt32]]) {
        for (t, pattern) in zip(tokens, patterns) where !pattern.isEmpty {
            var node = 0
            for v in pattern {
                if let c = children[node][v] {
                    node = Int(c)
                } else {
                    children.append([:])
                    terminal.append(-1)
                    children[node][v] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            if terminal[node] >= 0 { continue }   // same content twice: the first wins
            terminal[node] = Int32(self.tokens.count)
            self.tokens.append(t)
            if pattern[0] < 128 { firstASCII[Int(pattern[0])] = true } else { anyNonASCIIFirst = true }
        }
    }

    /// The longest token starting at i: (token index, end).
    @inline(__always)
    private func longest(_ s: UnsafeBufferPointer<UInt32>, _ i: Int, _ hi: Int) -> (Int, Int)? {
        let v0 = s[i]
        if v0 < 128 { if !firstASCII[Int(v0)] { return nil } } else if !anyNonASCIIFirst { return nil }
        var node = 0, j = i
        var best: (Int, Int)? = nil
        while j < hi, let c = children[node][s[j]] {
            node = Int(c)
            j += 1
            if terminal[node] >= 0 { best = (Int(terminal[node]), j) }
        }
        return best
    }

    /// Splits s[lo..<hi] into segments (start, end, token index or -1) covering it, in order.
    func split(_ s: UnsafeBufferPointer<UInt32>, _ lo: Int, _ hi: Int, parseSpecial: Bool,
               into out: inout [(Int, Int, Int)]) {
        out.removeAll(keepingCapacity: true)
        var startOffset = lo
        var i = lo
        while i < hi {
            guard let (t, matchEnd) = longest(s, i, hi) else { i += 1; continue }
            var start = i, stop = matchEnd
            i = matchEnd
            let token = tokens[t]
            if token.special && !parseSpecial { continue }
            if token.singleWord {
                let startSpace = start == lo || !CharClass.isWord(s[start - 1])
                let stopSpace = stop == hi || !CharClass.isWord(s[stop])
                if !startSpace || !stopSpace { continue }
            }
            if token.lstrip {
                var newStart = start
                while newStart > lo && CharClass.isSpace(s[newStart - 1]) { newStart -= 1 }
                start = max(newStart, startOffset)
            }
            if token.rstrip {
                while stop < hi && CharClass.isSpace(s[stop]) { stop += 1 }
            }
            if startOffset < start { out.append((startOffset, start, -1)) }
            out.append((start, stop, t))
            startOffset = stop
        }
        if startOffset < hi { out.append((startOffset, hi, -1)) }
    }
}
