import Foundation
import Testing

/// The scoped tier's promise, checked by the compiler itself: a region
/// cannot escape its domain, its buffer or its scope. Each snippet is
/// type-checked against the built modules; the first must compile (so the
/// harness is known to work) and each of the others must be rejected.
@Suite struct ScopedRegionsCannotEscape {
  /// A helper that returns a region it borrows from its caller compiles
  /// (with the Lifetimes feature, as the README tells scoped-tier users).
  static let allowed = """
    import Verbs
    @_lifetime(borrow pd, borrow buffer)
    func register(_ pd: borrowing ProtectionDomain, _ buffer: borrowing PageAlignedBuffer)
      throws -> MemoryRegion
    {
      try pd.register(buffer)
    }
    """

  static let rejected: [(String, String, String)] = [
    (
      "a region that borrows a local buffer is returned",
      """
      import Verbs
      @_lifetime(borrow pd)
      func leak(_ pd: borrowing ProtectionDomain) throws -> MemoryRegion {
        let buffer = try PageAlignedBuffer(byteCount: 4096)
        return try pd.register(buffer)
      }
      """,
      "escapes its scope"
    ),
    (
      "a class stores a scoped region",
      """
      import Verbs
      final class Holder { var region: MemoryRegion? = nil }
      """,
      "escapes its scope"
    ),
    (
      "an escaping closure captures a scoped region",
      """
      import Verbs
      func capture(_ context: borrowing DeviceContext) throws {
        let pd = try context.allocateProtectionDomain()
        let buffer = try PageAlignedBuffer(byteCount: 4096)
        let mr = try pd.register(buffer)
        let later: () -> UInt32 = { mr.lkey }
        _ = later
      }
      """,
      "escapes its scope"
    ),
    (
      "a domain outlives its context",
      """
      import Verbs
      func orphan() throws -> ProtectionDomain {
        let context = try DeviceContext.open()
        return try context.allocateProtectionDomain()
      }
      """,
      "needs a parameter to depend on"
    ),
  ]

  @Test func allowedHelperCompiles() throws {
    let result = try Self.typecheck(Self.allowed)
    #expect(result.status == 0, "\(result.output)")
  }

  @Test(arguments: Self.rejected.map(\.0))
  func escapeIsRejected(_ name: String) throws {
    let (_, source, reason) = try #require(Self.rejected.first { $0.0 == name })
    let result = try Self.typecheck(source)
    #expect(result.status != 0, "compiled, but must not: \(name)")
    // Rejected for the right reason, not for a harness problem.
    #expect(result.output.contains(reason), "\(result.output)")
  }

  /// Compiles `source` to SIL (where lifetime dependencies are checked)
  /// against the modules this test bundle was built with.
  static func typecheck(_ source: String) throws -> (status: Int32, output: String) {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    let build = bundle.deletingLastPathComponent()
    let scratch = build.deletingLastPathComponent().deletingLastPathComponent()
    let repository = scratch.deletingLastPathComponent()
    let file = FileManager.default.temporaryDirectory
      .appendingPathComponent("umem-escape-\(UUID().uuidString).swift")
    try source.write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
      "swiftc", "-emit-sil", "-o", "/dev/null", "-parse-as-library",
      "-enable-experimental-feature", "Lifetimes",
      "-I", build.appendingPathComponent("Modules").path,
      "-I", repository.appendingPathComponent("Sources/CRDMA").path,
      "-I", repository.appendingPathComponent("Sources/CUmemSystem").path,
      "-I", scratch.appendingPathComponent("checkouts/swift-system/Sources/CSystem/include").path,
      file.path,
    ]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
  }
}
