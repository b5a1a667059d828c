/// A snapshot of what a ``RegistrationCache`` has done and holds.
///
/// Counts are read one by one without stopping the cache, so a snapshot
/// taken during lookups may be off by the lookups in flight.
public struct CacheStatistics: Sendable, Hashable, Codable {
  /// Calls to ``RegistrationCache/lookup(address:length:access:)``.
  public var lookups = 0
  /// Lookups served by a cached registration.
  public var hits = 0
  /// Lookups that registered (or tried to).
  public var misses = 0
  /// Successful registrations (`ibv_reg_mr`).
  public var registrations = 0
  /// Registrations that failed, after the retry.
  public var registrationFailures = 0
  /// Deregistrations (`ibv_dereg_mr`), and those that failed.
  public var deregistrations = 0
  public var deregistrationFailures = 0
  /// Misses that failed with ENOMEM, evicted every idle entry and retried.
  public var retriesAfterNoMemory = 0
  /// Idle entries dropped to stay within the limits.
  public var evictions = 0
  /// Entries dropped because their memory changed or was asked to go, by cause.
  public var invalidations: [InvalidationCause: Int] = [:]
  /// Hits whose pages were found replaced by the frame check, and
  /// re-registered instead of handed out.
  public var staleHits = 0
  /// Frame checks run on hits.
  public var frameChecks = 0
  /// Registrations handed out without caching because the monitor could
  /// not watch their range (file mappings, ranges another userfaultfd watches).
  public var uncachedRegistrations = 0
  /// Misses that registered the union of overlapping entries.
  public var mergedRegistrations = 0
  /// Cached entries, and the bytes they cover.
  public var entries = 0
  public var cachedBytes = 0
  /// Registrations alive (cached, or invalidated but still held), and bytes.
  public var liveRegistrations = 0
  public var liveBytes = 0
  /// What tells the cache that memory went away.
  public var monitor = CacheMonitor.explicitOnly(reason: "not started")
  /// Events the userfaultfd monitor has read.
  public var monitorEvents = 0

  public init() {}

  /// Registrations a cache-less program would have made that this one did not.
  public var registrationsAvoided: Int { hits }
}

/// What tells a cache that cached memory was unmapped, moved or discarded.
public enum CacheMonitor: Sendable, Hashable, Codable, CustomStringConvertible {
  /// A userfaultfd monitor thread; `userModeOnly` when the process needed
  /// `UFFD_USER_MODE_ONLY` (no `CAP_SYS_PTRACE`).
  case userfaultfd(userModeOnly: Bool)
  /// Nothing: the application must call
  /// ``RegistrationCache/invalidate(address:length:)`` before it unmaps,
  /// frees, moves or `madvise`s cached memory. `reason` says why.
  case explicitOnly(reason: String)

  public var description: String {
    switch self {
    case .userfaultfd(let userModeOnly):
      "userfaultfd" + (userModeOnly ? " (UFFD_USER_MODE_ONLY)" : "")
    case .explicitOnly(let reason): "explicit invalidation only: \(reason)"
    }
  }

  /// Whether unmapped memory is noticed without the application's help.
  public var isAutomatic: Bool {
    if case .userfaultfd = self { return true }
    return false
  }
}

extension InvalidationCause: CodingKeyRepresentable {}
