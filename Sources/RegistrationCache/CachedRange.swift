import Verbs

#if canImport(Glibc)
  import Glibc
#endif

/// What a hold on a cached registration tells its holder: the registered
/// range, its access and keys, copied from the entry when the hold was
/// taken, so that they stay readable after release.
public struct CachedRange: Sendable, Equatable {
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

  @inline(__always)
  init(_ entry: Unmanaged<CacheEntry>) {
    (address, length, access, lkey, rkey, iova) = entry._withUnsafeGuaranteedRef {
      ($0.start, $0.length, $0.access, $0.registered.lkey, $0.registered.rkey, $0.registered.iova)
    }
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

/// A hold on a cached registration: a ``CachedRegistration`` (an object)
/// or a ``RegistrationLease`` (a noncopyable value). Both answer with the
/// range and keys they copied when the hold was taken.
public protocol RegistrationHold: ~Copyable {
  /// The registered range, its access and keys.
  var range: CachedRange { get }
}

extension RegistrationHold where Self: ~Copyable {
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
