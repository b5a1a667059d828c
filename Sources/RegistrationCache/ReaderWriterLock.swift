import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A reader-writer lock for the cache's index whose read side writes only
/// the calling thread's own cache line: hits read, misses and invalidations
/// write.
///
/// Readers count themselves in their stripe of ``StripedCells``: one atomic
/// add to the stripe's `entered` word on entry, one to its `exited` word on
/// exit, and a check of the writer flag in between, which only writers
/// store to. Two hits on two threads share no written cache line, so the
/// read side scales with threads instead of bouncing one counter between
/// cores; and since the words only grow, their sum is the number of read
/// sections, which the cache reports as its lookups without a counter of
/// its own. A writer takes a mutex among writers, raises the flag (turning
/// new readers away) and waits until every stripe's `exited` reaches the
/// `entered` it read: writers are never starved by a stream of hits, which
/// glibc's default `pthread_rwlock_t` (reader preference) allows. Writers
/// pay a scan of 32 stripes; they also register or deregister memory, which
/// costs a thousand times more.
///
/// The reader's add to `entered` and the writer's store to the flag are
/// both sequentially consistent, and each then loads the other's word, so
/// a reader and a writer cannot both see the other absent.
///
/// Readers that find the flag raised back out (counting it in `backedOut`,
/// so they are not counted twice) and wait with `sched_yield`; nothing that
/// holds this lock waits for the userfaultfd monitor, and the monitor never
/// takes it.
final class ReaderWriterLock: Sendable {
  /// Per stripe: entered, exited, backed out (all monotonic).
  private let stripes = StripedCells(width: 3)
  private static let entered = 0
  private static let exited = 1
  private static let backedOut = 2
  /// 1 while a writer holds or is about to hold the lock.
  private let writing = Atomic<Int>(0)
  private let writers = Mutex<Void>(())

  init() {}

  /// Runs `body` as a reader, counted in `stripe`
  /// (``StripedCells/currentStripe``).
  @inline(__always)
  func withReadLock<R, E: Error>(stripe: Int, _ body: () throws(E) -> R) throws(E) -> R {
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

  /// Runs `body` as a reader on the calling thread's stripe.
  func withReadLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    try withReadLock(stripe: StripedCells.currentStripe, body)
  }

  /// Runs `body` as the only writer, with no reader inside.
  func withWriteLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    try writers.withLock { _ throws(E) -> R in
      writing.store(1, ordering: .sequentiallyConsistent)
      for stripe in 0..<StripedCells.stripes {
        // Readers that enter after this load see the flag and back out.
        let inside = stripes.cell(stripe, Self.entered).pointee.load(
          ordering: .sequentiallyConsistent)
        let exited = stripes.cell(stripe, Self.exited)
        while exited.pointee.load(ordering: .acquiring) &- inside < 0 { sched_yield() }
      }
      defer { writing.store(0, ordering: .releasing) }
      return try body()
    }
  }

  /// Read sections completed or in progress, over all threads (a snapshot).
  var readSections: Int { stripes.sum(word: Self.entered) &- stripes.sum(word: Self.backedOut) }
}
