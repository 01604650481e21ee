/// Open-addressing hash tables for the tokenizer's hot paths, which Swift's Dictionary (SipHash,
/// and a String or Array key allocated per lookup) makes several times slower.

/// FNV-1a, 64 bits.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    @inline(__always)
    mutating func add(_ byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
    }

    mutating func add<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        for b in bytes { add(b) }
    }

    mutating func add(_ s: String) { add(s.utf8) }

    mutating func add(_ v: Int) {
        var x = UInt64(bitPattern: Int64(v))
        for _ in 0..<8 { add(UInt8(truncatingIfNeeded: x)); x >>= 8 }
    }

    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h = FNV1a()
        for b in bytes { h.add(b) }
        return h.value
    }
}

/// Merge rules: (left id, right id) -> (rank, merged id), keys and values packed into UInt64.
struct PairTable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private var shift: UInt64
    private(set) var count = 0
    private static let empty = UInt64.max

    init(minimumCapacity: Int) {
        var cap = 16
        while cap < minimumCapacity * 2 { cap <<= 1 }
        keys = [UInt64](repeating: PairTable.empty, count: cap)
        values = [UInt64](repeating: 0, count: cap)
        shift = UInt64(64 - cap.trailingZeroBitCount)
    }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// Sets the rule for a pair, replacing an earlier one (Hugging Face keeps the last duplicate).
    mutating func set(_ a: Int32, _ b: Int32, rank: Int32, merged: Int32) {
        let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
        let value = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
        let mask = keys.count - 1
        var i = slot(key)
        while keys[i] != PairTable.empty {
            if keys[i] == key { values[i] = value; return }
            i = (i + 1) & mask
        }
        keys[i] = key
        values[i] = value
        count += 1
    }

    /// (rank << 32 | merged id), or UInt64.max when the pair has no rule.
    @inline(__always)
    func get(_ a: Int32, _ b: Int32) -> UInt64 {
        let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
        let mask = keys.count - 1
        var i = slot(key)
        return keys.withUnsafeBufferPointer { k in
            while true {
                let x = k[i]
                if x == key { return values[i] }
                if x == PairTable.empty { return UInt64.max }
                i = (i + 1) & mask
            }
        }
    }
}

/// Byte strings -> Int. Keys are copied into one arena; used for the word cache and for whole-token
/// lookups (ignore_merges).
struct ByteKeyTable {
    private var slots: [Int32]          // entry index, or -1
    private var hashes: [UInt64] = []   // per entry
    private var keyStarts: [Int32] = [] // per entry, into arena
    private var keyLengths: [Int32] = []
    private var arena: [UInt8] = []
    private(set) var values: [Int] = []
    var count: Int { values.count }
    var arenaBytes: Int { arena.count }

    init(minimumCapacity: Int = 1024) {
        var cap = 16
        while cap < minimumCapacity * 2 { cap <<= 1 }
        slots = [Int32](repeating: -1, count: cap)
    }

    mutating func removeAll() {
        for i in slots.indices { slots[i] = -1 }
        hashes.removeAll(keepingCapacity: true)
        keyStarts.removeAll(keepingCapacity: true)
        keyLengths.removeAll(keepingCapacity: true)
        arena.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
    }

    func find(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64) -> Int? {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while true {
            let e = Int(slots[i])
            if e < 0 { return nil }
            if hashes[e] == hash && Int(keyLengths[e]) == key.count {
                let start = Int(keyStarts[e])
                let equal = arena.withUnsafeBufferPointer { a -> Bool in
                    key.count == 0 || memcmpBytes(a.baseAddress! + start, key.baseAddress!, key.count)
                }
                if equal { return values[e] }
            }
            i = (i + 1) & mask
        }
    }

    /// Inserts a key that is not in the table.
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64, value: Int) {
        if (values.count + 1) * 2 > slots.count { grow() }
        let e = values.count
        hashes.append(hash)
        keyStarts.append(Int32(arena.count))
        keyLengths.append(Int32(key.count))
        arena.append(contentsOf: key)
        values.append(value)
        place(e)
    }

    private mutating func place(_ e: Int) {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hashes[e]) & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = Int32(e)
    }

    private mutating func grow() {
        slots = [Int32](repeating: -1, count: slots.count * 2)
        for e in 0..<values.count { place(e) }
    }
}

@inline(__always)
private func memcmpBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var i = 0
    while i < n {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}
