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

  deinit { _ = ibv_dealloc_pd(raw) }

  /// Releases the domain now and reports failure. The C function is `ibv_dealloc_pd`.
  ///
  /// Swift's checker does not let a value be consumed in the same function
  /// that lent it to a child; use ``DeviceContext/withProtectionDomain(_:)``
  /// for an explicit, error-reporting teardown after children are gone.
  public consuming func deallocate() throws(VerbsError) {
    let raw = self.raw
    discard self
    let result = ibv_dealloc_pd(raw)
    if result != 0 {
      throw VerbsError(
        .other, operation: "ibv_dealloc_pd", errno: result,
        message: "the protection domain is still in use by another object")
    }
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
    let mr = try registerRaw(
      address: buffer.baseAddress, length: buffer.count, access: access, iova: iova)
    return MemoryRegion(raw: mr.raw, iova: mr.iova, access: access, pd: self, buffer: buffer)
  }

  /// Registers memory that the caller owns and keeps mapped for as long as
  /// the region exists. The C function is `ibv_reg_mr_iova2`.
  ///
  /// The region borrows only this domain; the caller guarantees the memory
  /// outlives it (the ``PageAlignedBuffer`` overload checks that for you).
  @_lifetime(borrow self)
  public func register(
    unsafeAddress address: UnsafeMutableRawPointer, length: Int, access: MemoryAccess = .localWrite,
    iova: UInt64? = nil
  ) throws(VerbsError) -> MemoryRegion {
    let mr = try registerRaw(address: address, length: length, access: access, iova: iova)
    return MemoryRegion(raw: mr.raw, iova: mr.iova, access: access, pd: self)
  }

  /// Registers a dma-buf (device memory such as a GPU buffer) by file
  /// descriptor. The C function is `ibv_reg_dmabuf_mr`.
  @_lifetime(borrow self)
  public func registerDMABuf(
    fileDescriptor: Int32, offset: UInt64, length: Int, iova: UInt64,
    access: MemoryAccess = .localWrite
  ) throws(VerbsError) -> MemoryRegion {
    try Registration.checkAccess(access, operation: "ibv_reg_dmabuf_mr")
    guard length > 0 else {
      throw Registration.zeroLength(operation: "ibv_reg_dmabuf_mr")
    }
    CRDMA_set_errno(0)
    guard
      let mr = ibv_reg_dmabuf_mr(
        raw, offset, length, iova, fileDescriptor, Int32(bitPattern: access.rawValue))
    else {
      let code = CRDMA_errno()
      throw Registration.failure(
        operation: "ibv_reg_dmabuf_mr", errno: code, access: access, length: UInt64(length))
    }
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

  func registerRaw(
    address: UnsafeMutableRawPointer, length: Int, access: MemoryAccess, iova: UInt64?
  ) throws(VerbsError) -> (raw: UnsafeMutablePointer<ibv_mr>, iova: UInt64) {
    let start = UInt64(UInt(bitPattern: address))
    let iova = iova ?? start
    try Registration.validate(
      address: start, length: length, iova: iova, access: access, context: raw.pointee.context)
    CRDMA_set_errno(0)
    guard let mr = ibv_reg_mr_iova2(raw, address, length, iova, access.rawValue) else {
      let code = CRDMA_errno()
      throw Registration.failure(
        operation: "ibv_reg_mr", errno: code, access: access, length: UInt64(length))
    }
    return (mr, iova)
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

/// The registration rules, checked in Swift so errors are precise, and the
/// translation of kernel errors into advice.
enum Registration {
  static let cpuPageSize: UInt64 = 4096

  static func checkAccess(_ access: MemoryAccess, operation: String) throws(VerbsError) {
    if !access.isDisjoint(with: [.remoteWrite, .remoteAtomic]) && !access.contains(.localWrite) {
      throw VerbsError(
        .invalidArgument, operation: operation, errno: EINVAL,
        message: "access \(access) asks for remote write or remote atomic without local-write; "
          + "the verbs rules require local-write with either, so add .localWrite",
        checkedBeforeCall: true)
    }
  }

  static func zeroLength(operation: String) -> VerbsError {
    VerbsError(
      .invalidArgument, operation: operation, errno: EINVAL,
      message: "the length is zero; a memory region covers at least one byte",
      checkedBeforeCall: true)
  }

  static func validate(
    address: UInt64, length: Int, iova: UInt64, access: MemoryAccess,
    context: UnsafeMutablePointer<ibv_context>?
  ) throws(VerbsError) {
    let op = "ibv_reg_mr"
    try checkAccess(access, operation: op)
    guard length > 0 else { throw zeroLength(operation: op) }
    let size = UInt64(length)
    let (end, overflow) = address.addingReportingOverflow(size)
    let (_, alignedOverflow) = end.addingReportingOverflow(cpuPageSize - 1)
    if overflow || alignedOverflow {
      throw VerbsError(
        .invalidArgument, operation: op, errno: EINVAL,
        message: "address 0x\(String(address, radix: 16)) plus length \(length) overflows "
          + "the 64-bit address space", checkedBeforeCall: true)
    }
    if iova.addingReportingOverflow(size - 1).overflow {
      throw VerbsError(
        .invalidArgument, operation: op, errno: EINVAL,
        message: "IOVA 0x\(String(iova, radix: 16)) plus length \(length) overflows 64 bits",
        checkedBeforeCall: true)
    }
    if address % cpuPageSize != iova % cpuPageSize {
      throw VerbsError(
        .invalidArgument, operation: op, errno: EINVAL,
        message: "the IOVA's offset in its 4 KiB page (0x\(String(iova % cpuPageSize, radix: 16))) "
          + "differs from the address's (0x\(String(address % cpuPageSize, radix: 16))); "
          + "the kernel requires them equal, so pick an IOVA with the same low 12 bits",
        checkedBeforeCall: true)
    }
    let pages = ((end + cpuPageSize - 1) / cpuPageSize) - address / cpuPageSize
    if pages > UInt64(UInt32.max) {
      throw VerbsError(
        .invalidArgument, operation: op, errno: EINVAL,
        message: "the range spans \(pages) pages; the kernel pins at most \(UInt32.max) per region",
        checkedBeforeCall: true)
    }
    if access.contains(.onDemand), let context {
      var attr = ibv_device_attr_ex()
      if ibv_query_device_ex(context, nil, &attr) == 0,
        attr.odp_caps.general_caps & UInt64(IBV_ODP_SUPPORT.rawValue) == 0
      {
        throw onDemandUnsupported(operation: op, errno: EOPNOTSUPP, checked: true)
      }
    }
  }

  static func onDemandUnsupported(operation: String, errno: Int32, checked: Bool) -> VerbsError {
    VerbsError(
      .notSupported, operation: operation, errno: errno,
      message: "on-demand paging (.onDemand) is not supported by this device "
        + "(its odp_caps report no ODP support); register without .onDemand to pin the memory",
      checkedBeforeCall: checked)
  }

  static func failure(
    operation: String, errno code: Int32, access: MemoryAccess, length: UInt64
  ) -> VerbsError {
    switch code {
    case ENOMEM:
      let status = MemoryLockStatus.current()
      return VerbsError(
        .memoryLockLimit, operation: operation, errno: code,
        message:
          "pinning \(length / 1024) KiB more would exceed the locked-memory limit: \(status). "
          + "Raise the limit (ulimit -l, or memlock in /etc/security/limits.conf), "
          + "give the process CAP_IPC_LOCK, or register less")
    case EPERM:
      let status = MemoryLockStatus.current()
      return VerbsError(
        .permissionDenied, operation: operation, errno: code,
        message: "the process may not pin memory: \(status). "
          + "Raise ulimit -l above 0 or grant CAP_IPC_LOCK")
    case EFAULT:
      return VerbsError(
        .notMapped, operation: operation, errno: code,
        message: "the range is not mapped, or is mapped in a way that cannot be pinned "
          + "(I/O or PFN mappings). Register only ordinary process memory; device memory "
          + "such as GPU buffers needs dma-buf registration (registerDMABuf)")
    case EACCES:
      return VerbsError(
        .permissionDenied, operation: operation, errno: code,
        message: "the pages are read-only but access \(access) needs them writable; "
          + "map the memory writable or drop the write flags")
    case EOPNOTSUPP, EPROTONOSUPPORT, ENOSYS:
      if access.contains(.onDemand) {
        return onDemandUnsupported(operation: operation, errno: code, checked: false)
      }
      return VerbsError(
        .notSupported, operation: operation, errno: code,
        message: "this operation is not supported by this device or its provider library")
    case EINVAL where access.contains(.onDemand):
      return onDemandUnsupported(operation: operation, errno: code, checked: false)
    default:
      return VerbsError(
        .other, operation: operation, errno: code,
        message: "the device rejected the registration (access \(access), \(length) bytes)")
    }
  }
}
