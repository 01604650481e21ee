import XCTest
@testable import DistillTensor

/// The GEMM backends against an exact (Double) product on awkward shapes.
///
/// Tolerance. Whatever order a backend sums the K products in (blocked by 256, split across
/// threads, with or without FMA), the computed dot product satisfies |ŝ − s| ≤ γ_K·Σₚ|aᵢₚ||bₚⱼ|
/// with γ_K = K·u/(1 − K·u) and u = 2⁻²⁴ (Higham, Accuracy and Stability of Numerical Algorithms,
/// §3.1). Scaling by alpha and adding beta·C costs at most two more roundings. So each element must
/// satisfy
///     |c − exact| ≤ (K + 3)·u·(|α|·Σₚ|aᵢₚ||bₚⱼ| + |β|·|c₀|)
/// which is a rigorous bound, not a guess, and is still tight enough to catch a real bug: losing or
/// doubling one product term changes c by |aᵢₚbₚⱼ| ≈ Σ/K, far more than K·u·Σ for K ≤ ~10³.
/// The exact value is computed in Double (relative error ~1e-16, negligible).
final class GemmTests: XCTestCase {
    struct Problem: CustomStringConvertible {
        var m, n, k: Int
        var transA = false, transB = false
        var alpha: Float = 1, beta: Float = 0
        /// Extra columns beyond the stored width of A, B and C (leading dimension − width).
        var padA = 0, padB = 0, padC = 0

        var description: String {
            "\(m)x\(n)x\(k) transA \(transA) transB \(transB) alpha \(alpha) beta \(beta) pad \(padA)/\(padB)/\(padC)"
        }
    }

    private var backends: [GemmBackend] {
        [.builtin, .portable, .reference] + (Gemm.blasAvailable ? [.blas] : [])
    }

    private let u = 1.0 / 16_777_216.0
    /// Written into C's padding columns; a backend must leave it untouched.
    private let sentinel: Float = 777

    /// Runs `p` on every backend (or `only`) and checks each against the exact product. Returns the
    /// C buffers by backend for further comparisons.
    @discardableResult
    private func check(_ p: Problem, seed: UInt64, threaded: Bool = true, only: [GemmBackend]? = nil,
                       file: StaticString = #filePath, line: UInt = #line) -> [GemmBackend: [Float]] {
        var rng = RandomGenerator(seed: seed)
        // Stored shapes: A is [m, k] or, transposed, [k, m]; B is [k, n] or [n, k].
        let aRows = p.transA ? p.k : p.m, aCols = p.transA ? p.m : p.k, lda = aCols + p.padA
        let bRows = p.transB ? p.n : p.k, bCols = p.transB ? p.k : p.n, ldb = bCols + p.padB
        let ldc = p.n + p.padC
        // Padding of A and B holds NaN: a backend that reads it poisons its result.
        var a = [Float](repeating: .nan, count: Swift.max(aRows * lda, 1))
        for r in 0..<aRows { for c in 0..<aCols { a[r * lda + c] = 2 * rng.nextFloat() - 1 } }
        var b = [Float](repeating: .nan, count: Swift.max(bRows * ldb, 1))
        for r in 0..<bRows { for c in 0..<bCols { b[r * ldb + c] = 2 * rng.nextFloat() - 1 } }
        // C: random where beta ≠ 0; NaN where beta = 0 (C must then not be read, as in BLAS).
        var c0 = [Float](repeating: sentinel, count: Swift.max(p.m * ldc, 1))
        for i in 0..<p.m { for j in 0..<p.n { c0[i * ldc + j] = p.beta == 0 ? .nan : 2 * rng.nextFloat() - 1 } }

        var exact = [Double](repeating: 0, count: p.m * p.n), bound = [Double](repeating: 0, count: p.m * p.n)
        var rowA = [Double](repeating: 0, count: p.k)
        var colsB = [Double](repeating: 0, count: p.k * p.n)     // op(B) transposed: column j contiguous
        for pp in 0..<p.k { for j in 0..<p.n {
            colsB[j * p.k + pp] = Double(p.transB ? b[j * ldb + pp] : b[pp * ldb + j])
        } }
        for i in 0..<p.m {
            for pp in 0..<p.k { rowA[pp] = Double(p.transA ? a[pp * lda + i] : a[i * lda + pp]) }
            for j in 0..<p.n {
                var s = 0.0, s1 = 0.0
                let base = j * p.k
                for pp in 0..<p.k { let t = rowA[pp] * colsB[base + pp]; s += t; s1 += Swift.abs(t) }
                let cPrev = p.beta == 0 ? 0 : Double(c0[i * ldc + j])
                exact[i * p.n + j] = Double(p.alpha) * s + Double(p.beta) * cPrev
                bound[i * p.n + j] = Double(p.k + 3) * u * (Swift.abs(Double(p.alpha)) * s1 + Swift.abs(Double(p.beta) * cPrev))
                    + 1e-35
            }
        }

        var results: [GemmBackend: [Float]] = [:]
        for backend in only ?? backends {
            var c = c0
            a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
                Gemm.sgemm(transA: p.transA, transB: p.transB, m: p.m, n: p.n, k: p.k, alpha: p.alpha,
                           a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb, beta: p.beta,
                           c: pc.baseAddress!, ldc: ldc, backend: backend, threaded: threaded)
            } } }
            var failed = false
            outer: for i in 0..<p.m {
                for j in 0..<p.n {
                    let got = Double(c[i * ldc + j]), want = exact[i * p.n + j], tol = bound[i * p.n + j]
                    if !(Swift.abs(got - want) <= tol) {
                        XCTFail("\(backend) \(p) threaded \(threaded): C[\(i), \(j)] = \(got), exact \(want), "
                                + "|error| \(Swift.abs(got - want)) > bound \(tol)", file: file, line: line)
                        failed = true
                        break outer
                    }
                }
                for j in p.n..<ldc where c[i * ldc + j] != sentinel {
                    XCTFail("\(backend) \(p): wrote C[\(i), \(j)] in the padding past column \(p.n)", file: file, line: line)
                    failed = true
                    break outer
                }
            }
            if !failed { results[backend] = c }
        }
        return results
    }

    private let transposes = [(false, false), (false, true), (true, false), (true, true)]

    /// The tally counts top-level products (their FLOPs and time), not single-threaded ones run
    /// inside parallel loops, and nothing while unset.
    func testTallyCountsTopLevelProducts() {
        let a = [Float](repeating: 1, count: 12 * 7), b = [Float](repeating: 2, count: 7 * 5)
        var c = [Float](repeating: 0, count: 12 * 5)
        defer { Gemm.tally = nil }
        Gemm.tally = Gemm.Tally()
        Gemm.sgemm(transA: false, transB: false, m: 12, n: 5, k: 7, a: a, lda: 7, b: b, ldb: 5, c: &c, ldc: 5)
        Gemm.sgemm(transA: false, transB: false, m: 12, n: 5, k: 7, a: a, lda: 7, b: b, ldb: 5, c: &c, ldc: 5, threaded: false)
        let t = Gemm.tally!
        XCTAssertEqual(t.calls, 1)
        XCTAssertEqual(t.flops, 2 * 12 * 5 * 7)
        XCTAssertGreaterThan(t.seconds, 0)
        XCTAssertEqual(c[0], 14)
        Gemm.tally = nil
        Gemm.sgemm(transA: false, transB: false, m: 12, n: 5, k: 7, a: a, lda: 7, b: b, ldb: 5, c: &c, ldc: 5)
        XCTAssertNil(Gemm.tally)
    }

    func testKernelNames() {
        XCTAssertFalse(Gemm.builtinKernelName.isEmpty)
        if Gemm.blasAvailable { XCTAssertNotNil(Gemm.blasName) }
    }

    func testDegenerateShapesAllTransposes() {
        // 1xN (row vector times matrix), Nx1, 1x1x1, and inner dimension 1 (an outer product)
        let shapes = [(1, 37, 19), (23, 1, 11), (1, 1, 1), (1, 1, 40), (9, 7, 1)]
        for (m, n, k) in shapes { for (ta, tb) in transposes {
            check(Problem(m: m, n: n, k: k, transA: ta, transB: tb), seed: UInt64(m * 1000 + n * 10 + k))
        } }
    }

    func testOddShapesAllTransposes() {
        for (m, n, k) in [(7, 13, 5), (97, 131, 67), (5, 3, 2), (13, 17, 19)] { for (ta, tb) in transposes {
            check(Problem(m: m, n: n, k: k, transA: ta, transB: tb), seed: UInt64(m + n + k))
        } }
    }

    func testLargeOddShapeAllTransposes() {
        // 300x257x511: several M blocks (96), two K blocks (256), ragged edges everywhere; threaded.
        for (ta, tb) in transposes {
            check(Problem(m: 300, n: 257, k: 511, transA: ta, transB: tb), seed: 3)
        }
        check(Problem(m: 300, n: 257, k: 511, transA: true, transB: false, alpha: 0.75, beta: -1.25,
                      padA: 3, padB: 1, padC: 5), seed: 4)
    }

    func testKBlockBoundaries() {
        // The kernel blocks K by 256: beta must apply once (first block), later blocks accumulate.
        for k in [255, 256, 257, 511, 512, 513, 600] { for (ta, tb) in [(false, false), (true, true)] {
            check(Problem(m: 7, n: 9, k: k, transA: ta, transB: tb, alpha: 1.5, beta: 0.75), seed: UInt64(k))
        } }
    }

    func testMBlockBoundaries() {
        // M blocked by 96 (and split across threads when large)
        for m in [95, 96, 97, 193, 200] { for (ta, tb) in [(false, false), (true, false)] {
            check(Problem(m: m, n: 17, k: 8, transA: ta, transB: tb), seed: UInt64(m))
        } }
    }

    func testNBlockBoundaries() {
        // N blocked by 2048; a few rows so that threads split columns
        for (m, n, k) in [(3, 2100, 5), (4, 2048, 3), (10, 2049, 20), (2, 4100, 40)] { for (ta, tb) in transposes {
            check(Problem(m: m, n: n, k: k, transA: ta, transB: tb, alpha: -1, beta: 0.5), seed: UInt64(n + m))
        } }
    }

    func testAlphaBetaAndLeadingDimensions() {
        for (m, n, k) in [(1, 5, 3), (6, 1, 4), (7, 13, 5), (33, 40, 270)] { for (ta, tb) in transposes {
            for (alpha, beta) in [(Float(2), Float(0)), (-0.5, 1), (0.25, -2), (1, 1)] {
                check(Problem(m: m, n: n, k: k, transA: ta, transB: tb, alpha: alpha, beta: beta,
                              padA: 3, padB: 5, padC: 2), seed: UInt64(m * n + k))
            }
        } }
    }

    func testZeroKAndZeroAlpha() {
        // K = 0: C = beta·C. alpha = 0: C = beta·C without reading A·B.
        for backend in backends {
            // (lda = 1: BLAS requires leading dimensions ≥ 1 even when K = 0)
            check(Problem(m: 3, n: 4, k: 0, beta: 0.5, padA: 1), seed: 1, only: [backend])
            check(Problem(m: 3, n: 4, k: 0, beta: 0, padA: 1), seed: 2, only: [backend])
            check(Problem(m: 5, n: 6, k: 7, alpha: 0, beta: -1.5), seed: 3, only: [backend])
        }
    }

    func testEveryBuiltinKernelTheCPUHasOnAwkwardShapes() {
        // Each micro-kernel this CPU supports (portable, AVX2+FMA, AVX-512), forced in turn, on ragged
        // tiles (M around 4/6/12 rows, N around 8/16/32 columns), both K-block edges, all transposes,
        // alpha/beta and padded leading dimensions; A read in place (full panels) and packed (a last
        // panel; Aᵀ with rows more than 256 values apart, the 260-row problem). The FMA kernels sum each element's products in the
        // same order, so AVX2 and AVX-512 give the same bits.
        let kernels = Gemm.builtinKernels, saved = Gemm.builtinKernelName
        defer { Gemm.useBuiltinKernel(String(saved.prefix { $0 != " " })) }
        XCTAssertEqual(kernels.first?.hasPrefix("portable"), true)
        XCTAssertTrue(kernels.contains(saved))
        let problems: [Problem] = [(11, 31, 7), (12, 32, 256), (13, 33, 257), (25, 65, 300), (1, 70, 40), (97, 47, 513), (260, 45, 70)]
            .enumerated().flatMap { (i, shape) in
                transposes.map { Problem(m: shape.0, n: shape.1, k: shape.2, transA: $0.0, transB: $0.1,
                                         alpha: i % 2 == 0 ? 1 : -0.75, beta: i % 3 == 0 ? 0 : 0.5, padA: i % 3, padB: 2, padC: 1) }
            }
        var byKernel: [String: [[Float]]] = [:]
        for name in kernels {
            XCTAssertTrue(Gemm.useBuiltinKernel(String(name.prefix { $0 != " " })))
            XCTAssertEqual(Gemm.builtinKernelName, name)
            byKernel[name] = problems.enumerated().map { (i, p) in check(p, seed: UInt64(40 + i), only: [.builtin])[.builtin] ?? [] }
        }
        if let avx2 = byKernel.first(where: { $0.key.hasPrefix("avx2") })?.value,
           let avx512 = byKernel.first(where: { $0.key.hasPrefix("avx512") })?.value {
            for i in problems.indices { XCTAssertEqual(avx2[i], avx512[i], "avx2 and avx512 differ on \(problems[i])") }
        }
        XCTAssertFalse(Gemm.useBuiltinKernel("no-such-kernel"))
    }

    func testOneRowEqualsTheSameRowOfALargerProduct() {
        // One row of C runs without packing B (batch-1 decoding); it must give the bits the GEMM gives
        // that row in a larger product, for every transpose, alpha/beta, K across blocks, N around 16.
        let saved = Gemm.builtinKernelName
        defer { Gemm.useBuiltinKernel(String(saved.prefix { $0 != " " })) }
        for kernel in Gemm.builtinKernels {
            Gemm.useBuiltinKernel(String(kernel.prefix { $0 != " " }))
            for (n, k) in [(1, 1), (15, 7), (16, 256), (17, 300), (70, 513)] { for (ta, tb) in transposes {
                for (alpha, beta) in [(Float(1), Float(0)), (-0.75, 0.5), (2, 1)] {
                    var rng = RandomGenerator(seed: UInt64(n * 31 + k))
                    let m = 9, lda = ta ? m : k, ldb = tb ? k : n
                    let a = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }, b = (0..<(k * n)).map { _ in rng.nextFloat() - 0.5 }
                    let c0 = (0..<(m * n)).map { _ in rng.nextFloat() - 0.5 }
                    var all = c0
                    Gemm.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                               beta: beta, c: &all, ldc: n, backend: .builtin, threaded: false)
                    for row in [0, 4] {
                        // Row `row` of op(A) alone: A's row (or, transposed, its column) in place.
                        var one = Array(c0[(row * n)..<((row + 1) * n)])
                        a.withUnsafeBufferPointer { pa in
                            Gemm.sgemm(transA: ta, transB: tb, m: 1, n: n, k: k, alpha: alpha, a: pa.baseAddress! + (ta ? row : row * lda),
                                       lda: lda, b: b, ldb: ldb, beta: beta, c: &one, ldc: n, backend: .builtin, threaded: false)
                        }
                        XCTAssertEqual(one.map(\.bitPattern), all[(row * n)..<((row + 1) * n)].map(\.bitPattern),
                                       "\(kernel) n \(n) k \(k) transA \(ta) transB \(tb) alpha \(alpha) beta \(beta) row \(row)")
                    }
                }
            } }
        }
    }

    func testThreadedAndSingleThreadedBuiltinAgreeExactly() {
        // Splitting rows or columns across threads does not change any element's summation order, so the
        // results are bitwise identical (the same run gives the same numbers on any thread count).
        // A weight gradient's product (few rows, op(A) read in place) and a wide one (n ≥ m/2) split
        // columns at multiples of 32, the last share ragged; with Aᵀ's rows over 256 values apart
        // (packed) they split rows, and so do products of many rows and fewer columns.
        XCTAssertTrue(Gemm.splitsColumns(m: 200, n: 700, transA: true, lda: 200, threads: 2))
        XCTAssertTrue(Gemm.splitsColumns(m: 150, n: 333, transA: false, lda: 70, threads: 2))
        XCTAssertTrue(Gemm.splitsColumns(m: 2048, n: 8192, transA: false, lda: 256, threads: 2))
        XCTAssertTrue(Gemm.splitsColumns(m: 2048, n: 1024, transA: false, lda: 512, threads: 2))
        XCTAssertFalse(Gemm.splitsColumns(m: 2048, n: 1000, transA: false, lda: 512, threads: 2))
        XCTAssertFalse(Gemm.splitsColumns(m: 200, n: 700, transA: true, lda: 300, threads: 2))
        XCTAssertFalse(Gemm.splitsColumns(m: 8192, n: 256, transA: true, lda: 2048, threads: 2))
        for p in [Problem(m: 600, n: 257, k: 511, transA: false, transB: true),     // rows split
                  Problem(m: 300, n: 700, k: 130, transA: false, transB: true),     // columns (wide), by 32
                  Problem(m: 4, n: 2100, k: 300, transA: true, transB: false),      // columns split
                  Problem(m: 200, n: 700, k: 513, transA: true, transB: false),     // columns, by 32
                  Problem(m: 150, n: 333, k: 70, transA: false, transB: true, beta: 0.5),
                  Problem(m: 200, n: 700, k: 70, transA: true, transB: false, padA: 101)] {   // rows (lda 301)
            let t = check(p, seed: 9, threaded: true, only: [.builtin, .portable])
            let s = check(p, seed: 9, threaded: false, only: [.builtin, .portable])
            XCTAssertEqual(t[.builtin], s[.builtin], "builtin \(p)")
            XCTAssertEqual(t[.portable], s[.portable], "portable \(p)")
        }
    }
}

/// The GEMM backend is chosen by measurement (GemmSelection): the faster side wins, BLAS keeps
/// near-ties, the choice is cached per machine and settings, and `DISTILL_BLAS` overrides it.
final class GemmSelectionTests: XCTestCase {
    func testTheFasterBackendWins() {
        XCTAssertEqual(GemmSelection.decide(blasGflops: 39, builtinGflops: 120), .builtin)     // a generic OpenBLAS core
        XCTAssertEqual(GemmSelection.decide(blasGflops: 270, builtinGflops: 150), .blas)
        XCTAssertEqual(GemmSelection.decide(blasGflops: 199, builtinGflops: 191), .builtin)    // near ties: built-in
        XCTAssertEqual(GemmSelection.decide(blasGflops: 191, builtinGflops: 169.5), .builtin)
        XCTAssertEqual(GemmSelection.decide(blasGflops: 121, builtinGflops: 100), .blas)
    }

    func testAWiderKernelMustWinByTenPercent() {
        let k = ["avx2-fma 6x16", "avx512 12x32"]
        XCTAssertEqual(GemmSelection.pick(k, [k[0]: 210, k[1]: 218]), k[0])    // level (Zen 4)
        XCTAssertEqual(GemmSelection.pick(k, [k[0]: 150, k[1]: 280]), k[1])    // two 512-bit FMA units
        XCTAssertEqual(GemmSelection.pick(k, [k[0]: 179, k[1]: 204]), k[0])    // Zen 4 on a busy host: 14% is not enough
        XCTAssertEqual(GemmSelection.pick(k, [k[0]: 200, k[1]: 251]), k[1])
        XCTAssertEqual(GemmSelection.pick([k[0]], [k[0]: 1]), k[0])
    }

    func testKernelChoiceIsCachedAndForced() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gemm-kernel-\(UUID().uuidString)")
        let saved = Gemm.builtinKernelName
        defer {
            try? FileManager.default.removeItem(at: dir)
            Gemm.useBuiltinKernel(String(saved.prefix { $0 != " " }))
        }
        let forced = GemmSelection.chooseKernel(environment: ["DISTILL_GEMM_KERNEL": "portable"])
        XCTAssertEqual(forced.reason, "DISTILL_GEMM_KERNEL=portable")
        XCTAssertEqual(Gemm.builtinKernelName, forced.kernel)
        XCTAssertTrue(forced.kernel.hasPrefix("portable"))
        // A kernel this CPU does not run is named in the reason, with the ones it does.
        let unknown = GemmSelection.chooseKernel(environment: ["DISTILL_GEMM_KERNEL": "avx1024"])
        XCTAssertTrue(unknown.reason.contains("DISTILL_GEMM_KERNEL=avx1024 ignored: this CPU runs portable"), unknown.reason)
        XCTAssertEqual(Gemm.builtinKernelName, unknown.kernel)
        if Gemm.builtinKernels.count > 1 { XCTAssertFalse(unknown.kernel.hasPrefix("portable")) }   // an FMA kernel, as without the setting
        guard Gemm.builtinKernels.count > 2 else { throw XCTSkip("one FMA kernel on this CPU: nothing to measure") }
        let env = ["DISTILL_CACHE_DIR": dir.path]
        let first = GemmSelection.chooseKernel(environment: env)
        XCTAssertEqual(first.reason, "measured")
        XCTAssertEqual(first.gflops?.count, Gemm.builtinKernels.count - 1)
        XCTAssertEqual(Gemm.builtinKernelName, first.kernel)
        Gemm.useBuiltinKernel("portable")
        let second = GemmSelection.chooseKernel(environment: env)
        XCTAssertEqual(second.reason, "cached")
        XCTAssertEqual(second.kernel, first.kernel)
        XCTAssertEqual(Gemm.builtinKernelName, first.kernel)
    }

    func testSettingsAndCache() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gemm-choice-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertEqual(GemmSelection.choose(environment: ["DISTILL_BLAS": "off"]),
                       GemmChoice(backend: "builtin", reason: "DISTILL_BLAS=off"))
        XCTAssertEqual(GemmSelection.choose(environment: ["DISTILL_BLAS": "/no/such/libblas.so"]).backend, "builtin")
        guard Gemm.blasAvailable else { throw XCTSkip("no BLAS library here") }
        let env = ["DISTILL_CACHE_DIR": dir.path]
        let first = GemmSelection.choose(environment: env)
        XCTAssertEqual(first.reason, "measured")
        XCTAssertGreaterThan(first.blasGflops ?? 0, 0)
        XCTAssertGreaterThan(first.builtinGflops ?? 0, 0)
        XCTAssertEqual(first.key, GemmSelection.machineKey())
        XCTAssertTrue(first.key!.contains("\(Threads.count) threads"))
        // The second process on this machine reads the choice instead of measuring.
        let second = GemmSelection.choose(environment: env)
        XCTAssertEqual(second.reason, "cached")
        XCTAssertEqual(second.backend, first.backend)
        XCTAssertEqual(second.blasGflops, first.blasGflops)
        // An entry made for something else (another CPU, library or thread count) is measured anew.
        var stale = first
        stale.key = "another machine"
        stale.backend = first.backend == "blas" ? "builtin" : "blas"
        let file = dir.appendingPathComponent("gemm-backend.json")
        try FileManager.default.removeItem(at: file)
        GemmSelection.save(stale, to: file)
        XCTAssertEqual(GemmSelection.choose(environment: env).reason, "measured")
        // Entries of other keys are kept beside this one: both are read back, neither measured again.
        XCTAssertEqual(GemmSelection.entries(at: file, as: GemmChoice.self).map(\.key), ["another machine", first.key])
        XCTAssertEqual(GemmSelection.choose(environment: env).reason, "cached")
        XCTAssertEqual(GemmSelection.entries(at: file, as: GemmChoice.self).first?.backend, stale.backend)
        // A file of the old format (one object) still reads.
        try JSONEncoder().encode(first).write(to: file)
        XCTAssertEqual(GemmSelection.choose(environment: env).reason, "cached")
        // An entry written under the earlier rule (BLAS kept ties within 3%) is decided again from
        // its figures: a 4% lead is a near tie now.
        var earlier = first
        (earlier.backend, earlier.blasGflops, earlier.builtinGflops) = ("blas", 199, 191)
        try JSONEncoder().encode([earlier]).write(to: file)
        XCTAssertEqual(GemmSelection.choose(environment: env).backend, "builtin")
        XCTAssertEqual(GemmSelection.choose(environment: ["DISTILL_BLAS": "on"]), GemmChoice(backend: "blas", reason: "DISTILL_BLAS=on"))
    }
}
