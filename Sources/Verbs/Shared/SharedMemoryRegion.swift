package import CRDMA

/// Registered memory in the owned tier: reference-counted and `Sendable`.
/// Wraps `struct ibv_mr`; deregistered exactly once with `ibv_dereg_mr`, by
/// ``close()`` or when the last reference goes.
///
/// It holds its ``SharedProtectionDomain`` and, when registered from one,
/// the ``SharedBuffer`` it covers, so neither can go away under it: a region
/// kept in a dictionary outlives the function that made it, and the
/// variables that held its domain and buffer.
///
/// Concurrency: a region is immutable after registration (keys, IOVA and
/// length are read once), so any number of threads may build scatter/gather
/// entries from it and post them at once. In-place re-registration
/// (`ibv_rereg_mr`) is offered only by the scoped ``MemoryRegion``: it may
/// change the keys other threads are using. To change access, register
/// again and drop the old region.
public final class SharedMemoryRegion: @unchecked Sendable {
  // @unchecked: `raw` is used only by close()/deinit, once, under `gate`;
  // every other stored property is immutable.
  package let raw: UnsafeMutablePointer<ibv_mr>
  /// The domain the region belongs to (and keeps alive).
  public let domain: SharedProtectionDomain
  /// The buffer the region covers (and keeps alive); nil for
  /// ``SharedProtectionDomain/unsafeRegister(_:access:iova:)``.
  public let memory: SharedBuffer?
  /// The address peers use for the first byte.
  public let iova: UInt64
  /// Local key: names the region in local scatter/gather entries (`lkey`).
  public let lkey: UInt32
  /// Remote key: lets a peer RDMA READ/WRITE the region (`rkey`).
  public let rkey: UInt32
  /// The virtual address of the first byte (`addr`).
  public let address: UInt64
  /// Length in bytes (`length`).
  public let length: Int
  /// The access the region was registered with.
  public let access: MemoryAccess
  let gate = UseGate()

  init(
    raw: UnsafeMutablePointer<ibv_mr>, iova: UInt64, access: MemoryAccess,
    domain: SharedProtectionDomain, memory: SharedBuffer?
  ) {
    self.raw = raw
    self.domain = domain
    self.memory = memory
    self.iova = iova
    self.lkey = raw.pointee.lkey
    self.rkey = raw.pointee.rkey
    self.address = UInt64(UInt(bitPattern: raw.pointee.addr))
    self.length = raw.pointee.length
    self.access = access
    domain.gate.childCreated()
  }

  deinit {
    if !gate.isClosed {
      _ = ibv_dereg_mr(raw)
      domain.gate.childReleased()
    }
  }

  /// Deregisters now and reports failure. The C function is `ibv_dereg_mr`.
  ///
  /// Work requests posted with its keys afterwards complete with a
  /// protection or access error. Throws ``VerbsError/Code/closed`` when it
  /// was deregistered already.
  public func close() throws(VerbsError) {
    try gate.close("memory region", children: "memory windows", operation: "ibv_dereg_mr") {
      () throws(VerbsError) in
      try MemoryRegionCore(raw: raw).deregister()
      domain.gate.childReleased()
    }
  }

  /// True once ``close()`` has deregistered the region.
  public var isClosed: Bool { gate.isClosed }

  /// A local scatter/gather entry for `count` bytes (default: to the end)
  /// at `offset` into the region. Throws for a slice outside the region or
  /// longer than one entry can describe (4 GiB - 1).
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
}
