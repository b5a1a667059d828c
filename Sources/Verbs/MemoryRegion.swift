package import CRDMA

/// Registered memory: pinned, translated, and usable by the HCA.
/// Wraps `struct ibv_mr`; released exactly once with `ibv_dereg_mr`, either
/// when the value is dropped or by ``deregister()``, which reports errors.
///
/// A region borrows its ``ProtectionDomain`` (and its ``PageAlignedBuffer``
/// when registered from one), so it can outlive neither.
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

  deinit { _ = ibv_dereg_mr(raw) }

  /// Deregisters now and reports failure. The C function is `ibv_dereg_mr`.
  public consuming func deregister() throws(VerbsError) {
    let raw = self.raw
    discard self
    let result = ibv_dereg_mr(raw)
    if result != 0 {
      throw VerbsError(
        .other, operation: "ibv_dereg_mr", errno: result,
        message: result == EINVAL || result == EBUSY
          ? "the region is still in use (a memory window may be bound to it); unbind it first"
          : "the device failed to deregister the region")
    }
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

  /// A local scatter/gather entry for `count` bytes at `offset` into the region.
  ///
  /// Addresses inside a region are IOVAs for local work requests too, so the
  /// entry starts at `iova + offset` (equal to the virtual address unless the
  /// region was registered at a chosen IOVA).
  public func scatterGather(offset: Int = 0, count: Int? = nil) -> ScatterGatherElement {
    let count = count ?? (length - offset)
    precondition(offset >= 0 && count >= 0 && offset + count <= length, "slice outside the region")
    precondition(count <= Int(UInt32.max), "one scatter/gather entry covers at most 4 GiB - 1")
    return ScatterGatherElement(address: iova + UInt64(offset), length: UInt32(count), lkey: lkey)
  }

  /// What a peer needs to reach this region: IOVA, length and rkey.
  public var remote: RemoteBuffer {
    RemoteBuffer(address: iova, length: UInt64(length), rkey: rkey)
  }

  /// Changes the access flags in place. The C function is `ibv_rereg_mr`
  /// with `IBV_REREG_MR_CHANGE_ACCESS`; providers without it (rxe) throw
  /// ``VerbsError/Code/notSupported`` and leave the region as it was.
  public mutating func reregister(access: MemoryAccess) throws(VerbsError) {
    try Registration.checkAccess(access, operation: "ibv_rereg_mr")
    CRDMA_set_errno(0)
    let result = ibv_rereg_mr(
      raw, Int32(IBV_REREG_MR_CHANGE_ACCESS.rawValue), nil, nil, 0,
      Int32(bitPattern: access.rawValue))
    if result == 0 {
      accessBits = access.rawValue
      return
    }
    let code = CRDMA_errno()
    if code == EOPNOTSUPP || code == ENOSYS || code == EPROTONOSUPPORT {
      throw VerbsError(
        .notSupported, operation: "ibv_rereg_mr", errno: code,
        message: "re-registration is not supported by this device; deregister and register again")
    }
    throw VerbsError(
      .other, operation: "ibv_rereg_mr", errno: code,
      message: "re-registration failed with code \(result); the region keeps its old access")
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

  /// The part that starts `offset` bytes in.
  public func advanced(by offset: UInt64) -> RemoteBuffer {
    precondition(offset <= length, "offset past the end of the remote buffer")
    return RemoteBuffer(address: address + offset, length: length - offset, rkey: rkey)
  }
}
