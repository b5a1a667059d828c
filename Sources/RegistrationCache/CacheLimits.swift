/// The bounds a ``RegistrationCache`` keeps its idle entries within, and its
/// options. Entries in use are never evicted, so a cache whose entries are
/// all held may exceed the count and byte bounds until they are released.
public struct CacheLimits: Sendable, Hashable, Codable {
  /// Most cached entries (libfabric's default is 1024).
  public var maxEntries: Int
  /// Most cached bytes; nil for no bound.
  public var maxBytes: Int?
  /// When to keep registrations under `RLIMIT_MEMLOCK`: evict idle entries
  /// so that what the process pins (`VmPin`) plus a new registration stays
  /// within the soft limit.
  public var memoryLock: MemoryLockPolicy
  /// Largest registration the overlap policy may build by merging; a miss
  /// whose union with its overlaps would be larger registers only its own
  /// pages.
  public var maxMergedBytes: Int
  /// Re-read the page frames of a hit (`/proc/self/pagemap`, needs
  /// `CAP_SYS_ADMIN`) and re-register when they changed. Costs a system
  /// call per hit; for finding monitor gaps, not for production hot paths.
  public var checkFramesOnHit: Bool
  /// Room for ranges the monitor saw go away between two lookups.
  public var monitorQueueCapacity: Int

  public init(
    maxEntries: Int = 4096, maxBytes: Int? = nil, memoryLock: MemoryLockPolicy = .whenEnforced,
    maxMergedBytes: Int = 1 << 30, checkFramesOnHit: Bool = false,
    monitorQueueCapacity: Int = 4096
  ) {
    self.maxEntries = Swift.max(maxEntries, 1)
    self.maxBytes = maxBytes
    self.memoryLock = memoryLock
    self.maxMergedBytes = maxMergedBytes
    self.checkFramesOnHit = checkFramesOnHit
    self.monitorQueueCapacity = monitorQueueCapacity
  }

  /// When the memlock headroom bounds the cache.
  public enum MemoryLockPolicy: String, Sendable, Hashable, Codable {
    /// When the kernel enforces the limit: a finite soft limit and no
    /// `CAP_IPC_LOCK`.
    case whenEnforced
    /// Whenever the soft limit is finite, even with `CAP_IPC_LOCK`.
    case always
    /// Never; a registration refused with ENOMEM still evicts and retries.
    case never
  }
}

/// What the cache watches memory with.
public enum MonitorChoice: Sendable, Hashable {
  /// A userfaultfd monitor where the kernel allows one; otherwise explicit
  /// invalidation only, said so in ``CacheStatistics/monitor``.
  case userfaultfd
  /// No monitor: the application calls
  /// ``RegistrationCache/invalidate(address:length:)``.
  case explicitOnly
}
