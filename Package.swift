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
    .executable(name: "umem", targets: ["umem"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
  ],
  targets: [
    .systemLibrary(
      name: "CRDMA",
      pkgConfig: "libibverbs",
      providers: [.apt(["libibverbs-dev", "librdmacm-dev"])]
    ),
    .target(name: "Phyr"),
    .target(name: "Verbs", dependencies: ["CRDMA"], swiftSettings: lifetimes),
    .executableTarget(
      name: "umem",
      dependencies: [
        "Phyr", "Verbs",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Samples/umem",
      swiftSettings: lifetimes
    ),
    .testTarget(name: "PhyrTests", dependencies: ["Phyr"]),
    .testTarget(name: "VerbsTests", dependencies: ["Verbs"], swiftSettings: lifetimes),
  ]
)
