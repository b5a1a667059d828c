import Synchronization
import Verbs

/// A handle on a registration from a ``RegistrationCache``: while any
/// handle on it is alive, the registration stays registered and its keys
/// stay valid, even if the cache has since dropped it (its memory was
/// unmapped, or it was evicted or invalidated). Releasing the last handle of
/// a dropped registration deregisters it.
///
/// Release it with ``release()`` when the work requests that use its keys
/// have completed, or let it go (`deinit` releases). Releasing twice is
/// harmless. `Sendable`: it may be released on another thread.
public final class CachedRegistration: @unchecked Sendable {
  // @unchecked: everything is immutable except `released`, which is atomic.
  /// Not retained (a retain and a release would be two more atomic
  /// operations on every hit): the handle's count in
  /// ``CacheEntry/holders`` keeps the entry alive (see
  /// ``CacheEntry/detach()``) until ``release()``, after which this handle
  /// never touches it again. The keys and range are copied, so they stay
  /// readable after release.
  let held: Unmanaged<CacheEntry>
  private let released = Atomic<Bool>(false)
  private let range: CachedRange
  /// First registered byte: the looked-up address rounded down to a page.
  public var address: UInt64 { range.address }
  /// Registered bytes: the looked-up range rounded out to whole pages (or
  /// more, when it was merged with overlapping entries).
  public var length: Int { range.length }
  /// The access the registration has: at least the access asked for.
  public var access: MemoryAccess { range.access }
  /// Local key, for scatter/gather entries.
  public var lkey: UInt32 { range.lkey }
  /// Remote key, for peers.
  public var rkey: UInt32 { range.rkey }
  /// The IOVA of ``address``.
  public var iova: UInt64 { range.iova }

  /// Takes over a hold already counted in the entry's holders.
  init(_ held: Unmanaged<CacheEntry>) {
    self.held = held
    range = CachedRange(held)
  }

  deinit {
    // One load instead of an exchange when release() already ran.
    if !released.load(ordering: .acquiring) { release() }
  }

  /// Gives the handle back. The cache may evict the registration once no
  /// handle holds it. Do not call it while another thread reads
  /// ``region`` or ``isCached`` on this handle.
  public func release() {
    if !released.exchange(true, ordering: .acquiringAndReleasing) {
      held._withUnsafeGuaranteedRef { $0.release() }
    }
  }

  /// The region itself; nil for caches built over a test registrar, and
  /// after ``release()``.
  public var region: SharedMemoryRegion? {
    released.load(ordering: .acquiring) ? nil : held.takeUnretainedValue().registered.region
  }
  /// False once the cache no longer serves this registration (it stays
  /// valid for this handle either way), and after ``release()``.
  public var isCached: Bool {
    !released.load(ordering: .acquiring) && !held.takeUnretainedValue().isDetached
  }

  /// A local scatter/gather entry for `count` bytes at virtual `address`,
  /// which must lie inside the registration.
  public func scatterGather(address: UInt64, count: Int) throws(VerbsError)
    -> ScatterGatherElement
  {
    try range.scatterGather(address: address, count: count)
  }

  /// What a peer needs to reach `count` bytes at virtual `address`.
  public func remote(address: UInt64, count: Int) throws(VerbsError) -> RemoteBuffer {
    try range.remote(address: address, count: count)
  }
}
