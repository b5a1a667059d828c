import Verbs

#if canImport(Glibc)
  import Glibc
#endif

/// What a handle or a lease on a cached registration tells its holder: the
/// registered range, its access and keys, copied from the entry so that
/// they stay readable after release. Shared by ``CachedRegistration`` and
/// ``RegistrationLease``, which forward to it.
struct CachedRange: Sendable {
  /// First registered byte: the looked-up address rounded down to a page.
  let address: UInt64
  /// Registered bytes: the looked-up range rounded out to whole pages (or
  /// more, when it was merged with overlapping entries).
  let length: Int
  let access: MemoryAccess
  let lkey: UInt32
  let rkey: UInt32
  /// The IOVA of ``address``.
  let iova: UInt64

  @inline(__always)
  init(_ entry: Unmanaged<CacheEntry>) {
    (address, length, access, lkey, rkey, iova) = entry._withUnsafeGuaranteedRef {
      ($0.start, $0.length, $0.access, $0.registered.lkey, $0.registered.rkey, $0.registered.iova)
    }
  }

  func scatterGather(address: UInt64, count: Int) throws(VerbsError) -> ScatterGatherElement {
    let offset = try self.offset(of: address, count: count, operation: "ibv_sge")
    guard let length32 = UInt32(exactly: count) else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_sge", errno: EINVAL,
        message: "one scatter/gather entry covers at most 4 GiB - 1 bytes; got \(count). "
          + "Split the transfer into several work requests", checkedBeforeCall: true)
    }
    return ScatterGatherElement(address: iova + offset, length: length32, lkey: lkey)
  }

  func remote(address: UInt64, count: Int) throws(VerbsError) -> RemoteBuffer {
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
