import Synchronization
import Verbs

/// One cached registration: its page-aligned range, keys and access, the
/// handles out on it, and when it was last used.
///
/// Counted twice, as in UCX and libfabric: the index's reference (while it
/// is cached) and one per handle (``holders``). It is deregistered exactly
/// once (``retire()``), when it is both out of the index (``detach()``) and
/// held by nobody, whichever happens last.
final class CacheEntry: @unchecked Sendable {
  // @unchecked: the stored properties are immutable or atomic.
  let start: UInt64
  let length: Int
  let access: MemoryAccess
  let registered: RegisteredMemory
  /// Page frames at registration, for the optional check on hits.
  let frames: [UInt64]?
  let counters: CacheCounters
  /// Handles out.
  let holders = Atomic<Int>(0)
  /// ``CacheCounters/lookups`` at the last hit: the LRU clock.
  let lastUse = Atomic<Int>(0)
  private let detached = Atomic<Bool>(false)
  private let retired = Atomic<Bool>(false)

  init(
    start: UInt64, length: Int, access: MemoryAccess, registered: RegisteredMemory,
    frames: [UInt64]?, counters: CacheCounters
  ) {
    self.start = start
    self.length = length
    self.access = access
    self.registered = registered
    self.frames = frames
    self.counters = counters
    counters.liveRegistrations.add(1, ordering: .relaxed)
    counters.liveBytes.add(length, ordering: .relaxed)
  }

  /// One past the last byte; `start + length` was checked when registering.
  var end: UInt64 { start + UInt64(length) }

  var isIdle: Bool { holders.load(ordering: .sequentiallyConsistent) == 0 }
  var isDetached: Bool { detached.load(ordering: .sequentiallyConsistent) }

  /// A new handle: under the cache's lock (read or write), so never on a
  /// detached entry.
  @inline(__always)
  func acquire(at tick: Int) {
    holders.wrappingAdd(1, ordering: .sequentiallyConsistent)
    if lastUse.load(ordering: .relaxed) != tick { lastUse.store(tick, ordering: .relaxed) }
  }

  /// A handle went away; the last one on a detached entry deregisters it.
  @inline(__always)
  func release() {
    if holders.wrappingSubtract(1, ordering: .sequentiallyConsistent).newValue == 0, isDetached {
      retire()
    }
  }

  /// The cache no longer serves it; deregistered now when idle, else by
  /// the last ``release()``. Under the cache's write lock, once, by a
  /// caller that holds a reference.
  ///
  /// Handles do not retain their entry (a retain and a release are two
  /// more atomic operations on every hit): while cached, the index's
  /// reference keeps it alive; from here on, its own, taken before it is
  /// marked detached and given back by ``retire()``.
  func detach() {
    _ = Unmanaged.passRetained(self)
    detached.store(true, ordering: .sequentiallyConsistent)
    if isIdle { retire() }
  }

  /// Deregisters, once, whoever gets here first, and gives back the
  /// reference ``detach()`` took. The C function is `ibv_dereg_mr`.
  private func retire() {
    guard
      retired.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing)
        .exchanged
    else { return }
    defer { Unmanaged.passUnretained(self).release() }
    do {
      try registered.region?.close()
    } catch {
      counters.deregistrationFailures.add(1, ordering: .relaxed)
    }
    counters.deregistrations.add(1, ordering: .relaxed)
    counters.liveRegistrations.subtract(1, ordering: .relaxed)
    counters.liveBytes.subtract(length, ordering: .relaxed)
  }
}
