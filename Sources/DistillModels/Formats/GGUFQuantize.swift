import DistillTensor
import Foundation

/// Float32 → GGML block formats, for writing GGUF files.
///
/// - F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: operation for operation as ggml-quants.c's
///   reference `quantize_row_*_ref` (and gguf-py's `quants.py`, which reproduces them bit for bit):
///   Float32 arithmetic, the scale rounded to float16 after the codes are chosen, codes by
///   truncation of `x/d + offset` (Q8_0: rounding half away from zero).
/// - Q4_K, Q5_K, Q6_K: the block layouts of ggml (super-blocks of 256 with 6-bit or 8-bit
///   sub-block scales); the scales are chosen by Distill's own search (a few candidate ranges per
///   sub-block, each refined by least squares, keeping the one with the smallest squared error),
///   so the codes are not llama.cpp's bit for bit but decode with llama.cpp's kernels.
public enum GGUFQuantizer {
    /// The types Distill writes.
    public static let writable: [GGMLType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]

    /// Encodes `count` values (whole rows) as `type`; `count` must be a multiple of the block size.
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, type: GGMLType) -> [UInt8] {
        let (block, bytes) = layout(type)
        precondition(count % block == 0, "GGUFQuantizer: \(count) values do not fill \(type.name) blocks of \(block)")
        let blocks = count / block
        var out = [UInt8](repeating: 0, count: blocks * bytes)
        let kernel = self.kernel(type)
        out.withUnsafeMutableBytes { raw in
            let dst = raw.baseAddress!
            parallelFor(blocks, grain: max(1, 4096 / block)) { r in
                for b in r { kernel(x + b * block, dst + b * bytes) }
            }
        }
        return out
    }

    /// (values per block, bytes per block).
    public static func layout(_ type: GGMLType) -> (block: Int, bytes: Int) {
        switch type {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        case .q4_0: return (32, 18)
        case .q4_1: return (32, 20)
        case .q5_0: return (32, 22)
        case .q5_1: return (32, 24)
        case .q8_0: return (32, 34)
        case .q4_K: return (256, 144)
        case .q5_K: return (256, 176)
        case .q6_K: return (256, 210)
        default: preconditionFailure("GGUFQuantizer: \(type.name) is not writable")
        }
    }

    typealias Kernel = (UnsafePointer<Float>, UnsafeMutableRawPointer) -> Void

    static func kernel(_ type: GGMLType) -> Kernel {
        switch type {
        case .f32: return { x, y in y.storeBytes(of: x[0].bitPattern.littleEndian, as: UInt32.self) }
        case .f16: return { x, y in y.storeBytes(of: HalfPrecision.half(from: x[0]).littleEndian, as: UInt16.self) }
        case .bf16: return { x, y in y.storeBytes(of: HalfPrecision.bfloat16(from: x[0]).littleEndian, as: UInt16.self) }
        case .q4_0: return { x, y in symmetric(x, y, levels: 16, bits: 4) }
        case .q5_0: return { x, y in symmetric(x, y, levels: 32, bits: 5) }
        case .q4_1: return { x, y in offset(x, y, levels: 16, bits: 4) }
        case .q5_1: return { x, y in offset(x, y, levels: 32, bits: 5) }
        case .q8_0: return blockQ8_0
        case .q4_K: return { x, y in blockK(x, y, bits: 4) }
        case .q5_K: return { x, y in blockK(x, y, bits: 5) }
        case .q6_K: return blockQ6_K
        default: preconditionFailure("GGUFQuantizer: \(type.name) is not writable")
        }
    }
}

@inline(__always) private func storeHalf(_ v: Float, _ y: UnsafeMutableRawPointer, _ offset: Int) {
    (y + offset).storeBytes(of: HalfPrecision.half(from: v).littleEndian, as: UInt16.self)
}

/// Nibbles of 32 codes: byte j holds code j (low) and code j + 16 (high); for 5-bit codes the
/// fifth bits go to a little-endian 32-bit mask at `highAt`.
@inline(__always) private func packCodes(_ q: UnsafePointer<UInt8>, _ y: UnsafeMutableRawPointer, nibblesAt: Int, highAt: Int?) {
    for j in 0..<16 { (y + nibblesAt + j).storeBytes(of: (q[j] & 0x0F) | (q[j + 16] << 4), as: UInt8.self) }
    if let h = highAt {
        var mask: UInt32 = 0
        for j in 0..<32 { mask |= UInt32((q[j] >> 4) & 1) << UInt32(j) }
        (y + h).storeBytes(of: mask.littleEndian, as: UInt32.self)
    }
}

/// Q4_0 / Q5_0: d = (the value of largest magnitude) / −levels/2, code = trunc(x/d + levels/2 + ½).
private func symmetric(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, levels: Int, bits: Int) {
    var amax: Float = 0, max: Float = 0
    for i in 0..<32 where abs(x[i]) > amax { amax = abs(x[i]); max = x[i] }
    let d = max / -Float(levels / 2)
    let id: Float = d == 0 ? 0 : 1 / d
    var q = [UInt8](repeating: 0, count: 32)
    let top = Float(levels - 1), shift = Float(levels / 2) + 0.5
    for i in 0..<32 { q[i] = UInt8(Swift.min(top, (x[i] * id + shift).rounded(.towardZero))) }
    storeHalf(d, y, 0)
    q.withUnsafeBufferPointer { packCodes($0.baseAddress!, y, nibblesAt: bits == 4 ? 2 : 6, highAt: bits == 4 ? nil : 2) }
}

/// Q4_1 / Q5_1: d = (max − min) / (levels − 1), m = min, code = trunc((x − min)/d + ½).
private func offset(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, levels: Int, bits: Int) {
    var lo = x[0], hi = x[0]
    for i in 1..<32 { lo = Swift.min(lo, x[i]); hi = Swift.max(hi, x[i]) }
    let d = (hi - lo) / Float(levels - 1)
    let id: Float = d == 0 ? 0 : 1 / d
    var q = [UInt8](repeating: 0, count: 32)
    let top = Float(levels - 1)
    for i in 0..<32 { q[i] = UInt8(Swift.min(top, ((x[i] - lo) * id + 0.5).rounded(.towardZero))) }
    storeHalf(d, y, 0)
    storeHalf(lo, y, 2)
    q.withUnsafeBufferPointer { packCodes($0.baseAddress!, y, nibblesAt: bits == 4 ? 4 : 8, highAt: bits == 4 ? nil : 4) }
}

/// Rounds half away from zero, in Float32 (gguf-py's np_roundf, ggml's roundf).
@inline(__always) private func roundHalfAway(_ v: Float) -> Float {
    let a = abs(v), f = a.rounded(.down)
    let r = f + (2 * (a - f)).rounded(.down)
    return v < 0 ? -r : r
}

/// Q8_0: d = max|x| / 127, code = round(x / d).
private func blockQ8_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
    var amax: Float = 0
    for i in 0..<32 { amax = Swift.max(amax, abs(x[i])) }
    let d = amax / 127
    let id: Float = d == 0 ? 0 : 1 / d
    storeHalf(d, y, 0)
    for i in 0..<32 { (y + 2 + i).storeBytes(of: Int8(roundHalfAway(x[i] * id)), as: Int8.self) }
}

// MARK: - K-quants

/// Best (scale, offset) for codes in 0...top over `n` values, minimising squared error: several
/// candidate ranges (the full range and ranges trimmed at either end), each refined by a least
/// squares fit of (scale, min) to its codes. Returns (scale, min) with x ≈ scale·q + min, min ≤ 0.
private func fitAffine(_ x: UnsafePointer<Float>, _ n: Int, top: Int) -> (scale: Float, min: Float) {
    var lo = x[0], hi = x[0]
    for i in 1..<n { lo = Swift.min(lo, x[i]); hi = Swift.max(hi, x[i]) }
    lo = Swift.min(lo, 0)
    guard hi > lo else { return (0, lo) }
    let t = Float(top)
    func error(_ s: Float, _ m: Float) -> Float {
        guard s > 0 else { var e: Float = 0; for i in 0..<n { e += (x[i] - m) * (x[i] - m) }; return e }
        var e: Float = 0
        for i in 0..<n {
            let q = Swift.min(t, Swift.max(0, ((x[i] - m) / s).rounded()))
            let r = x[i] - (s * q + m)
            e += r * r
        }
        return e
    }
    var best = (scale: (hi - lo) / t, min: lo)
    var bestError = error(best.scale, best.min)
    for step in 0...8 {
        // Shrink the range from the top and from the bottom by up to 8 % each.
        for shrinkBottom in [false, true] {
            let f = 1 - 0.01 * Float(step)
            let l = shrinkBottom ? Swift.min(0, lo * f) : lo
            let h = shrinkBottom ? hi : lo + (hi - lo) * f
            var s = (h - l) / t, m = l
            // Least squares refit of (s, m) given the codes of this candidate.
            for _ in 0..<2 where s > 0 {
                var sq: Float = 0, sqq: Float = 0, sx: Float = 0, sxq: Float = 0
                for i in 0..<n {
                    let q = Swift.min(t, Swift.max(0, ((x[i] - m) / s).rounded()))
                    sq += q; sqq += q * q; sx += x[i]; sxq += x[i] * q
                }
                let det = Float(n) * sqq - sq * sq
                guard det > 0 else { break }
                let ns = (Float(n) * sxq - sq * sx) / det, nm = (sx - ns * sq) / Float(n)
                guard ns > 0 else { break }
                s = ns; m = Swift.min(0, nm)
            }
            let e = error(s, m)
            if e < bestError { bestError = e; best = (s, m) }
        }
    }
    return best
}

/// Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins under float16 super-scales d and
/// dmin: x ≈ d·sc·q − dmin·m.
private func blockK(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, bits: Int) {
    let top = (1 << bits) - 1
    var scales = [Float](repeating: 0, count: 8), mins = [Float](repeating: 0, count: 8)
    for j in 0..<8 {
        let (s, m) = fitAffine(x + 32 * j, 32, top: top)
        scales[j] = s
        mins[j] = -m
    }
    let maxScale = scales.max()!, maxMin = mins.max()!
    let d = HalfPrecision.float(fromHalf: HalfPrecision.half(from: maxScale / 63))
    let dmin = HalfPrecision.float(fromHalf: HalfPrecision.half(from: maxMin / 63))
    var ls = [UInt8](repeating: 0, count: 8), lm = [UInt8](repeating: 0, count: 8)
    for j in 0..<8 {
        ls[j] = d > 0 ? UInt8(Swift.min(63, Swift.max(0, (scales[j] / d).rounded()))) : 0
        lm[j] = dmin > 0 ? UInt8(Swift.min(63, Swift.max(0, (mins[j] / dmin).rounded()))) : 0
    }
    storeHalf(d, y, 0)
    storeHalf(dmin, y, 2)
    var packed = [UInt8](repeating: 0, count: 12)
    for j in 0..<8 {
        if j < 4 {
            packed[j] = ls[j]
            packed[j + 4] = lm[j]
        } else {
            packed[j + 4] = (ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4)
            packed[j - 4] |= (ls[j] >> 4) << 6
            packed[j] |= (lm[j] >> 4) << 6
        }
    }
    for i in 0..<12 { (y + 4 + i).storeBytes(of: packed[i], as: UInt8.self) }
    // Codes with the stored (rounded) scales.
    var codes = [UInt8](repeating: 0, count: 256)
    for j in 0..<8 {
        let s = d * Float(ls[j]), m = dmin * Float(lm[j])
        for i in 0..<32 {
            let v = x[32 * j + i]
            codes[32 * j + i] = s > 0 ? UInt8(Swift.min(Float(top), Swift.max(0, ((v + m) / s).rounded()))) : 0
        }
    }
    let qsAt = bits == 4 ? 16 : 48
    if bits == 5 {
        var qh = [UInt8](repeating: 0, count: 32)
        for c in 0..<4 {
            for l in 0..<32 {
                if codes[64 * c + l] > 15 { qh[l] |= 1 << UInt8(2 * c) }
                if codes[64 * c + 32 + l] > 15 { qh[l] |= 2 << UInt8(2 * c) }
            }
        }
        for l in 0..<32 { (y + 16 + l).storeBytes(of: qh[l], as: UInt8.self) }
    }
    for c in 0..<4 {
        for l in 0..<32 {
            let b = (codes[64 * c + l] & 0x0F) | ((codes[64 * c + 32 + l] & 0x0F) << 4)
            (y + qsAt + 32 * c + l).storeBytes(of: b, as: UInt8.self)
        }
    }
}

/// Q6_K: 16 sub-blocks of 16 with int8 scales under a float16 d: x ≈ d·sc·(q − 32), q in 0...63.
private func blockQ6_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
    // Each sub-block's scale maps its value of largest magnitude to −32 (as ggml's make_qx_quants
    // starts), then d maps the scale of largest magnitude to −128.
    var sub = [Float](repeating: 0, count: 16)
    var amaxScale: Float = 0, maxScale: Float = 0
    for j in 0..<16 {
        var amax: Float = 0, max: Float = 0
        for i in 0..<16 where abs(x[16 * j + i]) > amax { amax = abs(x[16 * j + i]); max = x[16 * j + i] }
        sub[j] = max / -32
        if abs(sub[j]) > amaxScale { amaxScale = abs(sub[j]); maxScale = sub[j] }
    }
    var codes = [UInt8](repeating: 32, count: 256)
    var sc = [Int8](repeating: 0, count: 16)
    var d: Float = 0
    if amaxScale > 0 {
        let iscale = -128 / maxScale
        d = HalfPrecision.float(fromHalf: HalfPrecision.half(from: 1 / iscale))
        for j in 0..<16 {
            sc[j] = Int8(Swift.min(127, Swift.max(-128, (iscale * sub[j]).rounded())))
            let s = d * Float(sc[j])
            guard s != 0 else { continue }
            for i in 0..<16 {
                let q = Swift.min(31, Swift.max(-32, (x[16 * j + i] / s).rounded()))
                codes[16 * j + i] = UInt8(Int(q) + 32)
            }
        }
    }
    for c in 0..<2 {
        let L = 128 * c
        for l in 0..<32 {
            let q1 = codes[L + l], q2 = codes[L + l + 32], q3 = codes[L + l + 64], q4 = codes[L + l + 96]
            (y + 64 * c + l).storeBytes(of: (q1 & 0x0F) | ((q3 & 0x0F) << 4), as: UInt8.self)
            (y + 64 * c + l + 32).storeBytes(of: (q2 & 0x0F) | ((q4 & 0x0F) << 4), as: UInt8.self)
            let h = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6)
            (y + 128 + 32 * c + l).storeBytes(of: h, as: UInt8.self)
        }
    }
    for j in 0..<16 { (y + 192 + j).storeBytes(of: sc[j], as: Int8.self) }
    storeHalf(d, y, 208)
}
