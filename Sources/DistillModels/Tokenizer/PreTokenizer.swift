/// The split regexes of the byte-level BPE families, each written as a hand-coded scanner over
/// Unicode scalars (regex engines are far too slow for this). Each scanner returns where the match
/// that starts at `i` ends, reproducing Oniguruma's leftmost-first alternation with backtracking.
/// Every alternative list below covers every character, so matches tile the text without gaps.
enum SplitPattern: String, Sendable, CaseIterable {
    /// GPT-2 (Hugging Face ByteLevel's `use_regex`):
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// Llama 3 (cl100k):
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// Qwen2: Llama 3's with `\p{N}` (single digits) in place of `\p{N}{1,3}`.
    case qwen2

    /// The exact pattern strings found in tokenizer.json files.
    static let byRegex: [String: SplitPattern] = [
        #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#: .gpt2,
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .llama3,
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .qwen2,
    ]

    /// End of the match starting at `i` (< n) in s[..<n], whose classes are c.
    @inline(__always)
    func match(_ s: UnsafePointer<UInt32>, _ c: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> Int {
        switch self {
        case .gpt2: return SplitPattern.gpt2Match(s, c, i, n)
        case .llama3: return SplitPattern.cl100kMatch(s, c, i, n, maxDigits: 3)
        case .qwen2: return SplitPattern.cl100kMatch(s, c, i, n, maxDigits: 1)
        }
    }

    static func gpt2Match(_ s: UnsafePointer<UInt32>, _ c: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> Int {
        let x = s[i]
        // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
        if x == 0x27, i + 1 < n {
            let a = s[i + 1]
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }
            if i + 2 < n {
                let b = s[i + 2]
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return i + 3 }
            }
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional U+0020, then a run of one class
        var j = i
        if x == 0x20, i + 1 < n, c[i + 1] != CharClass.space { j = i + 1 }
        let k = c[j]
        if k != CharClass.space {
            var e = j + 1
            while e < n && c[e] == k { e += 1 }
            return e
        }
        // `\s+(?!\S)`: a whitespace run, less its last character when a non-space follows; `\s+` when
        // that would leave nothing
        var e = i + 1
        while e < n && c[e] == CharClass.space { e += 1 }
        if e == n || e - i == 1 { return e }
        return e - 1
    }

    /// Simple case folding as Oniguruma applies it to the contraction letters: ASCII upper case, and
    /// U+017F LATIN SMALL LETTER LONG S, which folds to `s`.
    @inline(__always)
    static func fold(_ v: UInt32) -> UInt32 {
        if v >= 0x41 && v <= 0x5A { return v + 0x20 }
        if v == 0x17F { return 0x73 }
        if v == 0x212A { return 0x6B }
        return v
    }

    static func cl100kMatch(_ s: UnsafePointer<UInt32>, _ c: UnsafePointer<UInt8>, _ i: Int, _ n: Int, maxDigits: Int) -> Int {
        let x = s[i]
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if x == 0x27, i + 1 < n {
            let a = fold(s[i + 1])
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }
            if i + 2 < n {
                let b = fold(s[i + 2])
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return i + 3 }
            }
        }
        let k = c[i]
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if k == CharClass.letter {
            var e = i + 1
            while e < n && c[e] == CharClass.letter { e += 1 }
            return e
        }
        if k != CharClass.number, x != 0x0A, x != 0x0D, i + 1 < n, c[i + 1] == CharClass.letter {
            var e = i + 2
            while e < n && c[e] == CharClass.letter { e += 1 }
            return e
        }
        // \p{N}{1,3} or \p{N}
        if k == CharClass.number {
            var e = i + 1
            while e < n && e - i < maxDigits && c[e] == CharClass.number { e += 1 }
            return e
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        var j = i
        if x == 0x20, i + 1 < n, c[i + 1] == CharClass.other { j = i + 1 }
        if c[j] == CharClass.other {
            var e = j + 1
            while e < n && c[e] == CharClass.other { e += 1 }
            while e < n && (s[e] == 0x0A || s[e] == 0x0D) { e += 1 }
            return e
        }
        // x is whitespace. \s*[\r\n]+: the run up to and including its last CR or LF
        var e = i + 1
        while e < n && c[e] == CharClass.space { e += 1 }
        var p = e - 1
        while p >= i {
            if s[p] == 0x0A || s[p] == 0x0D { return p + 1 }
            p -= 1
        }
        // \s+(?!\S) | \s+
        if e == n || e - i == 1 { return e }
        return e - 1
    }
}

/// One step of a Hugging Face pre-tokenizer pipeline that byte-level BPE files use.
enum PreTokenizerStep: Equatable, Sendable, CustomStringConvertible {
    /// `Split` with one of the known regexes, behaviour `Isolated`, not inverted.
    case split(SplitPattern)
    /// `Digits`: every `\p{N}` on its own (individual) or runs of them, split from the rest.
    case digits(individual: Bool)
    /// `ByteLevel`: optionally a space before each piece that lacks one, optionally the GPT-2 split;
    /// then (in the BPE model) the bytes of each piece are mapped to the byte-level alphabet.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)

    var description: String {
        switch self {
        case .split(let p): return "Split(\(p.rawValue))"
        case .digits(let i): return "Digits(individual_digits=\(i))"
        case .byteLevel(let a, let r): return "ByteLevel(add_prefix_space=\(a),use_regex=\(r))"
        }
    }
}

/// Text as Unicode scalar values with their classes, plus room for pieces that a step rewrites
/// (add_prefix_space appends " " + piece at the end and points the piece there).
struct ScalarBuffer {
    var scalars: [UInt32] = []
    var classes: [UInt8] = []

    mutating func reset() {
        scalars.removeAll(keepingCapacity: true)
        classes.removeAll(keepingCapacity: true)
    }

    mutating func append<S: Sequence>(contentsOf values: S) where S.Element == UInt32 {
        for v in values {
            scalars.append(v)
            classes.append(CharClass.of(v))
        }
    }
}

/// A sequence of pre-tokenizer steps. Pieces are (start, end) pairs of indices into a ScalarBuffer,
/// flattened into one [Int]; empty pieces are dropped, as Hugging Face drops empty splits.
struct PreTokenizer: Equatable, Sendable, CustomStringConvertible {
    var steps: [PreTokenizerStep]

    var description: String { steps.map(\.description).joined(separator: ",") }

    /// Splits buf[lo..<hi] into pieces, written to `out` (cleared first); `scratch` is reused storage.
    func split(_ buf: inout ScalarBuffer, _ lo: Int, _ hi: Int, into out: inout [Int], scratch: inout [Int]) {
        out.removeAll(keepingCapacity: true)
        guard hi > lo else { return }
        out.append(lo)
        out.append(hi)
        for step in steps {
            if case .byteLevel(true, _) = step { addPrefixSpaces(&buf, &out) }
            scratch.removeAll(keepingCapacity: true)
            apply(step, &buf, out, &scratch)
            swap(&out, &scratch)
        }
    }

    /// ByteLevel(add_prefix_space): each piece that does not start with U+0020 is copied to the end
    /// of the buffer behind a new space.
    private func addPrefixSpaces(_ buf: inout ScalarBuffer, _ pieces: inout [Int]) {
        var p = 0
        while p < pieces.count {
            let a = pieces[p], b = pieces[p + 1]
            if buf.scalars[a] != 0x20 {
                let start = buf.scalars.count
                buf.scalars.append(0x20)
                buf.classes.append(CharClass.space)
                for q in a..<b {
                    buf.scalars.append(buf.scalars[q])
                    buf.classes.append(buf.classes[q])
                }
                pieces[p] = start
                pieces[p + 1] = buf.scalars.count
            }
            p += 2
        }
    }

    private func apply(_ step: PreTokenizerStep, _ buf: inout ScalarBuffer, _ pieces: [Int], _ out: inout [Int]) {
        buf.scalars.withUnsafeBufferPointer { sp in
            buf.classes.withUnsafeBufferPointer { cp in
                let s = sp.baseAddress!, c = cp.baseAddress!
                var p = 0
                while p < pieces.count {
                    let a = pieces[p], b = pieces[p + 1]
                    p += 2
                    switch step {
                    case .split(let pattern):
                        var i = a
                        while i < b {
                            let e = pattern.match(s, c, i, b)
                            out.append(i); out.append(e)
                            i = e
                        }
                    case .byteLevel(_, let useRegex):
                        if !useRegex { out.append(a); out.append(b); continue }
                        var i = a
                        while i < b {
                            let e = SplitPattern.gpt2Match(s, c, i, b)
                            out.append(i); out.append(e)
                            i = e
                        }
                    case .digits(let individual):
                        var i = a
                        while i < b {
                            var e = i + 1
                            if c[i] == CharClass.number {
                                if !individual { while e < b && c[e] == CharClass.number { e += 1 } }
                            } else {
                                while e < b && c[e] != CharClass.number { e += 1 }
                            }
                            out.append(i); out.append(e)
                            i = e
                        }
                    }
                }
            }
        }
    }

    /// The pieces of a string, for tests and debugging.
    func pieces(of text: String) -> [String] {
        var buf = ScalarBuffer()
        buf.append(contentsOf: text.unicodeScalars.lazy.map(\.value))
        var out: [Int] = [], scratch: [Int] = []
        split(&buf, 0, buf.scalars.count, into: &out, scratch: &scratch)
        var result: [String] = []
        var p = 0
        while p < out.count {
            var v = String.UnicodeScalarView()
            for q in out[p]..<out[p + 1] { v.append(Unicode.Scalar(buf.scalars[q])!) }
            result.append(String(v))
            p += 2
        }
        return result
    }
}
