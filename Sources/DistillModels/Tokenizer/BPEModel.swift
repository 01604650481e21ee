/// Byte-level BPE: a piece's UTF-8 bytes become one symbol each (the vocabulary id of the byte's
/// stand-in character), then merges are applied lowest rank first (leftmost on ties) until no
/// adjacent pair has a rule — exactly Hugging Face `tokenizers`' `Word::merge_all`.
final class BPEModel {
    /// Model vocabulary (not the added tokens), string -> id and id -> string.
    let tokenToId: [String: Int32]
    let idToToken: [String?]
    let merges: PairTable
    let mergeCount: Int
    /// The merge rules by rank as (left id, right id), as the file listed them (for writing
    /// tokenizer.json back).
    let mergeList: [(Int32, Int32)]
    /// Vocabulary id of each byte's stand-in character, or -1 (such bytes are dropped, replaced by
    /// unk, or spelled as <0xXX> tokens, as the file says).
    let byteIds: [Int32]
    /// <0xXX> token ids when byte_fallback is on.
    let fallbackIds: [Int32]?
    let unkId: Int32?
    let fuseUnk: Bool
    let ignoreMerges: Bool
    /// Byte strings of the vocabulary entries, for ignore_merges.
    private let wholeTokens: ByteKeyTable?

    /// Words longer than this (in symbols) use the heap; shorter ones the array scan.
    static let heapThreshold = 48
    /// Unused ids a vocabulary (with its added tokens) may leave: far more than real files have.
    static let maxIdGaps = 1 << 20

    /// - vocab: model.vocab; merges: model.merges as pairs, by rank.
    init(vocab: [String: Int], merges: [(String, String)], unkToken: String?, fuseUnk: Bool,
         byteFallback: Bool, ignoreMerges: Bool, file: String, mergesLocation: String = "model.merges") throws {
        var t2i = [String: Int32](minimumCapacity: vocab.count)
        var maxId = -1
        for (token, id) in vocab {
            guard id >= 0, id < Int(Int32.max) else {
                throw FileError(file: file, location: "model.vocab", "token \(tokenQuoted(token)) has id \(id), outside 0..<2^31")
            }
            t2i[token] = Int32(id)
            maxId = max(maxId, id)
        }
        // Ids number the tokens: a few gaps are fine, an id far past the count would only make
        // the id tables huge (a hostile or corrupt file).
        guard maxId < vocab.count + BPEModel.maxIdGaps else {
            throw FileError(file: file, location: "model.vocab",
                            "an id of \(maxId) in a vocabulary of \(vocab.count) tokens: ids must number the tokens 0..<\(vocab.count) (with at most \(BPEModel.maxIdGaps) unused ids)")
        }
        var i2t = [String?](repeating: nil, count: maxId + 1)
        for (token, id) in t2i {
            if let other = i2t[Int(id)] {
                throw FileError(file: file, location: "model.vocab",
                                "id \(id) is given to both \(tokenQuoted(min(other, token))) and \(tokenQuoted(max(other, token)))")
            }
            i2t[Int(id)] = token
        }
        tokenToId = t2i
        idToToken = i2t

        var table = PairTable(minimumCapacity: max(merges.count, 1))
        var list: [(Int32, Int32)] = []
        list.reserveCapacity(merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = t2i[a] else {
                throw FileError(file: file, location: "\(mergesLocation)[\(rank)]", "merge \(tokenQuoted(a + " " + b)) uses \(tokenQuoted(a)), which is not in the vocabulary")
            }
            guard let ib = t2i[b] else {
                throw FileError(file: file, location: "\(mergesLocation)[\(rank)]", "merge \(tokenQuoted(a + " " + b)) uses \(tokenQuoted(b)), which is not in the vocabulary")
            }
            guard let merged = t2i[a + b] else {
                throw FileError(file: file, location: "\(mergesLocation)[\(rank)]", "merge \(tokenQuoted(a + " " + b)) makes \(tokenQuoted(a + b)), which is not in the vocabulary")
            }
            table.set(ia, ib, rank: Int32(rank), merged: merged)
            list.append((ia, ib))
        }
        self.merges = table
        mergeList = list
        mergeCount = merges.count

        byteIds = (0..<256).map { b in t2i[String(ByteLevel.byteToScalar[b])] ?? -1 }
        if byteFallback {
            fallbackIds = (0..<256).map { b in
                let hex = String(b, radix: 16, uppercase: true)
                return t2i["<0x" + (hex.count == 1 ? "0" + hex : hex) + ">"] ?? -1
            }
        } else {
            fallbackIds = nil
        }
        if let u = unkToken {
            guard let id = t2i[u] else {
                throw FileError(file: file, location: "model.unk_token", "unknown token \(tokenQuoted(u)) is not in the vocabulary")
            }
            unkId = id
        } else {
            unkId = nil
        }
        self.fuseUnk = fuseUnk
        self.ignoreMerges = ignoreMerges
        if ignoreMerges {
            var whole = ByteKeyTable(minimumCapacity: t2i.count)
            for (token, id) in t2i {
                guard let bytes = ByteLevel.decode(token) else { continue }
                bytes.withUnsafeBufferPointer { p in
                    let h = FNV1a.hash(p)
                    if whole.find(p, hash: h) == nil { whole.insert(p, hash: h, value: Int(id)) }
                }
            }
            wholeTokens = whole
        } else {
            wholeTokens = nil
        }
    }

    var vocabCount: Int { idToToken.count }

    // MARK: - Encoding one piece

    /// Appends the ids of one pre-tokenized piece (its UTF-8 bytes) to `out`.
    func tokenize(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [Int32], symbols: inout [Int32]) {
        guard bytes.count > 0 else { return }
        if let whole = wholeTokens, let id = whole.find(bytes, hash: FNV1a.hash(bytes)) {
            out.append(Int32(id))
            return
        }
        initialSymbols(bytes, &symbols)
        if symbols.count > BPEModel.heapThreshold {
            mergeWithHeap(&symbols)
        } else {
            mergeByScan(&symbols)
        }
        out.append(contentsOf: symbols)
    }

    /// One symbol per byte; bytes without a symbol go through byte_fallback, then unk (fused when
    /// fuse_unk), or are dropped — in `tokenizers`' order, including its quirk that a pending unk is not
    /// flushed before byte-fallback symbols.
    func initialSymbols(_ bytes: UnsafeBufferPointer<UInt8>, _ symbols: inout [Int32]) {
        symbols.removeAll(keepingCapacity: true)
        var pendingUnk = false
        for b in bytes {
            let id = byteIds[Int(b)]
            if id >= 0 {
                if pendingUnk { symbols.append(unkId!); pendingUnk = false }
                symbols.append(id)
                continue
            }
            if let fb = fallbackIds, fb[Int(b)] >= 0 {
                symbols.append(fb[Int(b)])
                continue
            }
            if let unk = unkId {
                if pendingUnk && !fuseUnk { symbols.append(unk) }
                pendingUnk = true
            }
        }
        if pendingUnk { symbols.append(unkId!) }
    }

    /// Repeatedly merges the lowest-ranked adjacent pair (leftmost among equals), keeping each
    /// pair's rank in an array beside the symbols so that a merge only looks up its two new pairs.
    func mergeByScan(_ symbols: inout [Int32]) {
        var n = symbols.count
        guard n > 1 else { return }
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: n) { rules in
            symbols.withUnsafeMutableBufferPointer { sp in
                let s = sp.baseAddress!
                for i in 0..<(n - 1) { rules[i] = merges.get(s[i], s[i + 1]) }
                while n > 1 {
                    var best = UInt64.max, at = -1
                    for i in 0..<(n - 1) where rules[i] < best { best = rules[i]; at = i }
                    if at < 0 { break }
                    s[at] = Int32(truncatingIfNeeded: best & 0xFFFF_FFFF)
                    // remove symbol at+1 and rule at+1 (rules[at] is recomputed below)
                    var i = at + 1
                    while i < n - 1 { s[i] = s[i + 1]; i += 1 }
                    i = at + 1
                    while i < n - 2 { rules[i] = rules[i + 1]; i += 1 }
                    n -= 1
                    if at > 0 { rules[at - 1] = merges.get(s[at - 1], s[at]) }
                    if at < n - 1 { rules[at] = merges.get(s[at], s[at + 1]) }
                }
            }
        }
        symbols.removeLast(symbols.count - n)
    }

    /// `tokenizers`' algorithm for long words: a min-heap of (rank, position) over a linked list of
    /// symbols; entries made stale by earlier merges are skipped when popped.
    func mergeWithHeap(_ symbols: inout [Int32]) {
        let n = symbols.count
        guard n > 1 else { return }
        var prev = [Int](0..<n).map { $0 - 1 }
        var next = [Int](1...n).map { $0 == n ? -1 : $0 }
        var alive = [Bool](repeating: true, count: n)
        var heap = MergeHeap()
        for i in 0..<(n - 1) {
            let r = merges.get(symbols[i], symbols[i + 1])
            if r != UInt64.max { heap.push(rule: r, pos: i) }
        }
        while let (rule, pos) = heap.pop() {
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = next[pos]
            let current = merges.get(symbols[pos], symbols[right])
            // stale unless the pair still makes the same token
            guard current != UInt64.max, current & 0xFFFF_FFFF == rule & 0xFFFF_FFFF else { continue }
            symbols[pos] = Int32(truncatingIfNeeded: rule & 0xFFFF_FFFF)
            alive[right] = false
            next[pos] = next[right]
            if next[right] >= 0 { prev[next[right]] = pos }
            if prev[pos] >= 0 {
                let r = merges.get(symbols[prev[pos]], symbols[pos])
                if r != UInt64.max { heap.push(rule: r, pos: prev[pos]) }
            }
            if next[pos] >= 0 {
                let r = merges.get(symbols[pos], symbols[next[pos]])
                if r != UInt64.max { heap.push(rule: r, pos: pos) }
            }
        }
        var w = 0
        for i in 0..<n where alive[i] { symbols[w] = symbols[i]; w += 1 }
        symbols.removeLast(n - w)
    }

    /// The slow, obvious version the two above are tested against: scan every pair for the lowest
    /// rank, merge that one occurrence, start again.
    func mergeReference(_ input: [Int32]) -> [Int32] {
        var s = input
        while s.count > 1 {
            var best = UInt64.max, at = -1
            for i in 0..<(s.count - 1) {
                let r = merges.get(s[i], s[i + 1])
                if r != UInt64.max && (at < 0 || (r >> 32) < (best >> 32)) { best = r; at = i }
            }
            if at < 0 { break }
            s[at] = Int32(truncatingIfNeeded: best & 0xFFFF_FFFF)
            s.remove(at: at + 1)
        }
        return s
    }
}

/// Binary min-heap of (rank, position), ordered by rank then position; carries the packed rule.
struct MergeHeap {
    private var items: [(key: UInt64, rule: UInt64)] = []

    mutating func push(rule: UInt64, pos: Int) {
        let key = (rule >> 32) << 32 | UInt64(UInt32(pos))
        items.append((key, rule))
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if items[p].key <= items[i].key { break }
            items.swapAt(p, i)
            i = p
        }
    }

    mutating func pop() -> (rule: UInt64, pos: Int)? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].key < items[m].key { m = l }
                if r < items.count && items[r].key < items[m].key { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return (top.rule, Int(top.key & 0xFFFF_FFFF))
    }
}

/// A token or text in quotes, with control characters escaped, for error messages.
func tokenQuoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 || u.value == 0x7F { out += "\\u{\(String(u.value, radix: 16))}" } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}
