package import CRDMA

/// Registered memory: pinned, translated, and usable by the HCA.
/// Wraps `struct ibv_mr`; released exactly once with `ibv_dereg_mr`, either
/// when the value is dropped or by ``deregister()``, which reports errors.
///
/// A region borrows its ``ProtectionDomain`` (and its ``PageAlignedBuffer``
/// when registered from one), so it can outlive neither. The owned,
/// shareable counterpart is ``SharedMemoryRegion``; both run the same code.
public struct MemoryRegion: ~Copyable, ~Escapable {
  package let raw: UnsafeMutablePointer<ibv_mr>
  /// The address peers use for the first byte.
  public let iova: UInt64
  var accessBits: UInt32

  @_lifetime(borrow pd, borrow buffer)
  init(
    raw: UnsafeMutablePointer<ibv_mr>, iova: UInt64, access: MemoryAccess,
    pd: borrowing ProtectionDomain, buffer: borrowing PageAlignedBuffer
  ) {
    self.raw = raw
    self.iova = iova
    self.accessBits = access.rawValue
  }

  @_lifetime(borrow pd)
  init(
    raw: UnsafeMutablePointer<ibv_mr>, iova: UInt64, access: MemoryAccess,
    pd: borrowing ProtectionDomain
  ) {
    self.raw = raw
    self.iova = iova
    self.accessBits = access.rawValue
  }

  /// Wraps a region registered over memory that `owner` keeps alive (the
  /// scoped registrations of arrays and byte collections).
  @_lifetime(borrow owner)
  init<Owner: ~Copyable>(
    raw: UnsafeMutablePointer<ibv_mr>, iova: UInt64, access: MemoryAccess,
    owner: borrowing Owner
  ) {
    self.raw = raw
    self.iova = iova
    self.accessBits = access.rawValue
  }

  var core: MemoryRegionCore { MemoryRegionCore(raw: raw) }

  deinit { _ = ibv_dereg_mr(raw) }

  /// Deregisters now and reports failure. The C function is `ibv_dereg_mr`.
  public consuming func deregister() throws(VerbsError) {
    let core = self.core
    discard self
    try core.deregister()
  }

  /// Local key: names the region in local scatter/gather entries (`lkey`).
  public var lkey: UInt32 { raw.pointee.lkey }
  /// Remote key: lets a peer RDMA READ/WRITE the region (`rkey`).
  public var rkey: UInt32 { raw.pointee.rkey }
  /// The virtual address of the first byte (`addr`).
  public var address: UInt64 { UInt64(UInt(bitPattern: raw.pointee.addr)) }
  /// Length in bytes (`length`).
  public var length: Int { raw.pointee.length }
  /// The access the region was registered with.
  public var access: MemoryAccess { MemoryAccess(rawValue: accessBits) }

  /// A local scatter/gather entry for `count` bytes (default: to the end)
  /// at `offset` into the region.
  ///
  /// Addresses inside a region are IOVAs for local work requests too, so the
  /// entry starts at `iova + offset` (equal to the virtual address unless the
  /// region was registered at a chosen IOVA). Throws for a slice outside the
  /// region or longer than one entry can describe (4 GiB - 1).
  public func scatterGather(offset: Int = 0, count: Int? = nil) throws(VerbsError)
    -> ScatterGatherElement
  {
    try MemoryRegionCore.scatterGather(
      iova: iova, length: length, lkey: lkey, offset: offset, count: count)
  }

  /// What a peer needs to reach this region: IOVA, length and rkey.
  public var remote: RemoteBuffer {
    RemoteBuffer(address: iova, length: UInt64(length), rkey: rkey)
  }

  /// Changes the access flags in place. The C function is `ibv_rereg_mr`
  /// with `IBV_REREG_MR_CHANGE_ACCESS`; providers without it (rxe) throw
  /// ``VerbsError/Code/notSupported`` and leave the region as it was.
  public mutating func reregister(access: MemoryAccess) throws(VerbsError) {
    try core.reregister(access: access)
    accessBits = access.rawValue
  }
}

/// One local scatter/gather entry (`struct ibv_sge`).
public struct ScatterGatherElement: Sendable, Hashable {
  /// Address of the first byte.
  public var address: UInt64
  /// Length in bytes.
  public var length: UInt32
  /// Local key of the region that holds the bytes.
  public var lkey: UInt32

  /// Creates an entry; usually made by ``MemoryRegion/scatterGather(offset:count:)``.
  public init(address: UInt64, length: UInt32, lkey: UInt32) {
    self.address = address
    self.length = length
    self.lkey = lkey
  }
}

/// A peer's registered memory, as exchanged out of band (address, length, rkey).
public struct RemoteBuffer: Sendable, Hashable {
  /// The IOVA of the first byte.
  public var address: UInt64
  /// Length in bytes.
  public var length: UInt64
  /// Remote key.
  public var rkey: UInt32

  /// Creates a description of remote memory.
  public init(address: UInt64, length: UInt64, rkey: UInt32) {
    self.address = address
    self.length = length
    self.rkey = rkey
  }

  /// The part that starts `offset` bytes in; throws when `offset` is past
  /// the end. Cannot overflow: registration checked that `address + length`
  /// fits in 64 bits, and `offset <= length`.
  public func advanced(by offset: UInt64) throws(VerbsError) -> RemoteBuffer {
    guard offset <= length else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_send_wr", errno: EINVAL,
        message: "offset \(offset) is past the end of the peer's \(length)-byte buffer",
        checkedBeforeCall: true)
    }
    let (start, overflow) = address.addingReportingOverflow(offset)
    guard !overflow else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_send_wr", errno: EOVERFLOW,
        message: "address 0x\(String(address, radix: 16)) plus \(offset) overflows 64 bits; "
          + "the peer's description is corrupt", checkedBeforeCall: true)
    }
    return RemoteBuffer(address: start, length: length - offset, rkey: rkey)
  }
}
