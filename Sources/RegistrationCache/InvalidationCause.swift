/// Why a cached registration stopped being served.
public enum InvalidationCause: String, Sendable, Hashable, Codable, CaseIterable {
  /// ``RegistrationCache/invalidate(address:length:)``.
  case explicit
  /// `munmap`, a `brk` shrink, or `mmap(MAP_FIXED)` over the range
  /// (userfaultfd `UFFD_EVENT_UNMAP`).
  case unmap
  /// `madvise(MADV_DONTNEED/FREE/REMOVE)` (userfaultfd `UFFD_EVENT_REMOVE`).
  case remove
  /// `mremap` moved the range (userfaultfd `UFFD_EVENT_REMAP`).
  case remap
  /// A newer registration overlapping it replaced it (the overlap policy).
  case overlap
  /// The page-frame check on a hit found pages that are no longer the ones
  /// registered.
  case staleFrames
  /// The monitor's ring overflowed, so every entry was dropped to be safe.
  case monitorOverflow
}
