#if canImport(Glibc)
  import Glibc
#endif

/// `RLIMIT_MEMLOCK`, soft and hard. The one `getrlimit` call of the package.
package struct MemoryLockLimit: Sendable, Hashable {
  /// The soft limit in bytes; nil means unlimited (or unreadable).
  package var soft: UInt64?
  /// The hard limit in bytes; nil means unlimited (or unreadable).
  package var hard: UInt64?

  package init(soft: UInt64?, hard: UInt64?) {
    self.soft = soft
    self.hard = hard
  }

  /// The limits now. The C function is `getrlimit`.
  package static func current() -> MemoryLockLimit {
    var limit = rlimit()
    guard getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0 else {
      return MemoryLockLimit(soft: nil, hard: nil)
    }
    func bytes(_ value: rlim_t) -> UInt64? { value == rlim_t.max ? nil : UInt64(value) }
    return MemoryLockLimit(soft: bytes(limit.rlim_cur), hard: bytes(limit.rlim_max))
  }
}
