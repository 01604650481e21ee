// swift-tools-version:6.0
import PackageDescription

// Layers (see docs/ARCHITECTURE.md): arrows point only downward.
//   distill (CLI) -> Distillation -> DistillData -> DistillModels -> DistillNN -> DistillTensor -> CDistillKernels
//   distill (CLI) -> DistillServer -> DistillModels
//   distill (CLI) -> DistillEval -> DistillData
//   distill (CLI) -> DistillPipeline -> Distillation, DistillEval
let package = Package(
    name: "Distill",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "DistillTensor", targets: ["DistillTensor"]),
        .library(name: "DistillNN", targets: ["DistillNN"]),
        .library(name: "DistillModels", targets: ["DistillModels"]),
        .library(name: "DistillData", targets: ["DistillData"]),
        .library(name: "Distillation", targets: ["Distillation"]),
        .library(name: "DistillServer", targets: ["DistillServer"]),
        .library(name: "DistillEval", targets: ["DistillEval"]),
        .library(name: "DistillPipeline", targets: ["DistillPipeline"]),
        .executable(name: "distill", targets: ["distill"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C kernels: GEMM micro-kernels compiled twice (portable vectors and AVX2+FMA, chosen at
        // run time), and a run-time binding to a CBLAS library (dlopen) so that the package builds
        // and runs with only the Swift toolchain installed.
        .target(name: "CDistillKernels", linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        .target(name: "DistillTensor", dependencies: ["CDistillKernels"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .target(name: "DistillNN", dependencies: ["DistillTensor"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        // The ONNX schema as Swift types (generated once by scripts/generate_onnx_proto.sh and
        // committed), for `distill export --format onnx`.
        .target(name: "ONNXSchema", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(name: "DistillModels", dependencies: ["DistillNN", "DistillTensor", "ONNXSchema"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        // Prompt sets, trace templates, verifiers, the OpenAI-compatible teacher client, the
        // generation store (SQLite, compiled from its amalgamation by sqlite-nio: no system
        // library needed) and dataset files.
        .target(name: "DistillData", dependencies: ["DistillModels", "DistillNN", "DistillTensor",
                                                   .product(name: "AsyncHTTPClient", package: "async-http-client"),
                                                   .product(name: "SQLiteNIO", package: "sqlite-nio")],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        // OpenAI-compatible HTTP API over a local model.
        .target(name: "DistillServer", dependencies: ["DistillModels", "DistillNN", "DistillTensor",
                                                     .product(name: "Hummingbird", package: "hummingbird")],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        // Evaluation: task metrics (accuracy, F1, BLEU, ROUGE, perplexity), teacher agreement,
        // speed and memory, reports.
        .target(name: "DistillEval", dependencies: ["DistillData", "DistillModels", "DistillNN", "DistillTensor"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .target(name: "Distillation", dependencies: ["DistillData", "DistillModels", "DistillNN", "DistillTensor",
                                                     .product(name: "Yams", package: "Yams")],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        // The continuous pipeline (`distill pipeline`): inbox → traces → decontamination → training
        // → evaluation gate → promotion into versioned directories.
        .target(name: "DistillPipeline", dependencies: ["Distillation", "DistillEval", "DistillData", "DistillModels"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        // Benchmarks (`distill bench`: ops, generation, serving, losses, training steps, KD) and the
        // demos (`distill demo`): only the command line uses them.
        .target(name: "DistillBench", dependencies: ["Distillation", "DistillServer", "DistillModels", "DistillNN", "DistillTensor",
                                                    "CDistillKernels",
                                                    .product(name: "AsyncHTTPClient", package: "async-http-client")],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .target(name: "DistillDemos", dependencies: ["Distillation", "DistillData", "DistillModels", "DistillNN", "DistillTensor"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(name: "distill",
                          dependencies: ["DistillBench", "DistillDemos", "DistillPipeline", "Distillation", "DistillData", "DistillServer", "DistillEval",
                                         "DistillModels", "DistillNN", "DistillTensor",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: [.swiftLanguageMode(.v5)]),
        // Fuzz harnesses of the parsers (files and requests users hand in), a libFuzzer driver that
        // replays inputs when built normally (scripts/fuzz.sh builds it for fuzzing).
        .target(name: "DistillFuzz", dependencies: ["Distillation", "DistillServer", "DistillModels"], path: "Fuzz/Targets",
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(name: "distill-fuzz", dependencies: ["DistillFuzz"], path: "Fuzz/Driver",
                          swiftSettings: [.swiftLanguageMode(.v5)]),
        // Helpers shared by test targets (not a product).
        .target(name: "DistillTestSupport", dependencies: ["DistillModels", "DistillNN", "DistillTensor"],
                path: "Tests/DistillTestSupport", swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillTensorTests", dependencies: ["DistillTensor"],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillModelsTests", dependencies: ["DistillModels", "DistillNN", "DistillTensor", "DistillTestSupport"],
                    resources: [.copy("Fixtures")],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillNNTests", dependencies: ["DistillNN", "DistillTensor"],
                    resources: [.copy("Fixtures")],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillDataTests", dependencies: ["DistillData", "DistillServer", "DistillTestSupport", "DistillModels", "DistillNN", "DistillTensor"],
                    exclude: ["Fixtures"],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillServerTests", dependencies: ["DistillServer", "DistillTestSupport", "DistillModels", "DistillNN", "DistillTensor",
                                                              .product(name: "HummingbirdTesting", package: "hummingbird")],
                    resources: [.copy("Fixtures")],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillEvalTests", dependencies: ["DistillEval", "DistillModels", "DistillNN", "DistillTensor"],
                    exclude: ["Fixtures"],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        // The fuzz corpora replayed through their harnesses.
        .testTarget(name: "DistillFuzzTests", dependencies: ["DistillFuzz"], swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillPipelineTests", dependencies: ["DistillPipeline", "DistillServer", "DistillTestSupport", "Distillation", "DistillData",
                                                                "DistillModels", "DistillNN", "DistillTensor",
                                                                .product(name: "HummingbirdTesting", package: "hummingbird")],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        // The command line's own checks (options that no library function sees).
        .testTarget(name: "DistillCLITests", dependencies: ["distill", "Distillation", "DistillModels", "DistillNN"],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillationTests", dependencies: ["Distillation", "DistillBench", "DistillDemos", "DistillData", "DistillModels", "DistillNN", "DistillTensor",
                                                              "DistillServer", "DistillTestSupport"],
                    resources: [.copy("Fixtures")],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)
