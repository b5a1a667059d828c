import Synchronization
import Verbs

#if canImport(Glibc)
  import Glibc
#endif

extension RegistrationCache {
  /// A cache whose registrations are a counter: no device, no pinning. For
  /// timing the index, lock and handles alone (`umem cache-bench
  /// --registrar counter`); its handles carry made-up keys.
  package static func countingForBenchmarks(limits: CacheLimits, monitor: MonitorChoice)
    -> RegistrationCache
  {
    let counter = KeyCounter()
    let registrar = Registrar { start, _, _ throws(VerbsError) in
      let key = counter.next.add(1, ordering: .relaxed).newValue
      return RegisteredMemory(lkey: key, rkey: key, iova: start, region: nil)
    }
    return RegistrationCache(registrar: registrar, limits: limits, monitor: monitor)
  }
}

private final class KeyCounter: Sendable {
  let next = Atomic<UInt32>(0)
}

extension RegistrationCache {
  /// The index by itself (``EntryIndex``, as the cache uses it): `regions`
  /// entries of `stride` bytes, then `lookups` covering searches at random
  /// buffers (64 bytes in, as a message inside a buffer), timed without
  /// the lock, the statistics or handles. Returns nanoseconds per
  /// search, in wall-clock time and in the thread's CPU time (which a
  /// machine shared with other work inflates less). For `umem cache-bench
  /// --registrar index`.
  package static func benchmarkIndex(regions: Int, stride: Int, lookups: Int)
    -> (wall: Double, cpu: Double)
  {
    var index = EntryIndex(pageSize: PageAlignedBuffer.pageSize, expectedCount: regions)
    let base: UInt64 = 0x7f00_0000_0000
    let counters = CacheCounters()
    for i in 0..<regions {
      let start = base + UInt64(i) * UInt64(stride)
      let made = RegisteredMemory(lkey: 0, rkey: 0, iova: start, region: nil)
      index.insert(
        CacheEntry(
          start: start, length: stride, access: .localWrite, registered: made, frames: nil,
          counters: counters), at: i)
    }
    var state: UInt64 = 0x9e37_79b9_7f4a_7c15
    let order = (0..<lookups).map { _ in
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return base + (state >> 33) % UInt64(regions) * UInt64(stride) + 64
    }
    var found = 0
    let cpuStart = threadCPUNanoseconds()
    let start = ContinuousClock.now
    for address in order {
      if let entry = index.covering(start: address, end: address + 256) {
        found &+= entry._withUnsafeGuaranteedRef { $0.length }
      }
    }
    let elapsed = ContinuousClock.now - start
    let cpu = threadCPUNanoseconds() - cpuStart
    precondition(found != -1)  // keeps the loop
    for entry in index.removeAll() where entry.detach() { entry.retire() }
    let (seconds, attoseconds) = elapsed.components
    let count = Double(max(lookups, 1))
    return ((Double(seconds) * 1e9 + Double(attoseconds) / 1e9) / count, cpu / count)
  }

  /// The calling thread's CPU time so far, in nanoseconds
  /// (`CLOCK_THREAD_CPUTIME_ID`).
  private static func threadCPUNanoseconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return Double(now.tv_sec) * 1e9 + Double(now.tv_nsec)
  }
}

extension RegistrationCache {
  /// A cache over `domain` whose registrar also times each `ibv_reg_mr`
  /// it makes (``Registrar/timing(_:into:)``), so that a benchmark can
  /// split a miss into the registration and the cache's own work (`umem
  /// cache-bench --split-miss`). The clock reads add to every miss.
  package static func timingRegistrationsForBenchmarks(
    domain: SharedProtectionDomain, limits: CacheLimits, monitor: MonitorChoice
  ) -> (RegistrationCache, RegistrationTimer) {
    let timer = RegistrationTimer()
    let cache = RegistrationCache(
      registrar: .timing(domain, into: timer), domain: domain, limits: limits, monitor: monitor)
    return (cache, timer)
  }
}

extension Registrar {
  /// Registers with `ibv_reg_mr` on `domain` as ``verbs(_:)`` does, each
  /// call timed into `timer` (``timed(into:)``). The cache's timing
  /// registrar, and what a benchmark's plain registrations go through when
  /// they are to be timed the same way: the two clock reads, and the call
  /// through a registrar, then cost both sides alike, and their difference
  /// is the cache's own work.
  package static func timing(_ domain: SharedProtectionDomain, into timer: RegistrationTimer)
    -> Registrar
  {
    verbs(domain).timed(into: timer)
  }

  /// This registrar with the time inside each of its calls (two
  /// `clock_gettime` reads around it) added to `timer`, failed calls
  /// included.
  package func timed(into timer: RegistrationTimer) -> Registrar {
    let inner = register
    return Registrar(
      register: { start, length, access throws(VerbsError) in
        // clock_gettime and integer nanoseconds, not ContinuousClock: its
        // Duration arithmetic (128-bit attoseconds) would add some fifty
        // instructions to every miss, outside the registration timed
        // here, so to the cache's own part.
        let began = monotonicNanoseconds()
        defer {
          // A registration takes far less than 2^63 ns; the clock does
          // not go back.
          let took = monotonicNanoseconds() &- began
          timer.nanoseconds.add(Int(truncatingIfNeeded: took), ordering: .relaxed)
          timer.count.add(1, ordering: .relaxed)
        }
        return try inner(start, length, access)
      }, deregistered: deregistered)
  }
}

/// `CLOCK_MONOTONIC` in nanoseconds (the clock ContinuousClock reads).
@inline(__always)
private func monotonicNanoseconds() -> UInt64 {
  var now = timespec()
  clock_gettime(CLOCK_MONOTONIC, &now)
  // tv_sec since boot x 10^9 stays far below 2^64.
  return UInt64(truncatingIfNeeded: now.tv_sec) &* 1_000_000_000
    &+ UInt64(truncatingIfNeeded: now.tv_nsec)
}

/// Time spent in a timing registrar's registrations, and how many.
package final class RegistrationTimer: Sendable {
  package let nanoseconds = Atomic<Int>(0)
  package let count = Atomic<Int>(0)

  package init() {}
}
