// swift-tools-version: 6.1
import PackageDescription

/// Benchmarks for the Phyr module, kept out of the library package so users
/// never build them. Run `./run-phyr-bench`: it compiles the C reference
/// loops with `cc -O2` into `.build-c/libphyr_ref.a` and links them here.
/// SwiftPM names a path dependency after its directory, which is wherever the
/// repository was cloned (`swift-umem`, `main`, ...): take it from this file's
/// path, two levels up.
let rootPackage = String(#filePath.split(separator: "/").dropLast(3).last ?? "swift-umem")

let package = Package(
  name: "phyr-bench",
  dependencies: [.package(path: "../..")],
  targets: [
    .systemLibrary(name: "CPhyrRef", path: "C"),
    .executableTarget(
      name: "phyr-bench",
      dependencies: ["CPhyrRef", .product(name: "Phyr", package: rootPackage)]
    ),
  ]
)
