import XCTest
@testable import DistillTensor

final class HalfPrecisionTests: XCTestCase {
    private func h(_ f: Float) -> UInt16 { HalfPrecision.half(from: f) }
    private func f(_ h: UInt16) -> Float { HalfPrecision.float(fromHalf: h) }
    private func p2(_ e: Int) -> Float { Float(sign: .plus, exponent: e, significand: 1) }

    // MARK: IEEE half

    func testKnownHalfBitPatterns() {
        // sign | 5-bit exponent (bias 15) | 10-bit fraction
        XCTAssertEqual(h(1), 0x3C00)          // 2⁰: exponent 15
        XCTAssertEqual(h(-2), 0xC000)
        XCTAssertEqual(h(0.5), 0x3800)
        XCTAssertEqual(h(0), 0x0000)
        XCTAssertEqual(h(-0.0), 0x8000)
        XCTAssertEqual(h(65504), 0x7BFF)      // largest finite: (2 − 2⁻¹⁰)·2¹⁵
        XCTAssertEqual(h(p2(-14)), 0x0400)    // smallest normal
        XCTAssertEqual(h(p2(-24)), 0x0001)    // smallest subnormal
        XCTAssertEqual(h(1023 * p2(-24)), 0x03FF)   // largest subnormal
        XCTAssertEqual(h(.infinity), 0x7C00)
        XCTAssertEqual(h(-.infinity), 0xFC00)
        XCTAssertEqual(h(1.0 / 3), 0x3555)    // 0.333251953125 is the nearest half
    }

    func testOverflowToInfinity() {
        // 65504 is the largest half; 65520 is exactly halfway to 2¹⁶ and ties to even -> the
        // carry gives 0x7C00 = ∞. Just below 65520 rounds down.
        XCTAssertEqual(h(65519), 0x7BFF)
        XCTAssertEqual(h(65520), 0x7C00)
        XCTAssertEqual(h(65536), 0x7C00)
        XCTAssertEqual(h(1e9), 0x7C00)
        XCTAssertEqual(h(-1e9), 0xFC00)
        XCTAssertEqual(h(.greatestFiniteMagnitude), 0x7C00)
    }

    func testUnderflowAndSubnormalRounding() {
        // Subnormals are multiples of 2⁻²⁴. 2⁻²⁵ is halfway between 0 and 2⁻²⁴: ties to even -> 0.
        XCTAssertEqual(h(p2(-25)), 0x0000)
        XCTAssertEqual(h(-p2(-25)), 0x8000)
        XCTAssertEqual(h(p2(-25).nextUp), 0x0001)      // just above halfway rounds up
        XCTAssertEqual(h(p2(-26)), 0x0000)
        XCTAssertEqual(h(.leastNonzeroMagnitude), 0x0000)
        // 3·2⁻²⁵ = 1.5·2⁻²⁴: halfway between 1 and 2 -> 2 (even); 5·2⁻²⁵: between 2 and 3 -> 2
        XCTAssertEqual(h(3 * p2(-25)), 0x0002)
        XCTAssertEqual(h(5 * p2(-25)), 0x0002)
        // 1023.5·2⁻²⁴: halfway between the largest subnormal and the smallest normal -> 0x0400 (even)
        XCTAssertEqual(h(1023.5 * p2(-24)), 0x0400)
    }

    func testNormalTiesToEven() {
        // Near 1 the spacing is 2⁻¹⁰. 1 + 2⁻¹¹ is halfway between 0x3C00 and 0x3C01 -> 0x3C00 (even);
        // 1 + 3·2⁻¹¹ is halfway between 0x3C01 and 0x3C02 -> 0x3C02 (even); above halfway rounds up.
        XCTAssertEqual(h(1 + p2(-11)), 0x3C00)
        XCTAssertEqual(h(1 + 3 * p2(-11)), 0x3C02)
        XCTAssertEqual(h((1 + p2(-11)).nextUp), 0x3C01)
        XCTAssertEqual(h((1 + p2(-11)).nextDown), 0x3C00)
        // Near 2048 the spacing is 2: 2049 -> 2048 (0x6800), 2051 -> 2052 (0x6802)
        XCTAssertEqual(h(2049), 0x6800)
        XCTAssertEqual(h(2051), 0x6802)
        // Rounding up can carry into the exponent: 2 − 2⁻¹² -> 2 (0x4000)
        XCTAssertEqual(h(2 - p2(-12)), 0x4000)
    }

    func testHalfToFloat() {
        XCTAssertEqual(f(0x3C00), 1)
        XCTAssertEqual(f(0xC000), -2)
        XCTAssertEqual(f(0x7BFF), 65504)
        XCTAssertEqual(f(0x0001), p2(-24))             // 5.96e-8
        XCTAssertEqual(f(0x03FF), 1023 * p2(-24))
        XCTAssertEqual(f(0x0400), p2(-14))
        XCTAssertEqual(f(0x8001), -p2(-24))
        XCTAssertEqual(f(0x7C00), .infinity)
        XCTAssertEqual(f(0xFC00), -.infinity)
        XCTAssertEqual(f(0x3555), 0.333251953125)
        XCTAssertEqual(f(0x8000), 0)
        XCTAssertEqual(f(0x8000).sign, .minus)
    }

    func testNaNStaysNaN() {
        XCTAssertTrue(f(0x7E00).isNaN)
        XCTAssertTrue(f(0x7C01).isNaN)                 // smallest payload is NaN, not ∞
        XCTAssertTrue(f(0xFE00).isNaN)
        XCTAssertTrue(f(h(.nan)).isNaN)
        // A NaN whose payload lies only in the low float bits (lost by the shift) stays NaN.
        XCTAssertTrue(f(h(Float(bitPattern: 0x7F80_0001))).isNaN)
        XCTAssertTrue(f(h(-.nan)).isNaN)
    }

    func testEveryHalfRoundTrips() {
        // half -> float is exact, so float -> half must give the same bits back for all 65536 patterns.
        for bits in 0...UInt16.max {
            let v = f(bits)
            if v.isNaN { XCTAssertTrue(f(h(v)).isNaN, "0x\(String(bits, radix: 16))"); continue }
            if h(v) != bits { XCTFail("half 0x\(String(bits, radix: 16)) -> \(v) -> 0x\(String(h(v), radix: 16))"); return }
        }
    }

    func testFloatToHalfIsNearest() {
        // For random floats in the normal range, the half is the nearest one: |x − f(h(x))| ≤ half an ulp,
        // and the neighbouring halves are not closer.
        var rng = RandomGenerator(seed: 161)
        for _ in 0..<2000 {
            let x = (rng.nextFloat() * 2 - 1) * Float(Foundation.pow(2.0, Double(Int(rng.next() % 30) - 15)))
            let bits = h(x), y = f(bits)
            let up = f(bits &+ 1), down = f(bits &- 1)
            // (the neighbour of ±0 across the sign is a NaN pattern: skip it)
            if !up.isNaN { XCTAssertLessThanOrEqual(Swift.abs(x - y), Swift.abs(x - up), "x = \(x)") }
            if !down.isNaN { XCTAssertLessThanOrEqual(Swift.abs(x - y), Swift.abs(x - down), "x = \(x)") }
        }
    }

    func testHalfTensors() {
        let t = Tensor(halfBits: [0x3C00, 0xC000, 0x7BFF, 0x0001], shape: [2, 2])
        XCTAssertEqual(t.scalars, [1, -2, 65504, p2(-24)])
        XCTAssertEqual(t.halfBits, [0x3C00, 0xC000, 0x7BFF, 0x0001])
    }

    // MARK: bfloat16 (the top 16 bits of a float, rounded to nearest even)

    func testBFloat16KnownPatterns() {
        XCTAssertEqual(HalfPrecision.bfloat16(from: 1), 0x3F80)
        XCTAssertEqual(HalfPrecision.bfloat16(from: -2), 0xC000)
        XCTAssertEqual(HalfPrecision.bfloat16(from: 0), 0x0000)
        XCTAssertEqual(HalfPrecision.bfloat16(from: -0.0), 0x8000)
        XCTAssertEqual(HalfPrecision.bfloat16(from: .infinity), 0x7F80)
        XCTAssertEqual(HalfPrecision.bfloat16(from: -.infinity), 0xFF80)
        // 3.140625 = 0x40490000 exactly; π = 0x40490FDB rounds to 0x4049
        XCTAssertEqual(HalfPrecision.bfloat16(from: .pi), 0x4049)
        XCTAssertEqual(HalfPrecision.float(fromBFloat16: 0x3F80), 1)
        XCTAssertEqual(HalfPrecision.float(fromBFloat16: 0x4049), 3.140625)
        XCTAssertEqual(HalfPrecision.float(fromBFloat16: 0xFF80), -.infinity)
    }

    func testBFloat16TiesToEven() {
        func b(_ bits: UInt32) -> UInt16 { HalfPrecision.bfloat16(from: Float(bitPattern: bits)) }
        // 0x3F80_8000 is halfway between 0x3F80 and 0x3F81 -> 0x3F80 (even)
        XCTAssertEqual(b(0x3F80_8000), 0x3F80)
        // 0x3F81_8000 is halfway between 0x3F81 and 0x3F82 -> 0x3F82 (even)
        XCTAssertEqual(b(0x3F81_8000), 0x3F82)
        // above and below halfway
        XCTAssertEqual(b(0x3F80_8001), 0x3F81)
        XCTAssertEqual(b(0x3F80_7FFF), 0x3F80)
        // the largest float rounds up to ∞ (its rounded value exceeds the bfloat16 range)
        XCTAssertEqual(b(0x7F7F_FFFF), 0x7F80)
    }

    func testBFloat16NaNStaysNaN() {
        XCTAssertTrue(HalfPrecision.float(fromBFloat16: HalfPrecision.bfloat16(from: .nan)).isNaN)
        // Payload only in the low 16 bits: truncation would give ∞; it must stay NaN.
        XCTAssertTrue(HalfPrecision.float(fromBFloat16: HalfPrecision.bfloat16(from: Float(bitPattern: 0x7F80_0001))).isNaN)
        XCTAssertTrue(HalfPrecision.float(fromBFloat16: HalfPrecision.bfloat16(from: Float(bitPattern: 0xFFFF_FFFF))).isNaN)
        XCTAssertTrue(HalfPrecision.float(fromBFloat16: 0x7FC0).isNaN)
    }

    func testEveryBFloat16RoundTrips() {
        for bits in 0...UInt16.max {
            let v = HalfPrecision.float(fromBFloat16: bits)
            let back = HalfPrecision.bfloat16(from: v)
            if v.isNaN { XCTAssertTrue(HalfPrecision.float(fromBFloat16: back).isNaN); continue }
            if back != bits { XCTFail("bfloat16 0x\(String(bits, radix: 16)) -> \(v) -> 0x\(String(back, radix: 16))"); return }
        }
    }

    func testBFloat16Tensors() {
        let t = Tensor(bfloat16Bits: [0x3F80, 0x4049, 0xC000], shape: [3])
        XCTAssertEqual(t.scalars, [1, 3.140625, -2])
        XCTAssertEqual(t.bfloat16Bits, [0x3F80, 0x4049, 0xC000])
    }
}
