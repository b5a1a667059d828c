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
  /// First registered byte: the looked-up address rounded down to a page.
  public let address: UInt64
  /// Registered bytes: the looked-up range rounded out to whole pages (or
  /// more, when it was merged with overlapping entries).
  public let length: Int
  /// The access the registration has: at least the access asked for.
  public let access: MemoryAccess
  /// Local key, for scatter/gather entries.
  public let lkey: UInt32
  /// Remote key, for peers.
  public let rkey: UInt32
  /// The IOVA of ``address``.
  public let iova: UInt64

  init(_ held: Unmanaged<CacheEntry>) {
    self.held = held
    (address, length, access, lkey, rkey, iova) = held._withUnsafeGuaranteedRef {
      ($0.start, $0.length, $0.access, $0.registered.lkey, $0.registered.rkey, $0.registered.iova)
    }
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
    let offset = try self.offset(of: address, count: count, operation: "ibv_sge")
    guard let length32 = UInt32(exactly: count) else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_sge", errno: EINVAL,
        message: "one scatter/gather entry covers at most 4 GiB - 1 bytes; got \(count). "
          + "Split the transfer into several work requests", checkedBeforeCall: true)
    }
    return ScatterGatherElement(address: iova + offset, length: length32, lkey: lkey)
  }

  /// What a peer needs to reach `count` bytes at virtual `address`.
  public func remote(address: UInt64, count: Int) throws(VerbsError) -> RemoteBuffer {
    let offset = try self.offset(of: address, count: count, operation: "remote")
    return RemoteBuffer(address: iova + offset, length: UInt64(count), rkey: rkey)
  }

  private func offset(of address: UInt64, count: Int, operation: String) throws(VerbsError)
    -> UInt64
  {
    // `address >= start` first, so the subtraction cannot wrap; `count` is
    // non-negative and below the length, which fits in UInt64.
    guard address >= self.address, count >= 0, address - self.address <= UInt64(length),
      UInt64(count) <= UInt64(length) - (address - self.address)
    else {
      throw VerbsError(
        .invalidArgument, operation: operation, errno: EINVAL,
        message: "\(count) bytes at 0x\(String(address, radix: 16)) are outside the cached "
          + "registration 0x\(String(self.address, radix: 16)) + \(length); look up the "
          + "range you send from", checkedBeforeCall: true)
    }
    return address - self.address
  }
}

#if canImport(Glibc)
  import Glibc
#endif
