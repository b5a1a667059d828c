import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// One cache's use of the process's ``UserfaultMonitor``: the cache's own
/// ``InvalidationRing``, filled by the monitor thread, and the end of the
/// subscription (once, at ``RegistrationCache/close()`` or when the cache
/// goes away).
final class MonitorSubscription: Sendable {
  let monitor: UserfaultMonitor
  let ring: InvalidationRing
  private let ended = Atomic<Bool>(false)

  /// Subscribes a new ring of `ringCapacity` ranges; nil and why when there
  /// is no monitor.
  static func start(ringCapacity: Int) -> Result<MonitorSubscription, MonitorUnavailable> {
    let ring = InvalidationRing(capacity: ringCapacity)
    return UserfaultMonitor.subscribe(ring).map { MonitorSubscription(monitor: $0, ring: ring) }
  }

  private init(monitor: UserfaultMonitor, ring: InvalidationRing) {
    self.monitor = monitor
    self.ring = ring
  }

  deinit { end() }

  /// Whether the next lookup must apply invalidations first: ranges queued,
  /// an overflow, or the monitor between reading events and queueing them.
  /// A few loads of rarely written words: the hit path's check.
  @inline(__always)
  var hasPending: Bool {
    monitor.producing.load(ordering: .sequentiallyConsistent) || ring.hasQueued
  }

  /// Calls `body` for each queued range, after waiting out a batch the
  /// monitor is delivering (a few hundred nanoseconds; it holds no lock).
  /// Returns whether ranges were lost to an overflow.
  func drain(_ body: (InvalidationRing.Slot) -> Void) -> Bool {
    while monitor.producing.load(ordering: .sequentiallyConsistent) { sched_yield() }
    return ring.drain(body)
  }

  /// Stops this cache's deliveries (and the monitor, if it was the last
  /// user). Idempotent.
  func end() {
    guard !ended.exchange(true, ordering: .acquiringAndReleasing) else { return }
    monitor.unsubscribe(ring)
  }
}
