// The Umem module: real user memory, pinned, described as a phyr list, and
// registered with a plan. What lives where:
//   Umem.swift              pinning (mlock + fault-in) and unpinning
//   PinLedger.swift         per-page hold counts, since mlock does not count
//   UmemError.swift         the typed error
//   Syscalls.swift          every libc call, wrapped once
//   Pagemap.swift           /proc/self/pagemap reading and decoding
//   UmemLayout.swift        the result: phyrs, flags, not-present pages, verify
//   Backing.swift           which page size backs each range (smaps, kpageflags)
//   UmemBuffer.swift        allocation helpers: pages, THP, hugetlbfs
//   RegistrationPlan.swift  page size, blocks, IOVA and table cost
//   Registration.swift      registering a umem through Verbs with its plan
internal import UmemSystem
import Verbs

#if canImport(Glibc)
  import Glibc
#endif

/// User memory pinned for RDMA: locked in RAM and faulted in, so its pages
/// stay where they are while it is held.
///
/// A `Umem` is the user-space mirror of the kernel's `ib_umem`: it applies
/// `ib_umem_get`'s checks before calling C, locks the page-aligned range with
/// `mlock` (charged to `VmLck` and `RLIMIT_MEMLOCK`), and for writable access
/// faults every page in for writing so no copy-on-write can move it later.
/// It is released exactly once: when dropped, or by ``unpin()``, which
/// reports errors. Holds are counted per page, so overlapping umems do not
/// unlock each other's memory.
///
/// A umem borrows the buffer it pins, so it cannot outlive it.
///
/// ```swift
/// let buffer = try UmemBuffer(byteCount: 64 << 20, backing: .transparentHuge)
/// let umem = try Umem(pinning: buffer, access: [.localWrite, .remoteRead])
/// let layout = try umem.resolve()        // the phyr list
/// let plan = try layout.plan(pageSizes: .mlx5, iova: .any)
/// ```
///
/// `mlock` keeps pages resident but is not the long-term DMA pin that
/// `ibv_reg_mr` takes (`FOLL_LONGTERM`); in particular a `fork()` still
/// shares locked pages copy-on-write, so a write in the parent while a child
/// lives moves the parent's page (``verify(_:)`` reports it). Registered
/// memory is copied into the child at fork instead (Linux 5.13 and later).
public struct Umem: ~Copyable, ~Escapable {
  /// The address of the first byte.
  public let address: UInt64
  /// The length in bytes.
  public let length: UInt64
  /// The locked page-aligned range `[lockStart, lockEnd)`.
  let lockStart: UInt64
  let lockEnd: UInt64
  let accessBits: UInt32

  /// Pins `length` bytes of `buffer` starting `offset` bytes in (all of it
  /// by default).
  @_lifetime(borrow buffer)
  public init(
    pinning buffer: borrowing UmemBuffer, offset: Int = 0, length: Int? = nil,
    access: MemoryAccess = .localWrite
  ) throws(UmemError) {
    // Offset first: with 0 <= offset <= byteCount, byteCount - offset cannot overflow.
    let inside = offset >= 0 && offset <= buffer.byteCount
    let count = length ?? (inside ? buffer.byteCount - offset : 0)
    guard inside, count >= 0, count <= buffer.byteCount - offset else {
      throw UmemError(
        .invalidArgument, operation: "mlock", errno: EINVAL,
        message:
          "offset \(offset) and length \(count) fall outside the \(buffer.byteCount)-byte buffer",
        checkedBeforeCall: true)
    }
    // Inside the mapped buffer, so this is a valid address.
    let start = buffer.address + UInt64(offset)
    let range = try Self.pin(address: start, length: UInt64(count), access: access)
    self.address = start
    self.length = UInt64(count)
    self.lockStart = range.start
    self.lockEnd = range.end
    self.accessBits = access.rawValue
  }

  /// Pins all of a Verbs ``PageAlignedBuffer``.
  @_lifetime(borrow buffer)
  public init(pinning buffer: borrowing PageAlignedBuffer, access: MemoryAccess = .localWrite)
    throws(UmemError)
  {
    let range = try Self.pin(address: buffer.address, length: UInt64(buffer.count), access: access)
    self.address = buffer.address
    self.length = UInt64(buffer.count)
    self.lockStart = range.start
    self.lockEnd = range.end
    self.accessBits = access.rawValue
  }

  /// Pins memory the caller owns and keeps mapped for as long as the umem
  /// exists: any address and length, as `ibv_reg_mr` accepts.
  @_lifetime(immortal)
  public init(unsafeAddress address: UInt64, length: UInt64, access: MemoryAccess = .localWrite)
    throws(UmemError)
  {
    let range = try Self.pin(address: address, length: length, access: access)
    self.address = address
    self.length = length
    self.lockStart = range.start
    self.lockEnd = range.end
    self.accessBits = access.rawValue
  }

  deinit { _ = Self.unpin(lockStart, lockEnd) }

  /// Unpins now and reports failure. The C function is `munlock`.
  public consuming func unpin() throws(UmemError) {
    let start = lockStart
    let end = lockEnd
    discard self
    let code = Self.unpin(start, end)
    if code != 0 {
      throw UmemError(
        .other, operation: "munlock", errno: code,
        message: "the range could not be unlocked; was it unmapped while pinned?")
    }
  }

  /// The access the umem was pinned for.
  public var access: MemoryAccess { MemoryAccess(rawValue: accessBits) }

  /// Whether the pages were faulted in for writing (`ib_umem_get`'s rule:
  /// any of local write, remote write, remote atomic, memory-window bind).
  public var isWritable: Bool { Self.isWritable(access) }

  /// The number of CPU pages pinned.
  public var pageCount: Int { Int((lockEnd - lockStart) >> cpuPageShift) }

  static func isWritable(_ access: MemoryAccess) -> Bool {
    !access.isDisjoint(with: [.localWrite, .remoteWrite, .remoteAtomic, .memoryWindowBind])
  }

  // MARK: - Pinning

  /// The checks of `ib_umem_get`, then `mlock` and the write fault-in.
  static func pin(address: UInt64, length: UInt64, access: MemoryAccess)
    throws(UmemError) -> (start: UInt64, end: UInt64)
  {
    let range = try check(address: address, length: length, access: access)
    let writable = isWritable(access)
    var failure: UmemError? = nil
    let code = PinLedger.shared.acquire(range.start, range.end) { fresh, counted in
      // Pages the application locked itself stay its own: not locked again
      // (nor charged twice against the limit), never unlocked by unpin().
      let status = ProcessStatus.current()
      let lockedBefore = status.lockedBytes
      var external: [(UInt64, UInt64)] = []
      if lockedBefore > counted {
        do throws(UmemError) {
          external = try applicationLocked(in: fresh)
        } catch {
          failure = error
          return PinLedger.LockOutcome(code: error.errno)
        }
      }
      let toLock = PinLedger.subtracting(external, from: fresh)
      if let error = checkLimit(adding: toLock.reduce(0) { $0 + ($1.1 - $1.0) }, own: status) {
        failure = error
        return PinLedger.LockOutcome(code: error.errno)
      }
      var done: [(UInt64, UInt64)] = []
      for (start, end) in toLock {
        let code = system_mlock(start, end - start)
        if code != 0 {
          for (s, e) in done { _ = system_munlock(s, e - s) }
          failure = mlockFailure(code, start: start, end: end)
          return PinLedger.LockOutcome(code: code)
        }
        done.append((start, end))
      }
      let lockedAfter = done.isEmpty ? lockedBefore : ProcessStatus.current().lockedBytes
      return PinLedger.LockOutcome(
        code: 0, applicationLocked: external,
        countedBytes: lockedAfter > lockedBefore ? lockedAfter - lockedBefore : 0)
    }
    if code != 0 {
      throw failure
        ?? UmemError(.other, operation: "mlock", errno: code, message: "locking failed")
    }
    if writable {
      let populate = system_madvise(range.start, range.end - range.start, Advice.populateWrite)
      if populate == EINVAL && !KernelVersion.atLeast(5, 14) {
        // Before Linux 5.14: touch each page (read it and write the same byte back).
        touchForWriting(range.start, range.end)
      } else if populate != 0 {
        _ = unpin(range.start, range.end)
        // Linux reports incompatible mappings or permissions as EINVAL
        // (older kernels: EFAULT), and holes as ENOMEM.
        let denied = populate == EINVAL || populate == EFAULT
        throw UmemError(
          denied ? .permissionDenied : .notMapped,
          operation: "madvise(MADV_POPULATE_WRITE)", errno: populate,
          message: denied
            ? "the pages cannot be faulted in for writing (a read-only, inaccessible, I/O or "
              + "PFN mapping); map the memory writable, or pin it without write access"
            : "part of the range is not mapped; pin only mapped process memory")
      }
    }
    return range
  }

  /// `ib_umem_get`'s argument rules, checked in Swift so errors are precise.
  static func check(address: UInt64, length: UInt64, access: MemoryAccess)
    throws(UmemError) -> (start: UInt64, end: UInt64)
  {
    let op = "mlock"
    if !access.isDisjoint(with: [.remoteWrite, .remoteAtomic]) && !access.contains(.localWrite) {
      throw UmemError(
        .invalidArgument, operation: op, errno: EINVAL,
        message: "access \(access) asks for remote write or remote atomic without local-write; "
          + "add .localWrite", checkedBeforeCall: true)
    }
    if access.contains(.onDemand) {
      throw UmemError(
        .invalidArgument, operation: op, errno: EINVAL,
        message: "on-demand access (.onDemand) does not pin memory; pin without it, "
          + "or register with .onDemand directly", checkedBeforeCall: true)
    }
    guard length > 0 else {
      throw UmemError(
        .invalidArgument, operation: op, errno: EINVAL,
        message: "the length is zero; pin at least one byte", checkedBeforeCall: true)
    }
    let (end, overflow) = address.addingReportingOverflow(length)
    let (_, alignedOverflow) = end.addingReportingOverflow(cpuPageSize - 1)
    if overflow || alignedOverflow {
      throw UmemError(
        .invalidArgument, operation: op, errno: EINVAL,
        message: "address 0x\(String(address, radix: 16)) plus length \(length) overflows "
          + "the 64-bit address space", checkedBeforeCall: true)
    }
    // Both checked just above.
    let start = address & ~(cpuPageSize - 1)
    let alignedEnd = (end + (cpuPageSize - 1)) & ~(cpuPageSize - 1)
    let pages = (alignedEnd - start) >> cpuPageShift
    if pages > UInt64(UInt32.max) {
      throw UmemError(
        .invalidArgument, operation: op, errno: EINVAL,
        message: "the range spans \(pages) pages; the kernel pins at most \(UInt32.max) per region",
        checkedBeforeCall: true)
    }
    return (start, alignedEnd)
  }

  /// The memlock check, before `mlock`: a zero limit is EPERM, going over it
  /// is ENOMEM, both unless the process has `CAP_IPC_LOCK`.
  /// `own` is this process's `/proc/self/status` (capability and VmLck), read once.
  static func checkLimit(adding bytes: UInt64, own: ProcessStatus) -> UmemError? {
    guard bytes > 0, let soft = memlockSoftLimit() else { return nil }
    guard !own.has(capability: ProcessStatus.ipcLock) else { return nil }
    let advice =
      "Raise the limit (ulimit -l, or memlock in /etc/security/limits.conf), "
      + "give the process CAP_IPC_LOCK, or pin less"
    if soft == 0 {
      return UmemError(
        .memoryLockLimit, operation: "mlock", errno: EPERM,
        message: "the process may not lock memory: \(MemoryLockStatus.current()). \(advice)",
        checkedBeforeCall: true)
    }
    // Compared as a difference: VmLck is clamped to UInt64.max if ever unreadable as bytes.
    if bytes > soft || own.lockedBytes > soft - bytes {
      return UmemError(
        .memoryLockLimit, operation: "mlock", errno: ENOMEM,
        message: "locking \(bytes / 1024) KiB more would exceed the locked-memory limit "
          + "(\(soft / 1024) KiB allowed, \(own.lockedBytes / 1024) KiB locked): \(MemoryLockStatus.current()). "
          + advice, checkedBeforeCall: true)
    }
    return nil
  }

  static func mlockFailure(_ code: Int32, start: UInt64, end: UInt64) -> UmemError {
    switch code {
    case ENOMEM:
      return UmemError(
        .notMapped, operation: "mlock", errno: code,
        message: "part of 0x\(String(start, radix: 16))..0x\(String(end, radix: 16)) is not mapped "
          + "(or the memlock limit was reached meanwhile: \(MemoryLockStatus.current())); "
          + "pin only mapped process memory")
    case EPERM:
      return UmemError(
        .memoryLockLimit, operation: "mlock", errno: code,
        message: "the process may not lock memory: \(MemoryLockStatus.current()). "
          + "Raise ulimit -l above 0 or grant CAP_IPC_LOCK")
    case EAGAIN:
      return UmemError(
        .notMapped, operation: "mlock", errno: code,
        message: "some pages could not be locked (I/O or PFN mappings cannot be pinned; "
          + "device memory needs dma-buf registration)")
    default:
      return UmemError(.other, operation: "mlock", errno: code, message: "locking failed")
    }
  }

  /// Faults each page in for writing by rewriting one byte of it. Only for
  /// kernels without `MADV_POPULATE_WRITE`; racy against concurrent writers.
  /// Unoptimised so the store of an unchanged byte is not removed.
  @inline(never) @_optimize(none)
  static func touchForWriting(_ start: UInt64, _ end: UInt64) {
    var page = start
    while page < end {
      if let pointer = UnsafeMutablePointer<UInt8>(bitPattern: UInt(page)) {
        pointer.pointee = pointer.pointee
      }
      page += cpuPageSize
    }
  }

  /// Drops this umem's hold and unlocks the pages nobody holds any more,
  /// except those the application had locked itself.
  static func unpin(_ start: UInt64, _ end: UInt64) -> Int32 {
    PinLedger.shared.release(start, end) { freed in
      guard !freed.isEmpty else { return (0, 0) }
      let before = ProcessStatus.current().lockedBytes
      var first: Int32 = 0
      for (s, e) in freed {
        let code = system_munlock(s, e - s)
        if first == 0 { first = code }
      }
      let after = ProcessStatus.current().lockedBytes
      return (first, before > after ? before - after : 0)
    }
  }

  /// The parts of `ranges` in mappings the process has locked (`lo` in
  /// `/proc/self/smaps`' `VmFlags`). Read only when `VmLck` shows more
  /// locked memory than the umems locked themselves.
  static func applicationLocked(in ranges: [(UInt64, UInt64)]) throws(UmemError)
    -> [(UInt64, UInt64)]
  {
    guard let low = ranges.first?.0, let high = ranges.last?.1 else { return [] }
    let locked = try SmapsMapping.read(overlapping: low, high).filter(\.locked)
    guard !locked.isEmpty else { return [] }
    let unlocked = PinLedger.subtracting(locked.map { ($0.start, $0.end) }, from: ranges)
    return PinLedger.subtracting(unlocked, from: ranges)
  }
}
