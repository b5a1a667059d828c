import Synchronization

/// The cache's running counts, each an atomic so that hits, releases and the
/// slow path update them without a lock. ``CacheStatistics`` is their
/// snapshot.
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

  func invalidated(_ cause: InvalidationCause) {
    switch cause {
    case .explicit: explicit.add(1, ordering: .relaxed)
    case .unmap: unmap.add(1, ordering: .relaxed)
    case .remove: remove.add(1, ordering: .relaxed)
    case .remap: remap.add(1, ordering: .relaxed)
    case .overlap: overlap.add(1, ordering: .relaxed)
    case .staleFrames: staleFrames.add(1, ordering: .relaxed)
    case .monitorOverflow: monitorOverflow.add(1, ordering: .relaxed)
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
