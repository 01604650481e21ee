/// Conversions between Float32 and the 16-bit formats of checkpoints (IEEE half, bfloat16).
/// Both round to nearest, ties to even; NaN stays NaN and overflow becomes ±∞.
public enum HalfPrecision {
    public static func float(fromHalf h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int(h >> 10) & 0x1F
        let frac = UInt32(h & 0x3FF)
        if exp == 0 {
            if frac == 0 { return Float(bitPattern: sign) }
            // Subnormal half: frac · 2^-24.
            let v = Float(frac) * Float(bitPattern: 0x3380_0000)
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (frac << 13)) }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | frac << 13)
    }

    public static func half(from f: Float) -> UInt16 {
        let bits = f.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exp = Int((bits >> 23) & 0xFF)
        let frac = bits & 0x7F_FFFF
        if exp == 255 { return sign | 0x7C00 | (frac != 0 ? 0x200 : 0) }     // inf / NaN
        let e = exp - 127 + 15
        if e >= 31 { return sign | 0x7C00 }                                     // overflow
        if e <= 0 {
            // Subnormal or zero: shift the full mantissa, round to nearest even.
            if e < -10 { return sign }
            let m = frac | 0x80_0000
            let shift = UInt32(14 - e)
            var r = m >> shift
            let rem = m & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
            if rem > halfway || (rem == halfway && (r & 1) == 1) { r += 1 }
            return sign | UInt16(r)
        }
        var r = UInt32(e) << 10 | frac >> 13
        let rem = frac & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && (r & 1) == 1) { r += 1 }       // may carry into exp: still right
        return sign | UInt16(r)
    }

    public static func float(fromBFloat16 b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    public static func bfloat16(from f: Float) -> UInt16 {
        let bits = f.bitPattern
        if f.isNaN { return UInt16(bits >> 16) | 0x40 }
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        return UInt16(rounded >> 16)
    }
}

extension Tensor {
    /// A tensor from IEEE half-precision bit patterns.
    public init(halfBits: [UInt16], shape: [Int]) {
        self.init(uninitializedShape: shape)
        precondition(halfBits.count == count, "Tensor(halfBits:): \(halfBits.count) values for shape \(shape)")
        for i in 0..<count { storage.pointer[i] = HalfPrecision.float(fromHalf: halfBits[i]) }
    }

    /// A tensor from bfloat16 bit patterns.
    public init(bfloat16Bits: [UInt16], shape: [Int]) {
        self.init(uninitializedShape: shape)
        precondition(bfloat16Bits.count == count, "Tensor(bfloat16Bits:): \(bfloat16Bits.count) values for shape \(shape)")
        for i in 0..<count { storage.pointer[i] = HalfPrecision.float(fromBFloat16: bfloat16Bits[i]) }
    }

    /// The values as IEEE half-precision bit patterns.
    public var halfBits: [UInt16] { (0..<count).map { HalfPrecision.half(from: storage.pointer[$0]) } }
    /// The values as bfloat16 bit patterns.
    public var bfloat16Bits: [UInt16] { (0..<count).map { HalfPrecision.bfloat16(from: storage.pointer[$0]) } }
}
