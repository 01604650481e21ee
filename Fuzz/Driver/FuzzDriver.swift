import DistillFuzz
import Foundation

// Built normally, `distill-fuzz TARGET PATH…` replays inputs (files, or every file of a
// directory) through a target and reports each one. Built for fuzzing (scripts/fuzz.sh: the
// FUZZING condition, sanitizer coverage and libFuzzer without its main), it is a libFuzzer binary:
// `DISTILL_FUZZ_TARGET=gguf .build-fuzz/release/distill-fuzz CORPUS_DIR -runs=1000000`.

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

nonisolated(unsafe) var fuzzTarget = FuzzTarget.jsonl

/// SwiftPM links an executable's entry point as `<module>_main`; libFuzzer's driver runs from it.
@_cdecl("distill_fuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    let name = ProcessInfo.processInfo.environment["DISTILL_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        FileHandle.standardError.write(Data("set DISTILL_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        return 2
    }
    fuzzTarget = target
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v) { data, size in
        fuzzTarget.run(size == 0 ? Data() : Data(bytes: data!, count: size))
        return 0
    }
}
#else
@main
struct FuzzReplay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let first = args.first, let target = FuzzTarget(rawValue: first), args.count >= 2 else {
            print("usage: distill-fuzz TARGET PATH… (replays inputs; TARGET: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")))")
            exit(2)
        }
        var count = 0
        for path in args.dropFirst() {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                print("\(path): no such file or directory")
                exit(1)
            }
            let files = isDir.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                let start = Date()
                target.run(data)
                count += 1
                let ms = Date().timeIntervalSince(start) * 1000
                if ms > 1000 { print(String(format: "%@: %.0f ms", file, ms)) }
            }
        }
        print("\(target.rawValue): \(count) inputs replayed")
    }
}
#endif
