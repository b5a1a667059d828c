import Foundation
import Testing
@testable import Verbs

/// Decides whether device tests run, and measures what a test leaves behind.
///
/// On a machine without RDMA the device suites are skipped, unless
/// `UMEM_REQUIRE_DEVICE=1` (set by `ci/rxe`), which makes them run and fail.
enum DeviceLab {
  static let required = ProcessInfo.processInfo.environment["UMEM_REQUIRE_DEVICE"] == "1"
  static let available = (try? Device.list().isEmpty == false) ?? false
  static var shouldRun: Bool { required || available }
  /// The device the tests use: `UMEM_DEVICE`, else the first.
  static let deviceName = ProcessInfo.processInfo.environment["UMEM_DEVICE"]

  static func open() throws -> DeviceContext { try DeviceContext.open(name: deviceName) }
}

/// Pinned memory, open descriptors, and this process's MRs and PDs as the
/// kernel's RDMA resource tracker sees them (`rdma resource show`).
struct ResourceSnapshot: Equatable, CustomStringConvertible {
  var pinnedBytes: UInt64
  var lockedBytes: UInt64
  var openDescriptors: Int
  var memoryRegions: Int
  var protectionDomains: Int

  static func take() -> ResourceSnapshot {
    let lock = MemoryLockStatus.current()
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    return ResourceSnapshot(
      pinnedBytes: lock.pinnedBytes, lockedBytes: lock.lockedBytes, openDescriptors: fds,
      memoryRegions: countOwn("mr"), protectionDomains: countOwn("pd"))
  }

  /// Lines of `rdma resource show KIND` that name this process's pid.
  static func countOwn(_ kind: String) -> Int {
    let pid = String(getpid())
    guard let output = run(["rdma", "resource", "show", kind]) else { return -1 }
    return output.split(separator: "\n").filter { line in
      let words = line.split(separator: " ")
      return zip(words, words.dropFirst()).contains { $0 == "pid" && $1 == pid }
    }.count
  }

  static func run(_ arguments: [String]) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
  }

  var description: String {
    "VmPin \(pinnedBytes) B, VmLck \(lockedBytes) B, \(openDescriptors) fds, "
      + "\(memoryRegions) MRs, \(protectionDomains) PDs"
  }
}

/// Runs `body` and checks that it left no pin, MR, PD or descriptor behind.
func expectNoLeaks(
  _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) rethrows {
  let before = ResourceSnapshot.take()
  try body()
  let after = ResourceSnapshot.take()
  #expect(before == after, "\(what) leaked: before \(before), after \(after)", sourceLocation: sourceLocation)
}

/// Expects `body` to throw a `VerbsError` with this code, operation and errno,
/// and returns it for further checks.
@discardableResult
func expectVerbsError(
  _ code: VerbsError.Code, operation: String, errno: Int32,
  sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> VerbsError? {
  do {
    try body()
    Issue.record("expected \(code) from \(operation), but nothing was thrown", sourceLocation: sourceLocation)
    return nil
  } catch let error as VerbsError {
    #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    #expect(error.operation == operation, "\(error)", sourceLocation: sourceLocation)
    #expect(error.errno == errno, "\(error)", sourceLocation: sourceLocation)
    #expect(!error.message.isEmpty, sourceLocation: sourceLocation)
    return error
  } catch {
    Issue.record("expected a VerbsError, got \(error)", sourceLocation: sourceLocation)
    return nil
  }
}
