import Foundation
import Testing
import Verbs

/// Decides whether device tests run, and measures what a test leaves behind.
///
/// On a machine without RDMA the device suites are skipped, unless
/// `UMEM_REQUIRE_DEVICE=1` (set by `ci/rxe`), which makes them run and fail.
public enum DeviceLab {
  public static let required = ProcessInfo.processInfo.environment["UMEM_REQUIRE_DEVICE"] == "1"
  public static let available = (try? Device.list().isEmpty == false) ?? false
  public static var shouldRun: Bool { required || available }
  /// The device the tests use: `UMEM_DEVICE`, else the first.
  public static let deviceName = ProcessInfo.processInfo.environment["UMEM_DEVICE"]

  public static func open() throws -> DeviceContext { try DeviceContext.open(name: deviceName) }
}

/// Pinned memory, open descriptors, and the MRs, PDs, QPs, CQs and rdma_cm
/// ids the kernel's RDMA resource tracker holds (`rdma resource show`).
public struct ResourceSnapshot: Equatable, CustomStringConvertible {
  public var pinnedBytes: UInt64
  public var lockedBytes: UInt64
  public var openDescriptors: Int
  public var memoryRegions: Int
  public var protectionDomains: Int
  public var queuePairs: Int
  public var completionQueues: Int
  /// rdma_cm ids (listening, connecting or connected).
  public var connectionIDs: Int

  /// A snapshot for before-and-after comparisons. The object counts come
  /// from the tracker's per-device summary (what `rdma resource show`
  /// prints), so they include the kernel's own entries (rxe's GSI QP, its
  /// CQ and PD), which stay put while a test runs; `countOwn` leaves those
  /// out. Asked for over netlink, not by starting `rdma` five times: each
  /// start takes about 0.25 s in the emulated VM, and every leak-checked
  /// test takes two snapshots.
  public static func take() -> ResourceSnapshot {
    let lock = MemoryLockStatus.current()
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    let counts = summary()
    func count(_ kind: String) -> Int { counts?[kind] ?? -1 }
    return ResourceSnapshot(
      pinnedBytes: lock.pinnedBytes, lockedBytes: lock.lockedBytes, openDescriptors: fds,
      memoryRegions: count("mr"), protectionDomains: count("pd"),
      queuePairs: count("qp"), completionQueues: count("cq"),
      connectionIDs: count("cm_id"))
  }

  /// Every device's entries of each kind, summed ("pd", "cq", "qp",
  /// "cm_id", "mr", ...), from the tracker's summary over netlink; nil when
  /// the kernel did not answer.
  public static func summary() -> [String: Int]? {
    ResourceSummary.read()
  }

  /// The same from the summary lines of `rdma resource show` ("0: rxe0: pd
  /// 1 cq 1 qp 1 cm_id 0 mr 0 ..."): the cross-check of ``summary()``.
  public static func summaryFromTool() -> [String: Int]? {
    guard let output = shell("rdma resource show 2>/dev/null") else { return nil }
    var counts: [String: Int] = [:]
    for line in output.split(separator: "\n") {
      // Skip "INDEX: NAME:", then read "KIND COUNT" pairs.
      let words = line.split(separator: " ").dropFirst(2)
      var pairs = words.makeIterator()
      while let kind = pairs.next(), let value = pairs.next() {
        guard let n = Int(value) else { break }
        counts[String(kind), default: 0] += n
      }
    }
    return counts.isEmpty ? nil : counts
  }

  /// User-space entries of `rdma resource show KIND`: every entry but the
  /// kernel's own, which `rdma` prints as `comm [name]`.
  ///
  /// The kernel records the creating thread, not the process, so this
  /// counts every user entry; device suites run serialized, alone on their
  /// device (ci/rxe's VM runs nothing else). An entry made by a thread that
  /// has since exited carries no `pid` (the kernel omits it for a dead task,
  /// and `rdma` then prints no `comm` either), so entries are not counted by
  /// `pid`: Swift's worker threads come and go, and on the lab's 7.x kernel
  /// that made a count of live regions drop from 8 to 4. Uses `popen`, which
  /// leaves no descriptor behind, unlike `Process`.
  public static func countOwn(_ kind: String) -> Int {
    guard let output = shell("rdma resource show \(kind) 2>/dev/null") else { return -1 }
    return output.split(separator: "\n").filter { line in
      !line.allSatisfy(\.isWhitespace) && !line.contains(" comm [")
    }.count
  }

  public static func shell(_ command: String) -> String? {
    guard let pipe = popen(command, "r") else { return nil }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      let n = fread(&buffer, 1, buffer.count, pipe)
      if n <= 0 { break }
      bytes.append(contentsOf: buffer[0..<n])
    }
    pclose(pipe)
    return String(decoding: bytes, as: UTF8.self)
  }

  public var description: String {
    "VmPin \(pinnedBytes) B, VmLck \(lockedBytes) B, \(openDescriptors) fds, "
      + "\(memoryRegions) MRs, \(protectionDomains) PDs, \(queuePairs) QPs, "
      + "\(completionQueues) CQs, \(connectionIDs) cm ids"
  }
}

/// Runs `body` and checks that it left no pin, MR, PD, QP, CQ, cm id or
/// descriptor behind.
public func expectNoLeaks(
  _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) rethrows {
  TestTools.descriptorLock.lock()
  defer { TestTools.descriptorLock.unlock() }
  let before = ResourceSnapshot.take()
  try body()
  let after = ResourceSnapshot.take()
  #expect(
    before == after, "\(what) leaked: before \(before), after \(after)",
    sourceLocation: sourceLocation)
}

/// Runs async `body` and checks that it left no pin, MR, PD, QP, CQ or
/// descriptor behind.
public func expectNoLeaks(
  _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
  _ body: () async throws -> Void
) async rethrows {
  let before = ResourceSnapshot.take()
  try await body()
  let after = ResourceSnapshot.take()
  #expect(
    before == after, "\(what) leaked: before \(before), after \(after)",
    sourceLocation: sourceLocation)
}

/// Expects `body` to throw a `VerbsError` with this code, operation and errno,
/// and returns it for further checks.
@discardableResult
public func expectVerbsError(
  _ code: VerbsError.Code, operation: String, errno: Int32,
  sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> VerbsError? {
  do {
    try body()
    Issue.record(
      "expected \(code) from \(operation), but nothing was thrown", sourceLocation: sourceLocation)
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
