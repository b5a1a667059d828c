internal import CThreadSlots
import Synchronization
import Verbs

#if canImport(Glibc)
  import Glibc
#endif

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
///
/// **Registered outside the lock.** A miss indexes its entry *pending*
/// (``init(pendingStart:length:access:counters:)``), releases the cache's
/// write lock, calls `ibv_reg_mr`, then publishes the keys
/// (``publish(_:frames:)``) or marks the entry failed (``fail()``). Other
/// threads that find a pending entry take a hold and wait, outside the
/// lock, until it settles (``waitUntilSettled()``): nobody else stalls
/// behind a registration, and two lookups of one buffer register it once.
final class CacheEntry: @unchecked Sendable {
  // @unchecked: the stored properties are immutable or atomic, except
  // `registered` and `frames`, which the registering thread writes once
  // before it stores `.ready` to `state` (releasing); readers read them
  // only after loading `.ready` (acquiring) or while they hold the entry,
  // which they got after seeing `.ready`.
  let start: UInt64
  let length: Int
  let access: MemoryAccess
  private(set) var registered: RegisteredMemory
  /// Page frames at registration, for the optional check on hits.
  private(set) var frames: [UInt64]?
  /// ``State``'s raw value.
  private let state: Atomic<UInt8>
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

  /// Where an entry's registration stands.
  enum State: UInt8 {
    /// Its miss is still calling `ibv_reg_mr`.
    case pending
    /// Registered: the keys are there.
    case ready
    /// The registration failed: nothing to hand out or deregister.
    case failed
  }

  /// An entry for a registration already made.
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
    state = Atomic(State.ready.rawValue)
    counters.liveRegistrations.add(1, ordering: .relaxed)
    counters.liveBytes.add(length, ordering: .relaxed)
  }

  /// An entry whose registration its miss is about to make.
  init(pendingStart start: UInt64, length: Int, access: MemoryAccess, counters: CacheCounters) {
    self.start = start
    self.length = length
    self.access = access
    registered = RegisteredMemory(lkey: 0, rkey: 0, iova: 0, region: nil)
    frames = nil
    self.counters = counters
    state = Atomic(State.pending.rawValue)
  }

  /// Whether the keys are there; one load, the hit path's only addition.
  @inline(__always)
  var isReady: Bool { state.load(ordering: .acquiring) == State.ready.rawValue }

  /// The registering thread's: what `ibv_reg_mr` gave, visible to every
  /// thread that then sees the entry ready.
  func publish(_ registered: RegisteredMemory, frames: [UInt64]?) {
    self.registered = registered
    self.frames = frames
    counters.liveRegistrations.add(1, ordering: .relaxed)
    counters.liveBytes.add(length, ordering: .relaxed)
    state.store(State.ready.rawValue, ordering: .releasing)
  }

  /// The registering thread's, under the cache's write lock: the
  /// registration failed. Waiters give their holds back and look up again.
  func fail() {
    state.store(State.failed.rawValue, ordering: .releasing)
  }

  /// Waits (holding the entry, outside every lock) until the registering
  /// thread publishes or fails; true when ready. Spins briefly, then
  /// yields, then sleeps 20 µs at a time: a registration takes from
  /// microseconds to milliseconds.
  @inline(never)
  func waitUntilSettled() -> Bool {
    var rounds = 0
    while true {
      switch state.load(ordering: .acquiring) {
      case State.ready.rawValue: return true
      case State.failed.rawValue: return false
      default: break
      }
      rounds &+= 1
      if rounds < 100 {
        continue
      } else if rounds < 1_100 {
        sched_yield()
      } else {
        usleep(20)
      }
    }
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

  /// The cache no longer serves it: deregistered by the last
  /// ``release()``, or, when nobody holds it now (the result is true), by
  /// the caller's ``retire()``, which the cache calls once its write lock
  /// is released (deregistering under it would stall every lookup for the
  /// length of an `ibv_dereg_mr`). Under the cache's write lock, once, by
  /// a caller that holds a reference.
  ///
  /// Handles do not retain their entry (a retain and a release are two
  /// more atomic operations on every hit): while cached, the index's
  /// reference keeps it alive; from here on, its own, taken before it is
  /// marked detached and given back by ``retire()``. Out of the index, an
  /// idle entry gains no holds: only a release already under way can race
  /// the caller's ``retire()``, and the first of the two to get there does
  /// it.
  func detach() -> Bool {
    _ = Unmanaged.passRetained(self)
    detached.store(true, ordering: .sequentiallyConsistent)
    if isIdle { return true }
    // Still held, as far as this thread can see. The owner may have given
    // back the last hold with a store not yet visible here, before it
    // could see the flag: the heavy fence makes that store visible (or
    // makes the owner see the flag and retire itself).
    let owner = self.owner.load(ordering: .relaxed)
    guard owner != 0, owner != CTS_current() else { return false }
    CTS_heavy_fence()
    return isIdle
  }

  /// Deregisters, once, whoever gets here first, and gives back the
  /// reference ``detach()`` took. The C function is `ibv_dereg_mr`.
  func retire() {
    guard
      retired.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing)
        .exchanged
    else { return }
    defer { Unmanaged.passUnretained(self).release() }
    // A failed registration has nothing to give back and was never live.
    guard state.load(ordering: .acquiring) == State.ready.rawValue else { return }
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
