import XCTest
@testable import DistillTensor

final class UnaryTests: XCTestCase {
    // MARK: values

    func testNegExpLogValues() {
        let x = Tensor([-1, 0, 2])
        assertValues(-x, [1, 0, -2])
        // e^-1 = 0.36788, e^0 = 1, e^2 = 7.38906
        assertValues(x.exp(), [0.36787944, 1, 7.3890561], accuracy: 1e-5)
        // ln 1 = 0, ln e = 1, ln 0.5 = -0.69315
        assertValues(Tensor([1, Float(M_E), 0.5]).log(), [0, 1, -0.69314718], accuracy: 1e-6)
    }

    func testSqrtRsqrtValues() {
        // √4 = 2, √0.25 = 0.5; 1/√4 = 0.5, 1/√0.25 = 2
        assertValues(Tensor([4, 0.25]).sqrt(), [2, 0.5])
        assertValues(Tensor([4, 0.25]).rsqrt(), [0.5, 2])
    }

    func testTanhSigmoidSiluReluValues() {
        // tanh(0.5) = 0.46212, tanh(1) = 0.76159, tanh(-1) = -0.76159
        assertValues(Tensor([0.5, 1, -1]).tanh(), [0.46211716, 0.76159416, -0.76159416], accuracy: 1e-6)
        // σ(0) = ½, σ(1) = 1/(1+e⁻¹) = 0.73106, σ(-1) = 1 − σ(1)
        assertValues(Tensor([0, 1, -1]).sigmoid(), [0.5, 0.73105858, 0.26894142], accuracy: 1e-6)
        // silu(x) = x·σ(x): silu(1) = 0.73106, silu(2) = 2·σ(2) = 1.76159, silu(0) = 0
        assertValues(Tensor([1, 2, 0]).silu(), [0.73105858, 1.76159416, 0], accuracy: 1e-6)
        // relu(x) = max(x, 0)
        assertValues(Tensor([-2, -0.0, 0.5, 3]).relu(), [0, 0, 0.5, 3])
    }

    func testGeluValues() {
        // Exact: gelu(x) = x·Φ(x). Φ(1) = 0.84134 -> gelu(1) = 0.84134; gelu(-1) = -Φ(-1) = -0.15866;
        // gelu(0.5) = 0.5·Φ(0.5) = 0.5·0.69146 = 0.34573; gelu(2) = 2·0.97725 = 1.95450.
        assertValues(Tensor([1, -1, 0.5, 2, 0]).gelu(), [0.84134475, -0.15865525, 0.34573123, 1.95449974, 0],
                     accuracy: 2e-6)
        // Tanh form: ½x(1 + tanh(√(2/π)(x + 0.044715x³))). At x = 1: u = 0.79788·1.044715 = 0.83356,
        // tanh(u) = 0.68238, y = 0.84119; at -1: -0.15881; 0.5: 0.34571; 2: 1.95460.
        assertValues(Tensor([1, -1, 0.5, 2, 0]).gelu(approximate: true),
                     [0.84119199, -0.15880801, 0.34571401, 1.95459769, 0], accuracy: 2e-6)
    }

    func testPowAndAffineValues() {
        // 3² = 9, (-2)² = 4 (the p = 2 fast path keeps negative bases working)
        assertValues(Tensor([3, -2]).square(), [9, 4])
        assertValues(Tensor([3, -2]).pow(2), [9, 4])
        // 4^1.5 = 8, 9^1.5 = 27, 2^1.5 = 2√2 = 2.82843; 9^0.5 = 3; 2^-1 = 0.5
        assertValues(Tensor([4, 9, 2]).apply(.pow(1.5)), [8, 27, 2.8284271], accuracy: 1e-5)
        assertValues(Tensor([9]).pow(0.5), [3])
        assertValues(Tensor([2]).pow(-1), [0.5])
        // affine: s·x + b with s = -2, b = 0.5: [1, 2] -> [-1.5, -3.5]
        assertValues(Tensor([1, 2]).apply(.affine(scale: -2, shift: 0.5)), [-1.5, -3.5])
    }

    func testScalarOperators() {
        let x = Tensor([1, 2, 4])
        assertValues(x * 3, [3, 6, 12])
        assertValues(3 * x, [3, 6, 12])
        assertValues(x / 4, [0.25, 0.5, 1])
        assertValues(x + 1, [2, 3, 5])
        assertValues(x - 1, [0, 1, 3])
        assertValues(1 - x, [0, -1, -3])       // s − x = -1·x + s
        assertValues(1 + x, [2, 3, 5])
    }

    func testUnaryKeepsShape() {
        let x = uniform([2, 3, 1], 0.5, 2, seed: 1)
        XCTAssertEqual(x.exp().shape, [2, 3, 1])
        XCTAssertEqual(Tensor(scalar: 2).sqrt().shape, [])
    }

    // MARK: gradients

    /// Positive inputs for functions defined on x > 0 (log, sqrt, rsqrt, fractional powers).
    private let positive = uniform([2, 3], 0.5, 2, seed: 11)
    /// Inputs with |x| ≥ 0.2, so relu's kink at 0 is farther than eps from every point.
    private let signed = awayFromZero([2, 3], seed: 12)

    func testNegGradient() { checkGradients(inputs: [signed]) { -$0[0] } }
    // (eˣ)' = eˣ
    func testExpGradient() { checkGradients(inputs: [signed]) { $0[0].exp() } }
    // (ln x)' = 1/x
    func testLogGradient() { checkGradients(inputs: [positive]) { $0[0].log() } }
    // (√x)' = 1/(2√x)
    func testSqrtGradient() { checkGradients(inputs: [positive]) { $0[0].sqrt() } }
    // (x^-½)' = -½·x^-3/2
    func testRsqrtGradient() { checkGradients(inputs: [positive]) { $0[0].rsqrt() } }
    // tanh' = 1 − tanh²
    func testTanhGradient() { checkGradients(inputs: [signed]) { $0[0].tanh() } }
    // σ' = σ(1 − σ)
    func testSigmoidGradient() { checkGradients(inputs: [signed]) { $0[0].sigmoid() } }
    // (xσ)' = σ(1 + x(1 − σ))
    func testSiluGradient() { checkGradients(inputs: [signed]) { $0[0].silu() } }
    // relu' = 1 for x > 0, 0 for x < 0 (inputs stay ≥ 0.2 away from the kink)
    func testReluGradient() { checkGradients(inputs: [signed]) { $0[0].relu() } }
    func testGeluTanhGradient() { checkGradients(inputs: [signed]) { $0[0].apply(.geluTanh) } }
    // (xΦ(x))' = Φ(x) + x·φ(x)
    func testGeluErfGradient() { checkGradients(inputs: [signed]) { $0[0].apply(.geluErf) } }
    // (x²)' = 2x (fast path), (x³)' = 3x², (x^1.5)' = 1.5·x^0.5, (x^-1.5)' = -1.5·x^-2.5
    func testPowGradient() {
        checkGradients(inputs: [signed]) { $0[0].pow(2) }
        checkGradients(inputs: [signed]) { $0[0].pow(3) }
        checkGradients(inputs: [positive]) { $0[0].pow(1.5) }
        checkGradients(inputs: [positive]) { $0[0].pow(-1.5) }
    }
    // (s·x + b)' = s
    func testAffineGradient() {
        checkGradients(inputs: [signed]) { $0[0].apply(.affine(scale: -2, shift: 0.5)) }
        checkGradients(inputs: [signed]) { 3 - $0[0] / 4 }
    }

    func testReluGradientIsZeroForNegativeInputs() {
        // relu'(-1) = 0, relu'(2) = 1
        let g = gradient(at: Tensor([-1, 2])) { $0.relu().sum() }
        assertValues(g, [0, 1])
    }
}
