import Synchronization

/// The cache's running counts, each an atomic so that hits, releases and the
/// slow path update them without a lock, and ``CacheStatistics`` reads them
/// without one (a snapshot). The counts only the write lock's holder
/// changes (misses, registrations, evictions, what is cached, the
/// invalidations) are changed with ``Atomic/addUnderWriteLock(_:)``: a
/// load and a store, no locked instruction. The others (deregistrations,
/// live registrations and bytes, frame checks) change outside it, on
/// whichever thread gives back the last hold, and use atomic adds.
final class CacheCounters: Sendable {
  // Lookups are the cache lock's read sections (one per lookup), counted
  // per thread by ``ReaderWriterLock``: no shared word on the hit path.
  /// Misses. Also the LRU clock: each hit stamps its entry with the misses so far
  /// (a word only misses write), so entries used since the last miss tie
  /// and are evicted after every older one.
  let misses = Atomic<Int>(0)
  let registrations = Atomic<Int>(0)
  let registrationFailures = Atomic<Int>(0)
  let deregistrations = Atomic<Int>(0)
  let deregistrationFailures = Atomic<Int>(0)
  let retriesAfterNoMemory = Atomic<Int>(0)
  let evictions = Atomic<Int>(0)
  let uncachedRegistrations = Atomic<Int>(0)
  let mergedRegistrations = Atomic<Int>(0)
  let frameChecks = Atomic<Int>(0)
  /// Searches a lookup made again after a registration it waited for
  /// failed (so that such a lookup counts once).
  let retriedSearches = Atomic<Int>(0)
  let liveRegistrations = Atomic<Int>(0)
  let liveBytes = Atomic<Int>(0)
  let cachedEntries = Atomic<Int>(0)
  let cachedBytes = Atomic<Int>(0)
  private let explicit = Atomic<Int>(0)
  private let unmap = Atomic<Int>(0)
  private let remove = Atomic<Int>(0)
  private let remap = Atomic<Int>(0)
  private let overlap = Atomic<Int>(0)
  private let staleFrames = Atomic<Int>(0)
  private let monitorOverflow = Atomic<Int>(0)

  /// The registrar's deregistration hook (tests), kept here because every
  /// entry already points at this object.
  let deregistered: (@Sendable (RegisteredMemory) -> Void)?

  init(deregistered: (@Sendable (RegisteredMemory) -> Void)? = nil) {
    self.deregistered = deregistered
  }

  /// Under the cache's write lock (see ``Atomic/addUnderWriteLock(_:)``).
  func invalidated(_ cause: InvalidationCause) {
    switch cause {
    case .explicit: explicit.addUnderWriteLock(1)
    case .unmap: unmap.addUnderWriteLock(1)
    case .remove: remove.addUnderWriteLock(1)
    case .remap: remap.addUnderWriteLock(1)
    case .overlap: overlap.addUnderWriteLock(1)
    case .staleFrames: staleFrames.addUnderWriteLock(1)
    case .monitorOverflow: monitorOverflow.addUnderWriteLock(1)
    }
  }

  func invalidations(_ cause: InvalidationCause) -> Int {
    switch cause {
    case .explicit: explicit.load(ordering: .relaxed)
    case .unmap: unmap.load(ordering: .relaxed)
    case .remove: remove.load(ordering: .relaxed)
    case .remap: remap.load(ordering: .relaxed)
    case .overlap: overlap.load(ordering: .relaxed)
    case .staleFrames: staleFrames.load(ordering: .relaxed)
    case .monitorOverflow: monitorOverflow.load(ordering: .relaxed)
    }
  }
}

extension Atomic where Value == Int {
  /// Adds `amount` (negative to subtract) to a count that only the
  /// holder of the cache's write lock changes: a relaxed load and store,
  /// which the lock's mutex orders between writers, instead of a locked
  /// read-modify-write. Readers of the statistics load it relaxed, as
  /// before.
  @inline(__always)
  func addUnderWriteLock(_ amount: Int) {
    store(load(ordering: .relaxed) &+ amount, ordering: .relaxed)
  }
}
