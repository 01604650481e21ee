import DistillTensor

/// A ggml tensor type: the number stored in a GGUF tensor info. Unknown numbers are kept (and
/// reported by name or number) rather than rejected when the file is opened.
public struct GGMLType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let f32 = GGMLType(rawValue: 0)
    public static let f16 = GGMLType(rawValue: 1)
    public static let q4_0 = GGMLType(rawValue: 2)
    public static let q4_1 = GGMLType(rawValue: 3)
    public static let q5_0 = GGMLType(rawValue: 6)
    public static let q5_1 = GGMLType(rawValue: 7)
    public static let q8_0 = GGMLType(rawValue: 8)
    public static let q8_1 = GGMLType(rawValue: 9)
    public static let q2_K = GGMLType(rawValue: 10)
    public static let q3_K = GGMLType(rawValue: 11)
    public static let q4_K = GGMLType(rawValue: 12)
    public static let q5_K = GGMLType(rawValue: 13)
    public static let q6_K = GGMLType(rawValue: 14)
    public static let q8_K = GGMLType(rawValue: 15)
    public static let i8 = GGMLType(rawValue: 24)
    public static let i16 = GGMLType(rawValue: 25)
    public static let i32 = GGMLType(rawValue: 26)
    public static let i64 = GGMLType(rawValue: 27)
    public static let f64 = GGMLType(rawValue: 28)
    public static let bf16 = GGMLType(rawValue: 30)

    /// (name, values per block, bytes per block) for the types of ggml.h, by number.
    static let table: [UInt32: (String, Int, Int)] = [
        0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
        6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
        10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
        14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
        18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
        22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
        26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
        30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    ]

    /// The ggml name ("Q4_K"), or "type N" for a number ggml does not define.
    public var name: String { Self.table[rawValue]?.0 ?? "type \(rawValue)" }
    public var description: String { Self.table[rawValue] != nil ? "\(name) (\(rawValue))" : name }
    /// Values per block (1 for plain types); nil for unknown types.
    public var blockSize: Int? { Self.table[rawValue]?.1 }
    /// Bytes per block; nil for unknown types.
    public var typeSize: Int? { Self.table[rawValue]?.2 }

    /// Types Distill dequantizes to Float32.
    public static let dequantizable: [GGMLType] = [.f32, .f16, .bf16, .f64, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
                                                   .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]
    public var isDequantizable: Bool { Self.dequantizable.contains(self) }
}

/// Dequantization of ggml blocks to Float32, following `dequantize_row_*` in ggml-quants.c
/// operation for operation (so results equal gguf-py's `gguf.quants.dequantize` bit for bit).
public enum GGUFQuantization {
    /// Dequantizes `count` values of `type` from `bytes` (which must hold exactly the blocks).
    public static func dequantize(_ bytes: [UInt8], type: GGMLType, count: Int) throws -> [Float] {
        guard type.isDequantizable, let bs = type.blockSize, let ts = type.typeSize else {
            throw FileError(file: "<memory>", "cannot dequantize \(type)")
        }
        guard count >= 0, count % bs == 0, count / bs * ts == bytes.count else {
            throw FileError(file: "<memory>", "\(bytes.count) bytes are not \(count) values of \(type.name)")
        }
        var out = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { dst in
                if count > 0 { dequantize(type, src.baseAddress!, count: count, into: dst.baseAddress!) }
            }
        }
        return out
    }

    /// Dequantizes `count` values (a whole number of blocks) of a dequantizable `type`.
    static func dequantize(_ type: GGMLType, _ src: UnsafeRawPointer, count: Int, into y: UnsafeMutablePointer<Float>) {
        let bs = type.blockSize!, ts = type.typeSize!
        let blocks = count / bs
        let grain = max(1, 32_768 / bs)
        @inline(__always) func each(_ kernel: (UnsafeRawPointer, UnsafeMutablePointer<Float>) -> Void) {
            parallelFor(blocks, grain: grain) { r in
                for b in r { kernel(src + b * ts, y + b * bs) }
            }
        }
        switch type {
        case .f32:
            parallelFor(count, grain: 1 << 16) { r in
                for i in r { y[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            }
        case .f16:
            parallelFor(count, grain: 1 << 16) { r in for i in r { y[i] = half(src, 2 * i) } }
        case .bf16:
            parallelFor(count, grain: 1 << 16) { r in
                for i in r { y[i] = HalfPrecision.float(fromBFloat16: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            }
        case .f64:
            parallelFor(count, grain: 1 << 16) { r in
                for i in r { y[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            }
        case .q4_0: each(blockQ4_0)
        case .q4_1: each(blockQ4_1)
        case .q5_0: each(blockQ5_0)
        case .q5_1: each(blockQ5_1)
        case .q8_0: each(blockQ8_0)
        case .q2_K: each(blockQ2_K)
        case .q3_K: each(blockQ3_K)
        case .q4_K: each(blockQ4_K)
        case .q5_K: each(blockQ5_K)
        case .q6_K: each(blockQ6_K)
        default: preconditionFailure("GGUFQuantization: \(type) is not dequantizable")
        }
    }
}

// MARK: - Block kernels (one block of `x` to `y`)

@inline(__always) private func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    HalfPrecision.float(fromHalf: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

@inline(__always) private func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 {
    p.load(fromByteOffset: offset, as: UInt8.self)
}

/// Q4_0: f16 d, 16 bytes of nibbles. y[j] = (lo(qs[j]) - 8)·d, y[j+16] = (hi(qs[j]) - 8)·d.
private func blockQ4_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = half(x, 0)
    let qs = x + 2
    for j in 0..<16 {
        let q = byte(qs, j)
        y[j] = Float(Int32(q & 0x0F) - 8) * d
        y[j + 16] = Float(Int32(q >> 4) - 8) * d
    }
}

/// Q4_1: f16 d, f16 m, 16 bytes of nibbles. y = nibble·d + m.
private func blockQ4_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = half(x, 0), m = half(x, 2)
    let qs = x + 4
    for j in 0..<16 {
        let q = byte(qs, j)
        y[j] = Float(q & 0x0F) * d + m
        y[j + 16] = Float(q >> 4) * d + m
    }
}

/// Q5_0: f16 d, u32 of fifth bits (bit j for element j), 16 bytes of nibbles. y = (q - 16)·d.
private func blockQ5_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = half(x, 0)
    let qh = UInt32(littleEndian: x.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
    let qs = x + 6
    for j in 0..<16 {
        let q = UInt32(byte(qs, j))
        let h0 = ((qh >> UInt32(j)) << 4) & 0x10
        let h1 = (qh >> UInt32(j + 12)) & 0x10
        y[j] = Float(Int32((q & 0x0F) | h0) - 16) * d
        y[j + 16] = Float(Int32((q >> 4) | h1) - 16) * d
    }
}

/// Q5_1: f16 d, f16 m, u32 of fifth bits, 16 bytes of nibbles. y = q·d + m.
private func blockQ5_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = half(x, 0), m = half(x, 2)
    let qh = UInt32(littleEndian: x.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    let qs = x + 8
    for j in 0..<16 {
        let q = UInt32(byte(qs, j))
        let h0 = ((qh >> UInt32(j)) << 4) & 0x10
        let h1 = (qh >> UInt32(j + 12)) & 0x10
        y[j] = Float((q & 0x0F) | h0) * d + m
        y[j + 16] = Float((q >> 4) | h1) * d + m
    }
}

/// Q8_0: f16 d, 32 int8. y = q·d.
private func blockQ8_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = half(x, 0)
    for j in 0..<32 { y[j] = Float(x.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
}

/// Q2_K (256 values): 16 bytes of 4-bit scale | 4-bit min, 64 bytes of 2-bit values, f16 d, f16 dmin.
private func blockQ2_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let scales = x, d = half(x, 80), dmin = half(x, 82)
    var q = x + 16
    var y = y
    var i = 0
    for _ in 0..<2 {
        var shift: UInt8 = 0
        for _ in 0..<4 {
            var sc = byte(scales, i); i += 1
            var dl = d * Float(sc & 0x0F), ml = dmin * Float(sc >> 4)
            for l in 0..<16 { y[l] = dl * Float((byte(q, l) >> shift) & 3) - ml }
            y += 16
            sc = byte(scales, i); i += 1
            dl = d * Float(sc & 0x0F); ml = dmin * Float(sc >> 4)
            for l in 0..<16 { y[l] = dl * Float((byte(q, l + 16) >> shift) & 3) - ml }
            y += 16
            shift += 2
        }
        q += 32
    }
}

/// Q3_K (256 values): 32 bytes of high bits, 64 bytes of 2-bit values, 12 bytes of sixteen 6-bit
/// scales, f16 d. y = d·(scale - 32)·(q2 - (high bit ? 0 : 4)).
private func blockQ3_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let hm = x, d = half(x, 108)
    // Unpack the scales exactly as ggml does: three little-endian words become four, whose bytes
    // are the sixteen 6-bit scales (low 4 bits from bytes 0..7, high 2 bits from bytes 8..11).
    let w0 = UInt32(littleEndian: x.loadUnaligned(fromByteOffset: 96, as: UInt32.self))
    let w1 = UInt32(littleEndian: x.loadUnaligned(fromByteOffset: 100, as: UInt32.self))
    let tmp = UInt32(littleEndian: x.loadUnaligned(fromByteOffset: 104, as: UInt32.self))
    let kmask1: UInt32 = 0x0303_0303, kmask2: UInt32 = 0x0f0f_0f0f
    let a0 = (w0 & kmask2) | (((tmp >> 0) & kmask1) << 4)
    let a1 = (w1 & kmask2) | (((tmp >> 2) & kmask1) << 4)
    let a2 = ((w0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
    let a3 = ((w1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
    @inline(__always) func scale(_ k: Int) -> Float {
        let w = k < 4 ? a0 : k < 8 ? a1 : k < 12 ? a2 : a3
        return Float(Int32(Int8(bitPattern: UInt8(truncatingIfNeeded: w >> (8 * UInt32(k & 3))))) - 32)
    }

    var q = x + 32
    var y = y
    var m: UInt8 = 1
    var i = 0
    for _ in 0..<2 {
        var shift: UInt8 = 0
        for _ in 0..<4 {
            var dl = d * scale(i); i += 1
            for l in 0..<16 {
                let v = Int32((byte(q, l) >> shift) & 3) - ((byte(hm, l) & m) != 0 ? 0 : 4)
                y[l] = dl * Float(v)
            }
            y += 16
            dl = d * scale(i); i += 1
            for l in 0..<16 {
                let v = Int32((byte(q, l + 16) >> shift) & 3) - ((byte(hm, l + 16) & m) != 0 ? 0 : 4)
                y[l] = dl * Float(v)
            }
            y += 16
            shift += 2
            m <<= 1
        }
        q += 32
    }
}

/// Scale and min `j` (0..<8) of the 12-byte packed 6-bit scales of Q4_K and Q5_K
/// (`get_scale_min_k4` in ggml-quants.c).
@inline(__always) private func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
    if j < 4 {
        return (byte(q, j) & 63, byte(q, j + 4) & 63)
    }
    return ((byte(q, j + 4) & 0x0F) | ((byte(q, j - 4) >> 6) << 4),
            (byte(q, j + 4) >> 4) | ((byte(q, j) >> 6) << 4))
}

/// Q4_K (256 values): f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles.
/// Each 64 values use two (scale, min) pairs: low nibbles of 32 bytes, then the high nibbles.
private func blockQ4_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = half(x, 0), dmin = half(x, 2)
    let scales = x + 4
    var q = x + 16
    var y = y
    var s = 0
    for _ in 0..<4 {
        let (sc1, m1) = scaleMinK4(s, scales), (sc2, m2) = scaleMinK4(s + 1, scales)
        let d1 = d * Float(sc1), min1 = dmin * Float(m1)
        let d2 = d * Float(sc2), min2 = dmin * Float(m2)
        for l in 0..<32 { y[l] = d1 * Float(byte(q, l) & 0x0F) - min1 }
        for l in 0..<32 { y[l + 32] = d2 * Float(byte(q, l) >> 4) - min2 }
        y += 64
        q += 32
        s += 2
    }
}

/// Q5_K (256 values): as Q4_K with 32 bytes of fifth bits (bit 2k and 2k+1 of byte l for the
/// k-th pair of 32-value groups) before the nibbles.
private func blockQ5_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = half(x, 0), dmin = half(x, 2)
    let scales = x + 4, qh = x + 16
    var ql = x + 48
    var y = y
    var s = 0
    var u1: UInt8 = 1, u2: UInt8 = 2
    for _ in 0..<4 {
        let (sc1, m1) = scaleMinK4(s, scales), (sc2, m2) = scaleMinK4(s + 1, scales)
        let d1 = d * Float(sc1), min1 = dmin * Float(m1)
        let d2 = d * Float(sc2), min2 = dmin * Float(m2)
        for l in 0..<32 { y[l] = d1 * Float((byte(ql, l) & 0x0F) + ((byte(qh, l) & u1) != 0 ? 16 : 0)) - min1 }
        for l in 0..<32 { y[l + 32] = d2 * Float((byte(ql, l) >> 4) + ((byte(qh, l) & u2) != 0 ? 16 : 0)) - min2 }
        y += 64
        ql += 32
        s += 2
        u1 <<= 2
        u2 <<= 2
    }
}

/// Q6_K (256 values): 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8 scales, f16 d.
/// y = d·scale·(q - 32), in two halves of 128.
private func blockQ6_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = half(x, 208)
    var ql = x, qh = x + 128, sc = x + 192
    var y = y
    for _ in 0..<2 {
        for l in 0..<32 {
            let s = l / 16
            let h = byte(qh, l)
            let q1 = Int32((byte(ql, l) & 0x0F) | ((h & 3) << 4)) - 32
            let q2 = Int32((byte(ql, l + 32) & 0x0F) | (((h >> 2) & 3) << 4)) - 32
            let q3 = Int32((byte(ql, l) >> 4) | (((h >> 4) & 3) << 4)) - 32
            let q4 = Int32((byte(ql, l + 32) >> 4) | (((h >> 6) & 3) << 4)) - 32
            y[l] = d * Float(sc.load(fromByteOffset: s, as: Int8.self)) * Float(q1)
            y[l + 32] = d * Float(sc.load(fromByteOffset: s + 2, as: Int8.self)) * Float(q2)
            y[l + 64] = d * Float(sc.load(fromByteOffset: s + 4, as: Int8.self)) * Float(q3)
            y[l + 96] = d * Float(sc.load(fromByteOffset: s + 6, as: Int8.self)) * Float(q4)
        }
        y += 128
        ql += 64
        qh += 32
        sc += 8
    }
}
