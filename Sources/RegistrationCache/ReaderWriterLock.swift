internal import CThreadSlots
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A reader-writer lock for the cache's index whose read side writes only
/// the calling thread's own cache line, with no locked instruction: hits
/// read, misses and invalidations write.
///
/// Readers count themselves in a stripe of ``StripedCells``: one add to
/// the stripe's `entered` word on entry, one to its `exited` word on exit,
/// and a check of the writer flag in between, which only writers store to.
/// Since the words only grow, their sum is the number of read sections,
/// which the cache reports as its lookups without a counter of its own.
///
/// **Owned stripes.** A thread claims one of 64 process-wide slots at its
/// first read (``CThreadSlots``; given back when the thread exits) and
/// from then on is the only writer of that slot's stripe in every lock.
/// Its adds are a plain load and store, and between its add to `entered`
/// and its check of the flag stands only a compiler barrier: the light
/// half of an asymmetric fence. The writer pays the heavy half, a
/// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` after raising the flag,
/// which makes every other thread's delayed stores visible before it reads
/// the stripes; so a reader and a writer still cannot both see the other
/// absent. A writer skips that system call when no other thread owns a
/// slot (a single-threaded program's misses pay nothing for it); a thread
/// that claims a slot meanwhile does so with a full barrier and then sees
/// the flag.
///
/// **Hashed stripes.** Threads beyond the 64th, and every thread where the
/// kernel refuses membarrier, share 32 stripes picked by a hash of the
/// thread, and count with sequentially consistent read-modify-writes: the
/// add to `entered` is then a full barrier of its own, and the writer's
/// flag and the reader's add cannot both miss each other.
///
/// A writer takes a mutex among writers, raises the flag (turning new
/// readers away) and waits until every stripe's `exited` reaches the
/// `entered` it read: writers are never starved by a stream of hits, which
/// glibc's default `pthread_rwlock_t` (reader preference) allows. Writers
/// scan only stripes that can have readers: owned ones up to the highest
/// slot the process has claimed, and the hashed ones once any thread has
/// read there (a single-threaded program's misses look at one stripe).
///
/// Readers that find the flag raised back out (counting it in `backedOut`,
/// so they are not counted twice) and wait with `sched_yield`; nothing that
/// holds this lock waits for the userfaultfd monitor, and the monitor never
/// takes it.
final class ReaderWriterLock: Sendable {
  /// Per stripe: entered, exited, backed out (all monotonic). The owned
  /// stripes come first, then the hashed ones.
  private let stripes = StripedCells(
    stripes: Int(CTS_SLOTS) + StripedCells.hashedStripes, width: 3)
  private static let entered = 0
  private static let exited = 1
  private static let backedOut = 2
  /// 1 while a writer holds or is about to hold the lock.
  private let writing = Atomic<Int>(0)
  /// Whether any thread has read on a hashed stripe: until one does, a
  /// writer skips those 32 stripes.
  private let hashedInUse = Atomic<Bool>(false)
  private let writers = Mutex<Void>(())

  /// Registers the process for membarrier now, if no lock did before (a
  /// wait of milliseconds that a first lookup should not pay).
  init() { _ = CTS_prepare() }

  /// Runs `body` as a reader.
  @inline(__always)
  func withReadLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    var slot = CTS_current()
    if slot == 0 { slot = Self.claimSlot() }
    if slot > 0 { return try withOwnedReadLock(stripe: Int(slot) &- 1, body) }
    return try withHashedReadLock(
      stripe: Int(CTS_SLOTS) &+ StripedCells.currentStripe, body)
  }

  /// The calling thread's first read: claims a slot (or learns there is
  /// none for it). Out of line: once per thread.
  @inline(never)
  private static func claimSlot() -> Int32 {
    let slot = CTS_claim()
    // Orders the claim before this thread's first check of a writer's
    // flag, for a writer that read the slots before the claim (see above).
    atomicMemoryFence(ordering: .sequentiallyConsistent)
    return slot
  }

  /// The read side on a stripe only the calling thread writes.
  @inline(__always)
  private func withOwnedReadLock<R, E: Error>(stripe: Int, _ body: () throws(E) -> R) throws(E)
    -> R
  {
    let entered = stripes.cell(stripe, Self.entered)
    let exited = stripes.cell(stripe, Self.exited)
    while true {
      Self.increment(entered)
      // The light half of the asymmetric fence (see the type's comment).
      CTS_light_fence()
      if writing.load(ordering: .acquiring) == 0 { break }
      Self.increment(stripes.cell(stripe, Self.backedOut))
      Self.incrementReleasing(exited)
      while writing.load(ordering: .relaxed) != 0 { sched_yield() }
    }
    defer { Self.incrementReleasing(exited) }
    return try body()
  }

  /// Adds one to a word only this thread stores to: a load and a store, no
  /// locked instruction.
  @inline(__always)
  private static func increment(_ word: UnsafeMutablePointer<Atomic<Int>>) {
    word.pointee.store(word.pointee.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
  }

  /// The same, ordered after the thread's earlier accesses (a plain store
  /// on x86-64).
  @inline(__always)
  private static func incrementReleasing(_ word: UnsafeMutablePointer<Atomic<Int>>) {
    word.pointee.store(word.pointee.load(ordering: .relaxed) &+ 1, ordering: .releasing)
  }

  /// The read side on a stripe other threads may share.
  @inline(__always)
  private func withHashedReadLock<R, E: Error>(stripe: Int, _ body: () throws(E) -> R) throws(E)
    -> R
  {
    // Before entering: a writer that then misses the flag has raised its
    // own first, and this reader sees that and backs off.
    if !hashedInUse.load(ordering: .relaxed) {
      hashedInUse.store(true, ordering: .sequentiallyConsistent)
    }
    let entered = stripes.cell(stripe, Self.entered)
    let exited = stripes.cell(stripe, Self.exited)
    while true {
      entered.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
      if writing.load(ordering: .sequentiallyConsistent) == 0 { break }
      stripes.cell(stripe, Self.backedOut).pointee.wrappingAdd(1, ordering: .relaxed)
      exited.pointee.wrappingAdd(1, ordering: .releasing)
      while writing.load(ordering: .relaxed) != 0 { sched_yield() }
    }
    defer { exited.pointee.wrappingAdd(1, ordering: .releasing) }
    return try body()
  }

  /// Runs `body` as the only writer, with no reader inside. Inlined, with
  /// the stripe scan: a miss runs it right after (or before) the kernel's
  /// registration work, and under emulation every call and return there
  /// costs a lookup of its own.
  @inline(__always)
  func withWriteLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    try writers.withLock { _ throws(E) -> R in
      writing.store(1, ordering: .sequentiallyConsistent)
      // Other threads' owned stripes may hold stores still on their way;
      // this thread's own are in order already.
      if CTS_owned() > (CTS_current() > 0 ? 1 : 0) { CTS_heavy_fence() }
      // Only stripes some thread may have used: owned ones up to the
      // highest slot ever claimed, hashed ones once any thread read there
      // (both loads follow the flag's store; a later claim or first hashed
      // read is followed by a check of the flag).
      waitForReaders(on: 0..<Int(CTS_slots_used()))
      if hashedInUse.load(ordering: .sequentiallyConsistent) {
        waitForReaders(on: Int(CTS_SLOTS)..<stripes.stripes)
      }
      defer { writing.store(0, ordering: .releasing) }
      return try body()
    }
  }

  /// Waits until every reader that entered one of `range`'s stripes before
  /// now has left; readers entering later see the flag and back out.
  @inline(__always)
  private func waitForReaders(on range: Range<Int>) {
    for stripe in range {
      let inside = stripes.cell(stripe, Self.entered).pointee.load(
        ordering: .sequentiallyConsistent)
      let exited = stripes.cell(stripe, Self.exited)
      while exited.pointee.load(ordering: .acquiring) &- inside < 0 { sched_yield() }
    }
  }

  /// Read sections completed or in progress, over all threads (a snapshot).
  var readSections: Int { stripes.sum(word: Self.entered) &- stripes.sum(word: Self.backedOut) }
}
