package import CRDMA

#if canImport(Glibc)
  import Glibc
#endif

/// A protection domain: the scope in which memory regions and queue pairs
/// may be used together. Wraps `struct ibv_pd`; released with `ibv_dealloc_pd`.
///
/// It borrows its ``DeviceContext``; memory regions and queue pairs borrow it
/// in turn, so none of them can outlive it, and it cannot outlive the context.
public struct ProtectionDomain: ~Copyable, ~Escapable {
  package let raw: UnsafeMutablePointer<ibv_pd>

  @_lifetime(borrow context)
  init(raw: UnsafeMutablePointer<ibv_pd>, context: borrowing DeviceContext) { self.raw = raw }

  /// Wraps a domain allocated on a device context that another library
  /// owns (librdmacm's `cm_id->verbs`); the domain borrows `owner`, the
  /// value that keeps that context open.
  @_lifetime(borrow owner)
  package init<Owner: ~Copyable>(raw: UnsafeMutablePointer<ibv_pd>, owner: borrowing Owner) {
    self.raw = raw
  }

  var core: ProtectionDomainCore { ProtectionDomainCore(raw: raw) }

  deinit { _ = ibv_dealloc_pd(raw) }

  /// Releases the domain now and reports failure. The C function is `ibv_dealloc_pd`.
  ///
  /// Swift's checker does not let a value be consumed in the same function
  /// that lent it to a child; use ``DeviceContext/withProtectionDomain(_:)``
  /// for an explicit, error-reporting teardown after children are gone.
  public consuming func deallocate() throws(VerbsError) {
    let core = self.core
    discard self
    try core.deallocate()
  }

  /// Registers a buffer for RDMA. The C function is `ibv_reg_mr_iova2`.
  ///
  /// - Parameters:
  ///   - buffer: the memory; the region borrows it, so it stays allocated.
  ///   - access: what the HCA and peers may do; `[]` is valid.
  ///   - iova: the address peers use for the first byte; defaults to the
  ///     buffer's virtual address. Its offset within a 4 KiB page must equal
  ///     the buffer's.
  @_lifetime(borrow self, borrow buffer)
  public func register(
    _ buffer: borrowing PageAlignedBuffer, access: MemoryAccess = .localWrite, iova: UInt64? = nil
  ) throws(VerbsError) -> MemoryRegion {
    let mr = try core.register(
      address: buffer.baseAddress, length: buffer.count, access: access, iova: iova)
    return MemoryRegion(raw: mr.raw, iova: mr.iova, access: access, pd: self, buffer: buffer)
  }

  /// Registers memory that the caller owns and promises to keep mapped, at
  /// the same address, for as long as the region exists. The C function is
  /// `ibv_reg_mr_iova2`.
  ///
  /// Unsafe: nothing ties the memory's lifetime to the region's. A pointer
  /// made by `&array` is valid only during one call and is not accepted here
  /// (it does not convert to a buffer pointer); register arrays with
  /// ``withRegistration(of:access:_:)`` instead, and memory you own with a
  /// ``PageAlignedBuffer`` or, in the owned tier, a ``SharedBuffer``.
  @_lifetime(borrow self)
  public func unsafeRegister(
    _ memory: UnsafeMutableRawBufferPointer, access: MemoryAccess = .localWrite,
    iova: UInt64? = nil
  ) throws(VerbsError) -> MemoryRegion {
    let mr = try core.register(
      address: try Registration.start(of: memory), length: memory.count, access: access,
      iova: iova)
    return MemoryRegion(raw: mr.raw, iova: mr.iova, access: access, pd: self)
  }

  /// Registers a dma-buf (device memory such as a GPU buffer) by file
  /// descriptor. The C function is `ibv_reg_dmabuf_mr`.
  @_lifetime(borrow self)
  public func registerDMABuf(
    fileDescriptor: Int32, offset: UInt64, length: Int, iova: UInt64,
    access: MemoryAccess = .localWrite
  ) throws(VerbsError) -> MemoryRegion {
    let mr = try core.registerDMABuf(
      fileDescriptor: fileDescriptor, offset: offset, length: length, iova: iova, access: access)
    return MemoryRegion(raw: mr, iova: iova, access: access, pd: self)
  }

  /// Creates a reliable-connected queue pair whose completions go to the
  /// given queues. The C function is `ibv_create_qp`.
  @_lifetime(borrow self, borrow sendCompletions, borrow receiveCompletions)
  public func createQueuePair(
    sendCompletions: borrowing CompletionQueue, receiveCompletions: borrowing CompletionQueue,
    capacity: QueuePairCapacity = QueuePairCapacity()
  ) throws(VerbsError) -> QueuePair {
    try QueuePair(
      pd: self, sendCompletions: sendCompletions, receiveCompletions: receiveCompletions,
      capacity: capacity)
  }
}

extension DeviceContext {
  /// Allocates a protection domain, runs `body` with it, and releases it
  /// afterwards, reporting a failed release. The C functions are
  /// `ibv_alloc_pd` and `ibv_dealloc_pd`.
  ///
  /// Throws a ``VerbsError`` from allocation or release, or whatever `body` throws.
  public func withProtectionDomain<R>(
    _ body: (borrowing ProtectionDomain) throws -> R
  ) throws -> R {
    let pd = try allocateProtectionDomain()
    let result = try body(pd)
    try pd.deallocate()
    return result
  }
}
