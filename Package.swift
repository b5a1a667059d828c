// swift-tools-version: 6.1
import PackageDescription

/// Lifetime dependencies (`@_lifetime`) let children such as memory regions
/// borrow their protection domain, so the compiler rejects any MR that could
/// outlive its PD. The feature ships in release toolchains (the standard
/// library's `Span` uses it).
let lifetimes: [SwiftSetting] = [.enableExperimentalFeature("Lifetimes")]

let package = Package(
  name: "swift-umem",
  products: [
    .library(name: "Phyr", targets: ["Phyr"]),
    .library(name: "Verbs", targets: ["Verbs"]),
    .library(name: "Umem", targets: ["Umem"]),
    .library(name: "RDMACM", targets: ["RDMACM"]),
    .library(name: "RegistrationCache", targets: ["RegistrationCache"]),
    .executable(name: "umem", targets: ["umem"]),
    .executable(name: "rping", targets: ["rping"]),
    .executable(name: "rdma-perf", targets: ["rdma-perf"]),
    .executable(name: "async-echo", targets: ["async-echo"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-system", from: "1.8.0"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
  ],
  targets: [
    .systemLibrary(
      name: "CRDMA",
      pkgConfig: "libibverbs",
      providers: [.apt(["libibverbs-dev", "librdmacm-dev"])]
    ),
    .target(name: "Phyr"),
    // The one internal system layer (errno names, /proc parsing, rlimits,
    // mmap) that Verbs, Umem and RDMACM share; on swift-system.
    // epoll and eventfd headers, which the Glibc module leaves out.
    .systemLibrary(name: "CUmemSystem"),
    .target(
      name: "UmemSystem",
      dependencies: ["CUmemSystem", .product(name: "SystemPackage", package: "swift-system")]),
    .target(name: "Verbs", dependencies: ["CRDMA", "UmemSystem"], swiftSettings: lifetimes),
    .target(
      name: "Umem",
      dependencies: [
        "Phyr", "Verbs", "UmemSystem", .product(name: "SystemPackage", package: "swift-system"),
      ], swiftSettings: lifetimes),
    .target(
      name: "RDMACM", dependencies: ["CRDMA", "Verbs", "UmemSystem"], swiftSettings: lifetimes),
    // Number and size syntax shared by the samples (one parser for every tool).
    .target(name: "ToolSupport", path: "Samples/ToolSupport"),
    // Kernel ABI the cache's userfaultfd monitor needs (ioctl numbers,
    // struct layouts) and that Swift cannot import from the macros.
    .target(name: "CUserfaultfd"),
    // Per-thread slots and membarrier(2): the cache's read lock without a
    // locked instruction (see ReaderWriterLock).
    .target(name: "CThreadSlots"),
    .target(
      name: "RegistrationCache",
      dependencies: [
        "Verbs", "Umem", "UmemSystem", "CUserfaultfd", "CThreadSlots",
        .product(name: "Metrics", package: "swift-metrics"),
      ]),
    .executableTarget(
      name: "umem",
      dependencies: [
        "Phyr", "Verbs", "Umem", "ToolSupport", "RegistrationCache",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Samples/umem",
      swiftSettings: lifetimes
    ),
    .executableTarget(
      name: "rping",
      dependencies: ["RDMACM", "Verbs", "ToolSupport"],
      path: "Samples/rping",
      swiftSettings: lifetimes
    ),
    .executableTarget(
      name: "rdma-perf",
      dependencies: [
        "RDMACM", "Verbs", "Umem", "Phyr", "ToolSupport", "RegistrationCache",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Samples/rdma-perf",
      swiftSettings: lifetimes
    ),
    // The kernel oracle's ioctl interface (the module itself is in ci/oracle).
    .target(name: "COracle", path: "Tests/COracle"),
    .executableTarget(
      name: "async-echo",
      dependencies: [
        "RDMACM", "Verbs",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Samples/async-echo"
    ),
    // Device gate, leak checker and tool runner shared by the test targets.
    .target(name: "TestSupport", dependencies: ["Verbs"], path: "Tests/TestSupport"),
    // A brute-force model of the kernel's page-size and block rules, sharing
    // no code with Phyr: the independent answer tests compare against.
    .target(name: "PlannerReference", dependencies: ["Phyr"], path: "Tests/PlannerReference"),
    .testTarget(name: "PhyrTests", dependencies: ["Phyr", "PlannerReference"]),
    .testTarget(
      name: "VerbsTests", dependencies: ["Verbs", "Phyr", "TestSupport", "UmemSystem"],
      swiftSettings: lifetimes),
    .testTarget(
      name: "UmemTests",
      dependencies: [
        "Umem", "Verbs", "Phyr", "TestSupport", "COracle", "UmemSystem", "ToolSupport",
        "PlannerReference",
      ],
      swiftSettings: lifetimes),
    // Built without the Lifetimes feature on purpose: applications that use
    // only the owned tier need no experimental features.
    .testTarget(
      name: "OwnedTierTests", dependencies: ["Verbs", "UmemSystem", "TestSupport"]),
    // Async completions and connection events: the reactor on the host,
    // the rest on rxe. Built without the Lifetimes feature (owned tier only).
    .testTarget(
      name: "AsyncTests", dependencies: ["Verbs", "RDMACM", "UmemSystem", "TestSupport"]),
    .testTarget(
      name: "RegistrationCacheTests",
      dependencies: [
        "RegistrationCache", "Verbs", "Umem", "UmemSystem", "CUserfaultfd", "CThreadSlots",
        "TestSupport", .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "MetricsTestKit", package: "swift-metrics"),
      ]),
    .testTarget(
      name: "RDMACMTests", dependencies: ["RDMACM", "Verbs", "TestSupport"],
      swiftSettings: lifetimes),
  ]
)
