import CDistillKernels
import Foundation

/// How the GEMM backend was chosen: a CBLAS library is used only where it is measured faster than
/// the built-in kernel on this machine (a library's generic kernels can be several times slower —
/// Debian's OpenBLAS 0.3.21 runs its SSE3 "Prescott" code on CPUs newer than it knows). The
/// measurement takes a few tens of milliseconds on first use and is kept per machine, library and
/// thread count (one entry each) in `~/.cache/distill/gemm-backend.json` ($XDG_CACHE_HOME or $DISTILL_CACHE_DIR
/// move it).
public struct GemmChoice: Codable, Equatable, Sendable {
    /// The backend matrix products use: "blas" or "builtin".
    public var backend: String
    /// measured, cached (an earlier measurement on this machine), or the reason nothing was measured.
    public var reason: String
    /// GFLOP/s each side reached in the measurement (nil when not measured).
    public var blasGflops: Double?
    public var builtinGflops: Double?
    /// What the cache entry is valid for: CPU, its vector extensions, library, kernels, threads.
    public var key: String?
}

/// Which built-in micro-kernel runs (AVX2 or AVX-512 where the CPU has both): measured on this
/// machine, since the widest is not always the fastest (Zen 4 runs AVX-512 at the AVX2 rate;
/// Intel's server cores with two 512-bit FMA units at twice it); see `GemmSelection.pick`. Both sum in the
/// same order, so the choice changes speed, never the numbers. Kept per CPU, kernels and thread
/// count in `gemm-kernel.json` beside the backend's cache.
public struct GemmKernelChoice: Codable, Equatable, Sendable {
    /// The micro-kernel's name ("avx512 12x32", "avx2-fma 6x16", "portable 4x8").
    public var kernel: String
    /// measured, cached, DISTILL_GEMM_KERNEL=…, or why nothing was measured.
    public var reason: String
    /// GFLOP/s of each FMA kernel in the measurement (nil when not measured).
    public var gflops: [String: Double]?
    public var key: String?
}

public enum GemmSelection {
    /// Products timed: a square one and training-shaped ones (rows × hidden → intermediate, as
    /// x·W and as a Linear layer's x·Wᵀ; a weight gradient's Δᵀ·x).
    static let shapes: [(m: Int, n: Int, k: Int, transA: Bool, transB: Bool)] =
        [(384, 384, 384, false, false), (1024, 704, 256, false, false), (1024, 704, 256, false, true), (704, 256, 1024, true, false)]

    /// Chooses the backend as `Gemm.backend` does on first use (see the type's comment).
    /// `DISTILL_BLAS=off` forces the built-in kernel, `on` (or a library path) a BLAS library.
    static func choose(environment env: [String: String] = ProcessInfo.processInfo.environment) -> GemmChoice {
        _ = Gemm.kernelChoice   // the built-in side is the kernel chosen for this machine
        let setting = env["DISTILL_BLAS"]
        if setting == "off" || setting == "0" { return GemmChoice(backend: "builtin", reason: "DISTILL_BLAS=\(setting!)") }
        let path = setting == nil || setting == "on" || setting == "1" ? nil : setting
        guard dk_blas_load(path) == 1 else {
            return GemmChoice(backend: "builtin", reason: path.map { "DISTILL_BLAS=\($0) does not load" } ?? "no BLAS library found")
        }
        dk_blas_set_threads(Int32(Threads.count))
        if setting != nil { return GemmChoice(backend: "blas", reason: "DISTILL_BLAS=\(setting!)") }
        let key = machineKey()
        let url = cacheURL(env)
        if let url, var cached = entries(at: url, as: GemmChoice.self).first(where: { $0.key == key }) {
            cached.reason = "cached"
            // Decided again from the cached figures: an entry written under an earlier rule
            // (BLAS kept ties within 3%) follows this one.
            if let blas = cached.blasGflops, let builtin = cached.builtinGflops {
                cached.backend = decide(blasGflops: blas, builtinGflops: builtin).rawValue
            }
            return cached
        }
        let choice = measure(key: key)
        if let url { save(choice, to: url) }
        return choice
    }

    /// Times both backends on `shapes` (each product's best of three after a warm-up), in three
    /// rounds taking turns so that a busy moment of the machine does not fall on one side only,
    /// each side's best round counting, and picks the faster (see `decide`).
    public static func measure(key: String? = nil) -> GemmChoice {
        var blas = 0.0, builtin = 0.0
        for _ in 0..<3 {
            blas = Swift.max(blas, gflops(.blas))
            builtin = Swift.max(builtin, gflops(.builtin))
        }
        return GemmChoice(backend: decide(blasGflops: blas, builtinGflops: builtin).rawValue, reason: "measured",
                          blasGflops: blas, builtinGflops: builtin, key: key ?? machineKey())
    }

    /// A BLAS library runs only where it measures at least 20% faster: near ties go to the built-in
    /// GEMM, whose sums do not depend on the thread count or the library. (On the Zen 4 where this
    /// was measured, OpenBLAS 0.3.21 timed 4–13% above the built-in kernel on these shapes from one
    /// run to the next, yet the training steps ran 8–11% slower with it: its many mid-sized
    /// products pay for thread handoffs and the packing of both operands.)
    static func decide(blasGflops: Double, builtinGflops: Double) -> GemmBackend {
        blasGflops >= 1.2 * builtinGflops ? .blas : .builtin
    }

    /// GFLOP/s of `backend` over `shapes` (each its best of three runs).
    static func gflops(_ backend: GemmBackend) -> Double {
        var flops = 0.0, seconds = 0.0
        for s in shapes {
            let a = [Float](repeating: 0.5, count: s.m * s.k), b = [Float](repeating: 0.25, count: s.k * s.n)
            let lda = s.transA ? s.m : s.k, ldb = s.transB ? s.k : s.n
            var c = [Float](repeating: 0, count: s.m * s.n)
            var best = Double.infinity
            for run in 0..<4 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        c.withUnsafeMutableBufferPointer { pc in
                            Gemm.sgemm(transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, a: pa.baseAddress!, lda: lda,
                                       b: pb.baseAddress!, ldb: ldb, c: pc.baseAddress!, ldc: s.n, backend: backend)
                        }
                    }
                }
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                if run > 0 { best = min(best, dt) }
            }
            flops += 2.0 * Double(s.m * s.n * s.k)
            seconds += best
        }
        return flops / seconds / 1e9
    }

    /// Chooses the built-in micro-kernel as `Gemm.kernelChoice` does on first use (see
    /// `GemmKernelChoice`): `DISTILL_GEMM_KERNEL=avx2|avx512|portable` (where supported), else a
    /// cached measurement, else the FMA kernels measured now (`pick`). Switches the kernel.
    static func chooseKernel(environment env: [String: String] = ProcessInfo.processInfo.environment) -> GemmKernelChoice {
        if let want = env["DISTILL_GEMM_KERNEL"], !want.isEmpty {
            if Gemm.useBuiltinKernel(want) {
                return GemmKernelChoice(kernel: Gemm.builtinKernelName, reason: "DISTILL_GEMM_KERNEL=\(want)")
            }
            // Not a kernel this CPU runs: chosen as without the setting, and the reason says so
            // (`distill bench ops` prints it).
            var choice = chooseKernel(environment: env.filter { $0.key != "DISTILL_GEMM_KERNEL" })
            choice.reason += "; DISTILL_GEMM_KERNEL=\(want) ignored: this CPU runs "
                + Gemm.builtinKernels.map { String($0.prefix { $0 != " " }) }.joined(separator: ", ")
            return choice
        }
        let fma = Array(Gemm.builtinKernels.dropFirst())   // portable only on request
        guard fma.count > 1 else {
            if let only = fma.first { Gemm.useBuiltinKernel(only) }
            return GemmKernelChoice(kernel: Gemm.builtinKernelName, reason: "the only kernel for this CPU's vector extensions")
        }
        let key = kernelKey(), url = cacheURL(env, file: "gemm-kernel.json")
        if let url, var cached = entries(at: url, as: GemmKernelChoice.self).first(where: { $0.key == key }),
           Gemm.useBuiltinKernel(cached.kernel) {
            cached.reason = "cached"
            return cached
        }
        let choice = measureKernels(fma, key: key)
        if let url { save(choice, to: url) }
        return choice
    }

    /// Times each of `kernels` as `gflops(.builtin)` does, best of three interleaved rounds (the
    /// first one timed would otherwise pay for the warm-up, and a busy moment would decide), and
    /// switches to the one `pick` takes.
    static func measureKernels(_ kernels: [String], key: String) -> GemmKernelChoice {
        var rates: [String: Double] = [:]
        for _ in 0..<3 {
            for k in kernels where Gemm.useBuiltinKernel(k) { rates[k] = Swift.max(rates[k] ?? 0, gflops(.builtin)) }
        }
        let best = pick(kernels, rates)
        Gemm.useBuiltinKernel(best)
        return GemmKernelChoice(kernel: best, reason: "measured", gflops: rates, key: key)
    }

    /// The first of `kernels` (narrowest first) unless a wider one is at least 25% faster: on a
    /// CPU that splits 512-bit operations in two (AMD Zen 4) the AVX-512 kernel measured 2–14%
    /// faster than AVX2 on these products (more when the machine was busy) yet 4–6% slower in the
    /// training steps (more of its 12 x 32 tiles are ragged); where two 512-bit FMA units double
    /// the rate (Intel's server cores) it wins by far more than that.
    static func pick(_ kernels: [String], _ rates: [String: Double]) -> String {
        var best = kernels[0]
        for k in kernels.dropFirst() where (rates[k] ?? 0) >= 1.25 * (rates[best] ?? 0) { best = k }
        return best
    }

    /// The CPU model and the vector extensions that matter here.
    static func cpuKey() -> String {
        var cpu = "unknown CPU"
        var features: [String] = []
        if let info = ProcessMemory.procFile("/proc/cpuinfo") {
            for line in info.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2 else { continue }
                if parts[0] == "model name", cpu == "unknown CPU" { cpu = parts[1] }
                if parts[0] == "flags", features.isEmpty {
                    let wanted: Set<String> = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile"]
                    features = parts[1].split(separator: " ").map(String.init).filter(wanted.contains).sorted()
                }
            }
        }
        return [cpu, features.joined(separator: ",")].joined(separator: " | ")
    }

    /// What a cached kernel choice is valid for: the CPU, the kernels and the thread count.
    static func kernelKey() -> String {
        [cpuKey(), Gemm.builtinKernels.joined(separator: ","), "\(Threads.count) threads"].joined(separator: " | ")
    }

    /// CPU model and vector extensions, the library (path, OpenBLAS build and core), the built-in
    /// kernel and the thread count: a cached choice holds while these stay the same.
    public static func machineKey() -> String {
        let lib = dk_blas_available() == 1 ? String(cString: dk_blas_name()) : "none"
        let config = (dk_blas_config().map { String(cString: $0) } ?? "")
            + (dk_blas_core_name().map { " core " + String(cString: $0) } ?? "")
        return [cpuKey(), lib, config, Gemm.builtinKernelName, "\(Threads.count) threads"]
            .joined(separator: " | ")
    }

    static func cacheURL(_ env: [String: String], file: String = "gemm-backend.json") -> URL? {
        let dir: String
        if let d = env["DISTILL_CACHE_DIR"], !d.isEmpty { dir = d }
        else if let x = env["XDG_CACHE_HOME"], !x.isEmpty { dir = x + "/distill" }
        else if let h = env["HOME"], !h.isEmpty { dir = h + "/.cache/distill" }
        else { return nil }
        return URL(fileURLWithPath: dir).appendingPathComponent(file)
    }

    /// The cached choices, one per key (a file from before several were kept holds one object).
    static func entries<Choice: Decodable>(at url: URL, as type: Choice.Type) -> [Choice] {
        guard let data = try? Data(contentsOf: url) else { return [] }
        if let all = try? JSONDecoder().decode([Choice].self, from: data) { return all }
        return (try? JSONDecoder().decode(Choice.self, from: data)).map { [$0] } ?? []
    }

    /// Adds the choice to the file, replacing the entry of its key and keeping the others: a
    /// process with another thread count (an MPI rank with DISTILL_THREADS=1, say) must not make
    /// the next one measure again, since a measurement taken under load may choose the other
    /// backend and so give a resumed run other numerics than the run it continues. Best effort: a
    /// read-only home only costs a new measurement next time.
    static func save<Choice: Codable & KeyedChoice>(_ choice: Choice, to url: URL) {
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let all = entries(at: url, as: Choice.self).filter { $0.key != choice.key } + [choice]
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let data = try? enc.encode(all) { try? data.write(to: url, options: .atomic) }
    }

    /// Re-measures now and replaces the cached choice (`distill bench ops`); returns the measurement.
    /// `Gemm.backend` switches to it.
    @discardableResult
    public static func remeasure() -> GemmChoice? {
        let env = ProcessInfo.processInfo.environment
        if env["DISTILL_GEMM_KERNEL"] == nil, Gemm.builtinKernels.count > 2 {
            let kernels = measureKernels(Array(Gemm.builtinKernels.dropFirst()), key: kernelKey())
            if let url = cacheURL(env, file: "gemm-kernel.json") { save(kernels, to: url) }
            Gemm.kernelChoice = kernels
        }
        guard Gemm.blasAvailable, env["DISTILL_BLAS"] == nil else { return nil }
        let choice = measure()
        if let url = cacheURL(ProcessInfo.processInfo.environment) { save(choice, to: url) }
        Gemm.choice = choice
        Gemm.backend = GemmBackend(rawValue: choice.backend) ?? .builtin
        return choice
    }

    /// OpenBLAS's core for this CPU, and a warning when it is a generic one on a CPU with AVX2
    /// (Debian's 0.3.21 does not know CPUs newer than it and falls back to SSE3 kernels).
    public static func blasCoreReport() -> (core: String?, warning: String?) {
        guard Gemm.blasAvailable, let c = dk_blas_core_name() else { return (nil, nil) }
        let core = String(cString: c)
        let generic: Set<String> = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Katmai", "Atom", "Northwood",
                                    "Banias", "Generic", "Barcelona", "Opteron_SSE3", "Opteron"]
        let key = machineKey()
        guard generic.contains(core), key.contains("avx2") else { return (core, nil) }
        let suggested = key.contains("avx512f") ? "SkylakeX" : "Haswell"
        return (core, "OpenBLAS runs its generic \(core) kernels on this CPU, which has \(key.contains("avx512f") ? "AVX-512" : "AVX2"): "
                    + "set OPENBLAS_CORETYPE=\(suggested) or install a newer OpenBLAS. Distill measures both and uses its "
                    + "built-in kernel while it is faster (now: \(Gemm.backend.rawValue)).")
    }
}

/// A cached choice: valid for the machine its key names.
protocol KeyedChoice { var key: String? { get } }
extension GemmChoice: KeyedChoice {}
extension GemmKernelChoice: KeyedChoice {}
