internal import CRDMA
internal import UmemSystem

#if canImport(Glibc)
  import Glibc
#endif

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
    // `end + (cpuPageSize - 1)` was checked above not to overflow; adding
    // the page size first would (a range ending at 0xffff_ffff_ffff_f000).
    let pages = ((end + (cpuPageSize - 1)) / cpuPageSize) - address / cpuPageSize
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

  /// The first byte of `memory` as an integer, or the error for a buffer
  /// without one (an empty buffer has no base address).
  static func start(of memory: UnsafeMutableRawBufferPointer) throws(VerbsError)
    -> UnsafeMutableRawPointer
  {
    guard let base = memory.baseAddress, memory.count > 0 else {
      throw zeroLength(operation: "ibv_reg_mr")
    }
    return base
  }

  /// Turns a failed registration's errno into advice. `address` (nil for a
  /// dma-buf) lets EFAULT name the mapping that could not be pinned.
  static func failure(
    operation: String, errno code: Int32, access: MemoryAccess, address: UInt64?, length: UInt64,
    status: @autoclosure () -> MemoryLockStatus = MemoryLockStatus.current()
  ) -> VerbsError {
    switch code {
    case ENOMEM:
      let status = status()
      guard status.limitsPinning(more: length) else {
        return VerbsError(
          .resourceExhausted, operation: operation, errno: code,
          message: "the kernel or device ran out of memory for \(length / 1024) KiB "
            + "(the locked-memory limit is not the cause: \(status)). The device's tables may "
            + "be full (see attributes().maxMemoryRegions) or the machine short of memory; "
            + "register less or release regions")
      }
      return VerbsError(
        .memoryLockLimit, operation: operation, errno: code,
        message:
          "pinning \(length / 1024) KiB more would exceed the locked-memory limit: \(status). "
          + "Raise the limit (ulimit -l, or memlock in /etc/security/limits.conf), "
          + "give the process CAP_IPC_LOCK, or register less")
    case EPERM:
      let status = status()
      return VerbsError(
        .permissionDenied, operation: operation, errno: code,
        message: "the process may not pin memory: \(status). "
          + "Raise ulimit -l above 0 or grant CAP_IPC_LOCK")
    case EFAULT:
      if let address, let mapping = MemoryMapping.readOnlyShared(in: address, length: length) {
        return VerbsError(
          .permissionDenied, operation: operation, errno: code,
          message: "the range includes a read-only shared mapping (\(mapping)). "
            + (access.needsWritablePages
              ? "Access \(access) needs writable pages: map it PROT_READ|PROT_WRITE "
                + "(open the file O_RDWR) or register with read-only access such as [.remoteRead]"
              : "Kernels before 6.2 pin every registration for write (FOLL_FORCE), which a "
                + "read-only shared mapping refuses: map it PROT_READ|PROT_WRITE (open the file "
                + "O_RDWR), or run Linux 6.2 or later, which pins read-only registrations "
                + "read-only"))
      }
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
