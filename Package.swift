// swift-tools-version:6.0
import PackageDescription

// Layers (see docs/ARCHITECTURE.md): arrows point only downward.
//   distill (CLI) -> Distillation -> DistillModels -> DistillNN -> DistillTensor -> CDistillKernels
let package = Package(
    name: "Distill",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "DistillTensor", targets: ["DistillTensor"]),
        .library(name: "DistillNN", targets: ["DistillNN"]),
        .library(name: "DistillModels", targets: ["DistillModels"]),
        .library(name: "Distillation", targets: ["Distillation"]),
        .executable(name: "distill", targets: ["distill"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
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
        .target(name: "DistillModels", dependencies: ["DistillNN", "DistillTensor"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .target(name: "Distillation", dependencies: ["DistillModels", "DistillNN", "DistillTensor",
                                                     .product(name: "Yams", package: "Yams")],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(name: "distill",
                          dependencies: ["Distillation", "DistillModels", "DistillNN", "DistillTensor",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillTensorTests", dependencies: ["DistillTensor"],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillModelsTests", dependencies: ["DistillModels", "DistillNN", "DistillTensor"],
                    resources: [.copy("Fixtures")],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillNNTests", dependencies: ["DistillNN", "DistillTensor"],
                    resources: [.copy("Fixtures")],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "DistillationTests", dependencies: ["Distillation", "DistillNN", "DistillTensor"],
                    resources: [.copy("Fixtures")],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)
