import Foundation
import Synchronization
import Verbs

/// `umem register` on the owned tier: `threads` threads register and
/// deregister at once on one shared protection domain, each over its own
/// buffer, `cycles` times each.
struct SharedRegistrationRun {
  var device: String?
  var bytes: Int
  var access: MemoryAccess
  var iova: UInt64?
  var threads: Int
  var cycles: Int

  struct Result {
    var deviceName: String
    var address: UInt64
    var iova: UInt64
    var lkey: UInt32
    var rkey: UInt32
    /// Mean over every cycle of every thread.
    var registerNanoseconds: Double
    var deregisterNanoseconds: Double
    /// Registrations per second of wall time, all threads together.
    var registrationsPerSecond: Double
  }

  /// What one thread measured.
  struct ThreadTotals: Sendable {
    var register = Duration.zero
    var deregister = Duration.zero
    var address: UInt64 = 0
    var iova: UInt64 = 0
    var lkey: UInt32 = 0
    var rkey: UInt32 = 0
  }

  func run() throws -> Result {
    let context = try SharedDeviceContext.open(name: device)
    let pd = try context.allocateProtectionDomain()
    let buffers = try (0..<threads).map { _ in try SharedBuffer(byteCount: bytes) }
    let totals = Mutex<[ThreadTotals]>(Array(repeating: ThreadTotals(), count: threads))
    let failure = Mutex<VerbsError?>(nil)
    let (cycles, access, iova) = (self.cycles, self.access, self.iova)
    let clock = ContinuousClock()
    let start = clock.now
    Self.onThreads(threads) { index in
      var mine = ThreadTotals()
      do throws(VerbsError) {
        for _ in 0..<cycles {
          let t0 = clock.now
          let region = try pd.register(buffers[index], access: access, iova: iova)
          let t1 = clock.now
          (mine.address, mine.iova, mine.lkey, mine.rkey) =
            (region.address, region.iova, region.lkey, region.rkey)
          try region.close()
          let t2 = clock.now
          mine.register += t1 - t0
          mine.deregister += t2 - t1
        }
      } catch {
        failure.withLock { if $0 == nil { $0 = error } }
      }
      totals.withLock { $0[index] = mine }
    }
    let wall = clock.now - start
    if let error = failure.withLock({ $0 }) { throw error }
    try pd.close()
    try context.close()
    let all = totals.withLock { $0 }
    let count = Double(threads) * Double(cycles)  // In Double: no Int product to overflow.
    let first = all[0]
    return Result(
      deviceName: context.name, address: first.address, iova: first.iova, lkey: first.lkey,
      rkey: first.rkey,
      registerNanoseconds: all.reduce(Duration.zero) { $0 + $1.register }.nanoseconds / count,
      deregisterNanoseconds: all.reduce(Duration.zero) { $0 + $1.deregister }.nanoseconds / count,
      registrationsPerSecond: count / max(wall.nanoseconds / 1e9, 1e-9))
  }

  /// Runs `body(i)` for i in 0..<count, each on its own new thread, and
  /// waits for all.
  static func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
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
}

/// The memory regions the kernel's resource tracker lists for this
/// program (`rdma resource show mr`, entries whose `comm` is ours), or nil
/// when the `rdma` tool is not there.
func openMemoryRegions() -> Int? {
  let comm =
    (try? String(contentsOfFile: "/proc/self/comm", encoding: .utf8))?
    .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = ["rdma", "resource", "show", "mr"]
  let pipe = Pipe()
  process.standardOutput = pipe
  process.standardError = FileHandle.nullDevice
  guard (try? process.run()) != nil else { return nil }
  let data = pipe.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  guard process.terminationStatus == 0 else { return nil }
  return String(decoding: data, as: UTF8.self).split(separator: "\n").filter {
    $0.split(separator: " ").suffix(2).elementsEqual(["comm", Substring(comm)])
  }.count
}
