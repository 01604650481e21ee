import CDistillKernels
import Foundation

/// A weight matrix `[rows, cols]` kept in a GGML block format (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: 32
/// weights per block; Q4_K, Q5_K, Q6_K: 256) for inference: `multiply` (a few rows) and `matmul`
/// (many) expand each block to the Float32 values the loader dequantizes to and multiply in
/// Float32, so the result is the product with the dequantized matrix up to the order of the
/// additions — while reading 4-7× fewer bytes than a Float32 matrix (what bounds decoding speed)
/// and holding only the blocks in memory. One input row of a 32-value type (batch-1 decoding,
/// AVX2) is summed factored per block, d·Σ n·x + c·Σ x (w = n·d + c), so its rounding is within
/// a few float roundings of Σ (|n·d| + |c|)·|x| rather than of Σ |w·x|.
public final class QuantizedMatrix: @unchecked Sendable {
    public enum Format: Int32, Sendable, CaseIterable {
        case q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q4_K = 12, q5_K = 13, q6_K = 14
        /// bfloat16 values (a frozen teacher's weights at half the memory; GGUF BF16 tensors),
        /// held in blocks of 32 (64 bytes), i.e. a plain bfloat16 row.
        case bf16 = 30
        public var blockBytes: Int { Int(dk_qblock_bytes(rawValue)) }
        /// Values per block: 32, or 256 for the K-quants.
        public var blockValues: Int { Int(dk_qblock_values(rawValue)) }
        /// Whether the 8-bit-activation kernels (`--fast`) take it; the others multiply in Float32
        /// (AVX2 for the 32-value types, portable code for the K-quants).
        public var hasVectorKernels: Bool { self == .q4_0 || self == .q4_1 || self == .q8_0 }
    }

    public let format: Format
    public let rows: Int
    public let cols: Int
    /// bfloat16 only: `matmul` rounds x to bfloat16 too and multiplies pairs with AVX512_BF16
    /// (twice the Float32 rate) where the CPU has it — a frozen teacher's option, since the
    /// activations' rounding moves the results (a realistic model's log-probs by < 1e-2).
    public var bfloat16Products = false

    /// Whether the CPU has AVX512_BF16 (what `bfloat16Products` needs).
    public static var bfloat16ProductsAvailable: Bool { dk_bf16dot_available() == 1 }
    /// Whether `matmul` runs on bfloat16 products here (`bfloat16Products` and a CPU with AVX512_BF16).
    public var usesBFloat16Products: Bool { format == .bf16 && bfloat16Products && Self.bfloat16ProductsAvailable }
    /// rows × cols/32 blocks, row after row: owned bytes, or bytes borrowed from `owner` (a
    /// memory-mapped file), so that a model's quantized weights are not copied.
    private let owned: [UInt8]?
    private let base: UnsafeRawPointer
    private let owner: AnyObject?
    /// Whether the borrowed blocks are an unwritten private mapping of a file, whose pages the
    /// system reads from the file again when they are used after being given back.
    private let fileMapped: Bool
    /// The blocks repacked for the vector int8 kernels (`dk_q8_pack`; as large as the blocks),
    /// made by the first fast product that runs one (see `int8Packed`).
    private var packedForInt8: UnsafeMutableRawPointer?
    private let packing = NSLock()

    deinit { packedForInt8?.deallocate() }

    /// The blocks in the vector int8 kernels' slivers of 16 rows, packed on first use (threads
    /// splitting the slivers) and kept. Blocks borrowed from a mapped file are then given back to
    /// the system (`madvise(MADV_DONTNEED)` on Linux, on the pages wholly inside the matrix): the
    /// fast products read only the packed copy, so a model served with `--fast` holds its
    /// Q4_0/Q4_1/Q8_0 matrices once, not twice. Whatever still reads the blocks — an embedding's
    /// lookups, an exact product — gets the pages it touches from the file again. Matrices held
    /// in memory (converted, or rows reordered) keep both copies.
    func int8Packed() -> UnsafeRawPointer {
        packing.lock()
        defer { packing.unlock() }
        if let p = packedForInt8 { return UnsafeRawPointer(p) }
        let type = format.rawValue, rows = rows, cols = cols, base = base
        let p = UnsafeMutableRawPointer.allocate(byteCount: dk_q8_packed_bytes(type, rows, cols), alignment: 64)
        parallelFor((rows + 15) / 16, grain: 8) { r in dk_q8_pack(type, base, rows, cols, p, r.lowerBound, r.upperBound) }
        packedForInt8 = p
        if fileMapped { Self.giveBack(base, byteCount: rows * cols / format.blockValues * format.blockBytes) }
        return UnsafeRawPointer(p)
    }

    /// Gives the pages wholly inside `bytes` back to the system (Linux; elsewhere nothing). They
    /// must belong to a private file mapping that was never written: read again, they come from
    /// the file.
    static func giveBack(_ start: UnsafeRawPointer, byteCount: Int) {
        #if os(Linux)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let from = (Int(bitPattern: start) + page - 1) / page * page, to = (Int(bitPattern: start) + byteCount) / page * page
        guard to > from, let p = UnsafeMutableRawPointer(bitPattern: from) else { return }
        _ = madvise(p, to - from, Int32(MADV_DONTNEED))
        #endif
    }

    /// `blocks` must hold rows × cols/B blocks of `format` (B = 32, or 256 for the K-quants); cols
    /// must be a multiple of B.
    public convenience init(format: Format, rows: Int, cols: Int, blocks: [UInt8]) throws {
        try Self.check(format: format, rows: rows, cols: cols, count: blocks.count)
        self.init(format: format, rows: rows, cols: cols, owned: blocks, base: nil, owner: nil)
    }

    /// `m` [rows, cols] rounded to bfloat16 (to nearest, ties to even); cols must be a multiple of 32.
    public convenience init(bfloat16 m: Tensor) throws {
        precondition(m.rank == 2, "QuantizedMatrix(bfloat16:): a matrix, got \(m.shape)")
        let n = m.count, p = m.storage.pointer
        var bytes = [UInt8](repeating: 0, count: 2 * n)
        bytes.withUnsafeMutableBytes { raw in
            let h = raw.bindMemory(to: UInt16.self)
            for i in 0..<n { h[i] = HalfPrecision.bfloat16(from: p[i]).littleEndian }
        }
        try self.init(format: .bf16, rows: m.shape[0], cols: m.shape[1], blocks: bytes)
    }

    /// Borrows `bytes`, which `owner` keeps alive (and unchanged) as long as this matrix lives.
    /// `fileMapped`: the bytes lie in a private mapping of a file that nothing writes, so the pages
    /// may be given back once the fast products have their packed copy (see `int8Packed`).
    public convenience init(format: Format, rows: Int, cols: Int, borrowing bytes: UnsafeRawBufferPointer, owner: AnyObject,
                            fileMapped: Bool = false) throws {
        try Self.check(format: format, rows: rows, cols: cols, count: bytes.count)
        self.init(format: format, rows: rows, cols: cols, owned: nil, base: bytes.baseAddress!, owner: owner, fileMapped: fileMapped)
    }

    private init(format: Format, rows: Int, cols: Int, owned: [UInt8]?, base: UnsafeRawPointer?, owner: AnyObject?,
                 fileMapped: Bool = false) {
        self.format = format
        self.rows = rows
        self.cols = cols
        self.owned = owned
        self.owner = owner
        self.fileMapped = fileMapped
        if let owned {
            // The array's buffer stays put: it is never mutated or resized.
            self.base = owned.withUnsafeBytes { UnsafeRawPointer($0.baseAddress!) }
        } else {
            self.base = base!
        }
    }

    private static func check(format: Format, rows: Int, cols: Int, count: Int) throws {
        let bv = format.blockValues
        guard cols % bv == 0, cols > 0, rows > 0 else {
            throw TensorError.shapeMismatch(op: "QuantizedMatrix", shapes: [[rows, cols]], reason: "columns must be a positive multiple of \(bv)")
        }
        guard count == rows * cols / bv * format.blockBytes else {
            throw TensorError.shapeMismatch(op: "QuantizedMatrix", shapes: [[rows, cols], [count]],
                                            reason: "expected \(rows * cols / bv * format.blockBytes) bytes of \(format) blocks")
        }
    }

    /// The blocks' bytes.
    public var blocks: [UInt8] { owned ?? [UInt8](UnsafeRawBufferPointer(start: base, count: rows * rowBytes)) }

    /// Most input rows (tokens × batch) a layer multiplies through the matrix-vector kernels
    /// (`multiply`); larger inputs (prompts, scoring) go through `matmul`'s GEMM — or, under the
    /// fast option where the int8 GEMM runs, through `multiply` too (see `multipliesRows`).
    public static let decodeRows = 16

    /// Whether an inference product of `m` input rows goes through `multiply` (Float32 activations
    /// up to `decodeRows` rows, or int8 activations under `fastDecoding`) rather than `matmul`: the
    /// fast option's int8 GEMM is faster than the Float32 GEMM for any number of rows (40 rows of
    /// a Q4_1 1536 × 576 matrix on one Zen 4 core: AVX-512 VNNI 4.1×, AVX2 1.35×; Q8_0 with AVX2
    /// level); with the portable kernel, prompts keep the Float32 GEMM.
    public func multipliesRows(_ m: Int) -> Bool {
        m <= Self.decodeRows || (Self.fastDecoding && format.hasVectorKernels && Int8Kernel.preferred.resolved != .portable)
    }

    /// x·Wᵀ without gradients as a layer computes it: `multiply` or `matmul` as `multipliesRows`
    /// says, with int8 activations under `fastDecoding`.
    public func inferenceProduct(_ x: Tensor) -> Tensor {
        multipliesRows(x.shape.dropLast().reduce(1, *)) ? multiply(x, int8Activations: Self.fastDecoding) : matmul(x)
    }

    /// The fast decoding option (`--fast`): layers multiply with their activations quantized to
    /// 8 bits per block of 32 and integer dot products, as llama.cpp does. Faster, but the logits
    /// change slightly, so it is off by default and never used for teacher log-probabilities.
    nonisolated(unsafe) public static var fastDecoding = false

    /// Bytes per row.
    public var rowBytes: Int { cols / format.blockValues * format.blockBytes }

    /// The matrix with its rows reordered: row i of the result is row `order[i]` of this one.
    public func selectingRows(_ order: [Int]) throws -> QuantizedMatrix {
        var out = [UInt8](); out.reserveCapacity(order.count * rowBytes)
        for r in order { out += UnsafeRawBufferPointer(start: base + r * rowBytes, count: rowBytes) }
        return try QuantizedMatrix(format: format, rows: order.count, cols: cols, blocks: out)
    }

    /// The dequantized matrix [rows, cols].
    public func dequantized() -> Tensor {
        let out = Tensor(uninitializedShape: [rows, cols])
        dk_qdequantize_rows(format.rawValue, base, cols, out.storage.pointer, 0, rows)
        return out
    }

    /// Rows `ids` dequantized, [ids.count, cols] (an embedding lookup).
    public func dequantizedRows(_ ids: [Int]) -> Tensor {
        let out = Tensor(uninitializedShape: [ids.count, cols])
        let o = out.storage.pointer, cols = self.cols, type = format.rawValue, base = self.base
        parallelFor(ids.count, grain: 16) { r in
            for i in r {
                precondition(ids[i] >= 0 && ids[i] < rows, "QuantizedMatrix: row \(ids[i]) outside 0..<\(rows)")
                dk_qdequantize_rows(type, base, cols, o + i * cols - ids[i] * cols, ids[i], ids[i] + 1)
            }
        }
        return out
    }

    /// x·Wᵀ for many rows of x [..., cols] → [..., rows] (prompts, scoring, a frozen teacher):
    /// the built-in GEMM packs its panels of W straight from the blocks (`dk_sgemm_quantized`; x packed once),
    /// threads splitting W's rows, so W never exists in Float32 and memory holds the blocks plus
    /// the GEMM's panels. Not recorded for gradients.
    public func matmul(_ x: Tensor) -> Tensor {
        precondition(x.shape.last == cols, "QuantizedMatrix: input \(x.shape) does not end in \(cols)")
        let m = x.shape.dropLast().reduce(1, *)
        let y = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [rows])
        let px = x.storage.pointer, py = y.storage.pointer, cols = self.cols, rows = self.rows
        let type = format.rawValue, base = self.base
        if usesBFloat16Products {
            var packed = [UInt32](repeating: 0, count: dk_bf16dot_packed_a_words(m, cols))
            packed.withUnsafeMutableBufferPointer { ap in
                let pa = UnsafePointer(ap.baseAddress!), out = ap.baseAddress!, slivers = dk_bf16dot_slivers(m)
                parallelFor(slivers, grain: 8) { r in dk_bf16dot_pack_a(m, cols, px, cols, out, r.lowerBound, r.upperBound) }
                let slices = (rows + 31) / 32
                parallelFor(slices, grain: Swift.max(1, slices / (4 * Threads.count))) { r in
                    dk_sgemm_bf16dot(m, cols, pa, base, r.lowerBound * 32, Swift.min(rows, r.upperBound * 32), py, rows)
                }
            }
            return y
        }
        // x is packed into the micro-kernel's row panels once, shared by every task. Slices of one
        // sliver of W (the micro-kernel's 16 or 32 columns) per task: each task's panel of W stays
        // in L1 while x streams past it. (Wider slices measured 15% slower scoring SmolLM2 Q4_1.)
        // One kernel for the whole product, read once (see dk_quantized_kernel).
        let kernel = dk_quantized_kernel()
        var packed = [Float](repeating: 0, count: dk_packed_a_floats(kernel, m, cols))
        packed.withUnsafeMutableBufferPointer { ap in
            dk_pack_a_all(kernel, m, cols, px, cols, ap.baseAddress!)
            let pa = UnsafePointer(ap.baseAddress!), nr = dk_quantized_sliver_columns(kernel)
            let slices = (rows + nr - 1) / nr
            parallelFor(slices, grain: Swift.max(1, slices / (4 * Threads.count))) { r in
                dk_sgemm_quantized(kernel, type, m, cols, pa, base, r.lowerBound * nr, Swift.min(rows, r.upperBound * nr), py, rows)
            }
        }
        return y
    }

    /// The integer kernels of the fast option (`int8Activations`): by default the fastest this
    /// CPU runs (AVX-512 VNNI, AVX-VNNI, AVX2, portable code); tests force each one.
    public enum Int8Kernel: Int32, CaseIterable, Sendable {
        /// All but `portable` multiply a repacked copy of the matrix (`int8Packed`) and give the
        /// same bits: avx512VNNI on 16 lanes, avx2 and avxVNNI (VPDPBUSD's VEX form, for AVX2 CPUs
        /// without AVX-512) on 8.
        case best = 0, portable = 1, avx2 = 2, avx512VNNI = 3, avxVNNI = 4
        /// Whether this CPU runs it.
        public var isSupported: Bool { dk_qgemv_q8_supports(rawValue) == 1 }
        public var name: String {
            switch self {
            case .avx512VNNI: "avx512-vnni"
            case .avxVNNI: "avx-vnni"
            default: "\(self)"
            }
        }

        /// What `preferred` started as and why (see `choose`), for `distill bench generate` to print.
        public static let startingChoice = choose()

        /// The kernel used when none is given. Tests set it.
        nonisolated(unsafe) public static var preferred: Int8Kernel = startingChoice.kernel

        /// `DISTILL_INT8_KERNEL=avx512-vnni|avx-vnni|avx2|portable` where this CPU runs it (for
        /// comparisons), else the fastest (`best`). A name that is not one of these, or a kernel
        /// this CPU does not run, is ignored, and the reason says so.
        public static func choose(environment env: [String: String] = ProcessInfo.processInfo.environment) -> (kernel: Int8Kernel, reason: String) {
            let runs = allCases.filter { $0 != .best && $0.isSupported }.map(\.name)
            guard let want = env["DISTILL_INT8_KERNEL"], !want.isEmpty else {
                return (.best, "\(fastest.name), the fastest this CPU runs")
            }
            if let k = allCases.first(where: { $0 != .best && $0.name == want }), k.isSupported {
                return (k, "\(k.name) (DISTILL_INT8_KERNEL=\(want))")
            }
            let what = allCases.contains { $0 != .best && $0.name == want } ? "this CPU does not run it" : "not a kernel name"
            return (.best, "\(fastest.name), the fastest this CPU runs; DISTILL_INT8_KERNEL=\(want) ignored (\(what); "
                    + "this CPU runs \(runs.joined(separator: ", ")))")
        }

        /// The kernel `best` runs here.
        public static var fastest: Int8Kernel {
            [.avx512VNNI, .avxVNNI, .avx2].first { $0.isSupported } ?? .portable
        }

        /// The kernel this choice runs here (`best`: the fastest; one this CPU lacks: as `best`).
        public var resolved: Int8Kernel { self == .best || !isSupported ? Self.fastest : self }
    }

    /// x·Wᵀ for x [..., cols] → [..., rows]; rows of the output split across threads. Not
    /// recorded for gradients (inference). `int8Activations`: the fast option (see `fastDecoding`),
    /// with `int8Kernel` (default: the fastest here; `portable` picks the portable one).
    public func multiply(_ x: Tensor, int8Activations: Bool = false, portable: Bool = false, int8Kernel: Int8Kernel? = nil) -> Tensor {
        Self.multiply([self], x, int8Activations: int8Activations, portable: portable, int8Kernel: int8Kernel)[0]
    }

    /// x·Wᵀ for each W of `matrices` (all of x's width), as `multiply` does for one, in one
    /// parallel loop over all their rows and with x quantized once: a decoding step's q/k/v or
    /// gate/up projections of the same input, with one wait for the threads instead of several.
    /// Each product's values are the ones `multiply` gives it alone.
    public static func multiply(_ matrices: [QuantizedMatrix], _ x: Tensor, int8Activations: Bool = false, portable: Bool = false,
                                int8Kernel: Int8Kernel? = nil) -> [Tensor] {
        guard let cols = matrices.first?.cols else { return [] }
        for w in matrices { precondition(x.shape.last == w.cols && w.cols == cols, "QuantizedMatrix: input \(x.shape) does not end in \(w.cols)") }
        let m = x.shape.dropLast().reduce(1, *), lead = Array(x.shape.dropLast())
        let ys = matrices.map { Tensor(uninitializedShape: lead + [$0.rows]) }
        // Where each matrix's rows start in the shared loop.
        var starts = [0]
        for w in matrices { starts.append(starts.last! + w.rows) }
        let total = starts.last!, px = x.storage.pointer
        let outs = ys.map { $0.storage.pointer }, types = matrices.map { $0.format.rawValue }, bases = matrices.map { $0.base }
        let chosen = int8Kernel ?? (portable ? .portable : Int8Kernel.preferred)
        let int8 = matrices.map { int8Activations && $0.format.hasVectorKernels }, quantize = int8.contains(true)
        // The vector kernels multiply the packed copy (dk_q8gemm); the portable one reads the blocks.
        let gemm = chosen.resolved != .portable ? chosen.resolved.rawValue : nil
        let packed = zip(matrices, int8).map { w, i in i && gemm != nil ? w.int8Packed() : nil }
        let nb = cols / 32
        var q = [Int8](repeating: 0, count: quantize ? m * cols : 0)
        var d = [Float](repeating: 0, count: quantize ? m * nb : 0), sums = [Int32](repeating: 0, count: quantize ? m * nb : 0)
        q.withUnsafeMutableBufferPointer { qp in
            d.withUnsafeMutableBufferPointer { dp in
                sums.withUnsafeMutableBufferPointer { sp in
                    if quantize {
                        let (q, d, s) = (qp.baseAddress!, dp.baseAddress!, sp.baseAddress!)
                        parallelFor(m, grain: Swift.max(1, 16_384 / cols)) { r in
                            for i in r { dk_quantize_q8_blocks(px + i * cols, cols, q + i * cols, d + i * nb, s + i * nb) }
                        }
                    }
                    let (qa, da, sa) = (UnsafePointer(qp.baseAddress), UnsafePointer(dp.baseAddress), UnsafePointer(sp.baseAddress))
                    // Tasks take whole slivers of 16 rows (the int8 GEMM's; 64 rows at least).
                    parallelFor((total + 15) / 16, grain: 4) { s in
                        let r = (s.lowerBound * 16)..<Swift.min(total, s.upperBound * 16)
                        for j in matrices.indices where starts[j] < r.upperBound && starts[j + 1] > r.lowerBound {
                            let lo = Swift.max(r.lowerBound, starts[j]) - starts[j], hi = Swift.min(r.upperBound, starts[j + 1]) - starts[j]
                            let rows = starts[j + 1] - starts[j]
                            if let p = packed[j], let gemm {
                                dk_q8gemm(types[j], p, cols, qa!, da!, sa!, m, outs[j], rows, lo, hi, gemm)
                            } else if int8[j] {
                                dk_qgemv_q8(types[j], bases[j], cols, qa!, da!, sa!, m, outs[j], rows, lo, hi)
                            } else if portable {
                                dk_qgemv_portable(types[j], bases[j], cols, px, m, cols, outs[j], rows, lo, hi)
                            } else {
                                dk_qgemv(types[j], bases[j], cols, px, m, cols, outs[j], rows, lo, hi)
                            }
                        }
                    }
                }
            }
        }
        return ys
    }
}

