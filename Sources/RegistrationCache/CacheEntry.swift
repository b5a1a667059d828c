internal import CThreadSlots
import Synchronization
import Verbs

/// One cached registration: its page-aligned range, keys and access, the
/// handles out on it, and when it was last used.
///
/// Counted twice, as in UCX and libfabric: the index's reference (while it
/// is cached) and one per handle (``holders``). It is deregistered exactly
/// once (``retire()``), when it is both out of the index (``detach()``) and
/// held by nobody, whichever happens last.
///
/// **Biased hold counts.** The handle count is two words: one only its
/// owner thread writes, with a plain load and store, and one every other
/// thread changes with atomic read-modify-writes; the holders are their
/// sum (either word alone may go negative: a hold taken on one thread may
/// be given back on another). The owner is the first thread with a slot
/// (``ReaderWriterLock``) to hit the entry, so a thread that keeps reusing
/// its buffers takes and gives back holds without a locked instruction.
/// The owner's release stores, then passes a compiler barrier and checks
/// whether the entry was detached; ``detach()`` stores that flag and, when
/// it still sees holders and the owner is another thread, runs the heavy
/// fence (membarrier) before looking again, so the last release of a
/// detached entry is always seen by one side. The cache reads the sum
/// only under its write lock, where no hold is taken and a stale word can
/// only be too high: an entry in use never looks idle.
final class CacheEntry: @unchecked Sendable {
  // @unchecked: the stored properties are immutable or atomic.
  let start: UInt64
  let length: Int
  let access: MemoryAccess
  let registered: RegisteredMemory
  /// Page frames at registration, for the optional check on hits.
  let frames: [UInt64]?
  let counters: CacheCounters
  /// The slot plus one of the thread whose holds ``ownerHolds`` counts; 0
  /// until a hit by a thread with a slot claims it (once).
  private let owner = Atomic<Int32>(0)
  /// Holds taken and given back by the owner thread; only it stores here.
  private let ownerHolds = Atomic<Int>(0)
  /// Holds taken and given back by other threads.
  private let sharedHolds = Atomic<Int>(0)
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

  /// Handles out. Exact when nothing is being taken or given back; under
  /// the cache's write lock, never below the truth.
  var holders: Int {
    ownerHolds.load(ordering: .sequentiallyConsistent)
      &+ sharedHolds.load(ordering: .sequentiallyConsistent)
  }
  var isIdle: Bool { holders == 0 }
  var isDetached: Bool { detached.load(ordering: .sequentiallyConsistent) }

  /// A new handle: under the cache's lock (read or write), so never on a
  /// detached entry. `claiming`: a hit, whose thread becomes the owner if
  /// the entry has none yet (a miss's own hold does not claim: the thread
  /// that comes back for a registration is the one worth biasing for).
  @inline(__always)
  func acquire(at tick: Int, claiming: Bool) {
    let slot = CTS_current()
    var owner = self.owner.load(ordering: .relaxed)
    if owner == 0, claiming, slot > 0 { owner = claim(slot) }
    if slot > 0, owner == slot {
      ownerHolds.store(ownerHolds.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    } else {
      sharedHolds.wrappingAdd(1, ordering: .sequentiallyConsistent)
    }
    if lastUse.load(ordering: .relaxed) != tick { lastUse.store(tick, ordering: .relaxed) }
  }

  /// Makes `slot` the owner unless another thread got there first; returns
  /// the owner. Once per entry.
  @inline(never)
  private func claim(_ slot: Int32) -> Int32 {
    let (exchanged, original) = owner.compareExchange(
      expected: 0, desired: slot, ordering: .relaxed)
    return exchanged ? slot : original
  }

  /// A handle went away; the last one on a detached entry deregisters it.
  @inline(__always)
  func release() {
    let slot = CTS_current()
    if slot > 0, owner.load(ordering: .relaxed) == slot {
      // Everything the holder did with the registration comes before this.
      ownerHolds.store(ownerHolds.load(ordering: .relaxed) &- 1, ordering: .releasing)
      // The light half of the fence detach() completes.
      CTS_light_fence()
    } else {
      sharedHolds.wrappingSubtract(1, ordering: .sequentiallyConsistent)
    }
    if detached.load(ordering: .acquiring) { releasedWhileDetached() }
  }

  /// A release after ``detach()``: deregisters if it was the last hold.
  @inline(never)
  private func releasedWhileDetached() {
    atomicMemoryFence(ordering: .sequentiallyConsistent)
    if isIdle { retire() }
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
    if isIdle {
      retire()
      return
    }
    // Still held, as far as this thread can see. The owner may have given
    // back the last hold with a store not yet visible here, before it
    // could see the flag: the heavy fence makes that store visible (or
    // makes the owner see the flag and retire itself).
    let owner = self.owner.load(ordering: .relaxed)
    guard owner != 0, owner != CTS_current() else { return }
    CTS_heavy_fence()
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
    counters.deregistered?(registered)
    counters.deregistrations.add(1, ordering: .relaxed)
    counters.liveRegistrations.subtract(1, ordering: .relaxed)
    counters.liveBytes.subtract(length, ordering: .relaxed)
  }
}
