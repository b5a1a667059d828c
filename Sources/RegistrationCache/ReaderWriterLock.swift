import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A reader-writer lock for the cache's index: hits read, misses and
/// invalidations write.
///
/// Readers take it with one atomic add and leave with one subtract (no
/// system call, no compare-and-swap loop), so hits on many threads do not
/// serialize on a mutex. Writers first take a mutex among themselves, then
/// raise the writer bit, which turns new readers away, and wait for the
/// readers inside (each holds it for one binary search) to leave: writers
/// are never starved by a stream of hits, which glibc's default
/// `pthread_rwlock_t` (reader preference) allows.
///
/// Readers that find the writer bit wait with `sched_yield`; nothing that
/// holds this lock waits for the userfaultfd monitor, and the monitor never
/// takes it.
final class ReaderWriterLock: Sendable {
  /// Readers inside in the low bits; ``writerBit`` while a writer holds or
  /// is about to hold the lock.
  private let state = Atomic<Int>(0)
  private let writers = Mutex<Void>(())
  private static let writerBit = 1 << 40

  init() {}

  /// Runs `body` as a reader.
  @inline(__always)
  func withReadLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    while true {
      // Readers are at most the number of threads, far below 2^40.
      if state.add(1, ordering: .acquiring).newValue & Self.writerBit == 0 { break }
      state.subtract(1, ordering: .releasing)
      while state.load(ordering: .relaxed) & Self.writerBit != 0 { sched_yield() }
    }
    defer { state.subtract(1, ordering: .releasing) }
    return try body()
  }

  /// Runs `body` as the only writer, with no reader inside.
  func withWriteLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    try writers.withLock { _ throws(E) -> R in
      state.add(Self.writerBit, ordering: .acquiring)
      while state.load(ordering: .acquiring) != Self.writerBit { sched_yield() }
      defer { state.subtract(Self.writerBit, ordering: .releasing) }
      return try body()
    }
  }
}
