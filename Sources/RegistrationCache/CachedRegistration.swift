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
public final class CachedRegistration: RegistrationHold, @unchecked Sendable {
  // @unchecked: everything is immutable except `released`, which is atomic.
  /// Not retained (a retain and a release would be two more atomic
  /// operations on every hit): the handle's count in
  /// ``CacheEntry/holders`` keeps the entry alive (see
  /// ``CacheEntry/detach()``) until ``release()``, after which this handle
  /// never touches it again. The keys and range are copied, so they stay
  /// readable after release.
  let held: Unmanaged<CacheEntry>
  private let released = Atomic<Bool>(false)
  /// The registered range, its access and keys (also forwarded as
  /// ``RegistrationHold/lkey`` and the rest).
  public let range: CachedRange

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
}
