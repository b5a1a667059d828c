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
  // @unchecked: `entry` is immutable; `released` is atomic.
  let entry: CacheEntry
  private let released = Atomic<Bool>(false)

  init(_ entry: CacheEntry) { self.entry = entry }

  deinit {
    // One load instead of an exchange when release() already ran.
    if !released.load(ordering: .acquiring) { release() }
  }

  /// Gives the handle back. The cache may evict the registration once no
  /// handle holds it.
  public func release() {
    if !released.exchange(true, ordering: .acquiringAndReleasing) { entry.release() }
  }

  /// First registered byte: the looked-up address rounded down to a page.
  public var address: UInt64 { entry.start }
  /// Registered bytes: the looked-up range rounded out to whole pages (or
  /// more, when it was merged with overlapping entries).
  public var length: Int { entry.length }
  /// The access the registration has: at least the access asked for.
  public var access: MemoryAccess { entry.access }
  /// Local key, for scatter/gather entries.
  public var lkey: UInt32 { entry.registered.lkey }
  /// Remote key, for peers.
  public var rkey: UInt32 { entry.registered.rkey }
  /// The IOVA of ``address``.
  public var iova: UInt64 { entry.registered.iova }
  /// The region itself; nil only for caches built over a test registrar.
  public var region: SharedMemoryRegion? { entry.registered.region }
  /// False once the cache no longer serves this registration; it stays
  /// valid for this handle either way.
  public var isCached: Bool { !entry.isDetached }

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
    guard address >= entry.start, count >= 0, address - entry.start <= UInt64(entry.length),
      UInt64(count) <= UInt64(entry.length) - (address - entry.start)
    else {
      throw VerbsError(
        .invalidArgument, operation: operation, errno: EINVAL,
        message: "\(count) bytes at 0x\(String(address, radix: 16)) are outside the cached "
          + "registration 0x\(String(entry.start, radix: 16)) + \(entry.length); look up the "
          + "range you send from", checkedBeforeCall: true)
    }
    return address - entry.start
  }
}

#if canImport(Glibc)
  import Glibc
#endif
