import CoreMetrics
import Synchronization

/// Publishes a cache's ``CacheStatistics`` through `apple/swift-metrics`:
/// counters (`<prefix>_lookups`, `_hits`, `_misses`, `_registrations`,
/// `_registration_failures`, `_deregistrations`, `_evictions`,
/// `_enomem_retries`, `_stale_hits`, `_uncached_registrations`, and
/// `_invalidations` with a `cause` dimension) and gauges (`_entries`,
/// `_cached_bytes`, `_live_registrations`, `_live_bytes`,
/// `_monitor_automatic`).
///
/// Hits are counted with plain atomics on the hot path and published here
/// as deltas, so a metrics backend never runs inside a lookup. Call
/// ``report()`` when the application scrapes or on a timer.
public final class CacheMetricsReporter: Sendable {
  private let cache: RegistrationCache
  private let counters: [String: Counter]
  private let invalidations: [InvalidationCause: Counter]
  private let gauges: [String: Gauge]
  private let last = Mutex(CacheStatistics())

  /// - Parameters:
  ///   - factory: where the metrics go; the bootstrapped system by default.
  ///   - prefix: the label prefix.
  ///   - dimensions: added to every metric (say, the device name).
  public init(
    _ cache: RegistrationCache, factory: MetricsFactory = MetricsSystem.factory,
    prefix: String = "rdma_registration_cache", dimensions: [(String, String)] = []
  ) {
    self.cache = cache
    var counters: [String: Counter] = [:]
    for name in Self.counterNames {
      counters[name] = Counter(
        label: "\(prefix)_\(name)", dimensions: dimensions, factory: factory)
    }
    self.counters = counters
    var invalidations: [InvalidationCause: Counter] = [:]
    for cause in InvalidationCause.allCases {
      invalidations[cause] = Counter(
        label: "\(prefix)_invalidations", dimensions: dimensions + [("cause", cause.rawValue)],
        factory: factory)
    }
    self.invalidations = invalidations
    var gauges: [String: Gauge] = [:]
    for name in Self.gaugeNames {
      gauges[name] = Gauge(label: "\(prefix)_\(name)", dimensions: dimensions, factory: factory)
    }
    self.gauges = gauges
  }

  static let counterNames = [
    "lookups", "hits", "misses", "registrations", "registration_failures", "deregistrations",
    "evictions", "enomem_retries", "stale_hits", "uncached_registrations",
  ]
  static let gaugeNames = [
    "entries", "cached_bytes", "live_registrations", "live_bytes", "monitor_automatic",
  ]

  /// Publishes what changed since the last report.
  public func report() {
    let now = cache.statistics
    last.withLock { last in
      func add(_ name: String, _ value: KeyPath<CacheStatistics, Int>) {
        let delta = now[keyPath: value] - last[keyPath: value]
        if delta > 0 { counters[name]?.increment(by: delta) }
      }
      add("lookups", \.lookups)
      add("hits", \.hits)
      add("misses", \.misses)
      add("registrations", \.registrations)
      add("registration_failures", \.registrationFailures)
      add("deregistrations", \.deregistrations)
      add("evictions", \.evictions)
      add("enomem_retries", \.retriesAfterNoMemory)
      add("stale_hits", \.staleHits)
      add("uncached_registrations", \.uncachedRegistrations)
      for cause in InvalidationCause.allCases {
        let delta = (now.invalidations[cause] ?? 0) - (last.invalidations[cause] ?? 0)
        if delta > 0 { invalidations[cause]?.increment(by: delta) }
      }
      gauges["entries"]?.record(now.entries)
      gauges["cached_bytes"]?.record(now.cachedBytes)
      gauges["live_registrations"]?.record(now.liveRegistrations)
      gauges["live_bytes"]?.record(now.liveBytes)
      gauges["monitor_automatic"]?.record(now.monitor.isAutomatic ? 1 : 0)
      last = now
    }
  }
}
