import Verbs

/// A registration from ``RegistrationCache/lease(address:length:access:)``,
/// held as a noncopyable value: the promise of a ``CachedRegistration``
/// (registered, with valid keys, until released, even if the cache drops it
/// meanwhile) without an object behind it. A lookup that hits costs no
/// allocation, and the lease has no released flag to test: the compiler
/// makes sure it is released exactly once. ``release()`` consumes it, a
/// lease that goes out of scope is released, and a released lease cannot
/// be used (it no longer exists), where a released handle answers with its
/// copied keys.
///
/// ```swift
/// let lease = try cache.lease(address: buffer, length: 4096)
/// try qp.postSend(.send, lease.scatterGather(address: buffer, count: 4096), id: 1)
/// // ... after the completion:
/// lease.release()
/// ```
///
/// `Sendable`: a lease may move to another thread and be released there.
/// To keep it in an array or share it, turn it into a handle with
/// ``shared()``.
public struct RegistrationLease: RegistrationHold, ~Copyable, @unchecked Sendable {
  // @unchecked: `held` is an unretained reference to an entry whose holder
  // count this lease owns one of (CacheEntry is Sendable); the rest is
  // immutable values.
  private let held: Unmanaged<CacheEntry>
  /// The registered range, its access and keys (also forwarded as
  /// ``RegistrationHold/lkey`` and the rest).
  public let range: CachedRange

  /// Takes over a hold already counted in the entry's holders.
  @inline(__always)
  init(_ held: Unmanaged<CacheEntry>) {
    self.held = held
    range = CachedRange(held)
  }

  deinit {
    held._withUnsafeGuaranteedRef { $0.release() }
  }

  /// Gives the registration back (the cache may then evict it; the last
  /// release of one the cache has dropped deregisters it, `ibv_dereg_mr`).
  public consuming func release() {}

  /// The same hold as a ``CachedRegistration``: an object that can be
  /// stored in an array or dictionary, or shared between owners.
  public consuming func shared() -> CachedRegistration {
    let held = self.held
    discard self
    return CachedRegistration(held)
  }

  /// The region itself; nil for caches built over a test registrar.
  public var region: SharedMemoryRegion? {
    held._withUnsafeGuaranteedRef { $0.registered.region }
  }
  /// False once the cache no longer serves this registration (it stays
  /// valid for this lease either way).
  public var isCached: Bool { held._withUnsafeGuaranteedRef { !$0.isDetached } }
}
