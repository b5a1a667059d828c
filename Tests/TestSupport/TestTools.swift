import Foundation

/// Finds and runs the package's executables from tests.
public enum TestTools {
  /// The built product beside the test bundle (`.build/debug/NAME`).
  public static func executable(_ name: String) -> String {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    return bundle.deletingLastPathComponent().appendingPathComponent(name).path
  }

  /// Held while a child runs and while ``expectNoLeaks(_:sourceLocation:_:)``
  /// counts: a child's pipes are descriptors of this process, which a leak
  /// check in a suite running in parallel would otherwise count.
  public static let descriptorLock = NSRecursiveLock()

  public static func run(_ arguments: [String]) -> (status: Int32, stdout: String, stderr: String) {
    descriptorLock.lock()
    defer { descriptorLock.unlock() }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    do { try process.run() } catch { return (-1, "", "\(error)") }
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (
      process.terminationStatus, String(decoding: stdout, as: UTF8.self),
      String(decoding: stderr, as: UTF8.self)
    )
  }
}

/// Runs `body(i)` for i in 0..<count, each on its own new thread (not a
/// pool sized by the CPU count), and returns when all have finished.
public func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
  let group = DispatchGroup()
  for index in 0..<count {
    group.enter()
    Thread.detachNewThread {
      body(index)
      group.leave()
    }
  }
  group.wait()
}
