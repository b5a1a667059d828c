import Glibc
import TestSupport
import Testing
import UmemSystem

@testable import Verbs

/// Tests that need no RDMA device.
@Suite struct MemoryAccessTests {
  @Test func parsesEveryNamedFlag() throws {
    for entry in MemoryAccess.named {
      #expect(MemoryAccess(parsing: entry.name) == entry.access)
      #expect(entry.access.description == entry.name)
    }
    #expect(MemoryAccess(parsing: "local-write, remote-read") == [.localWrite, .remoteRead])
    #expect(MemoryAccess(parsing: "none") == [])
    #expect(MemoryAccess(parsing: "") == [])
    #expect(MemoryAccess(parsing: "local-writ") == nil)
    #expect(MemoryAccess([]).description == "none")
  }

  @Test func matchesTheCValues() {
    #expect(MemoryAccess.localWrite.rawValue == 1)
    #expect(MemoryAccess.remoteWrite.rawValue == 2)
    #expect(MemoryAccess.remoteRead.rawValue == 4)
    #expect(MemoryAccess.remoteAtomic.rawValue == 8)
    #expect(MemoryAccess.memoryWindowBind.rawValue == 16)
    #expect(MemoryAccess.zeroBased.rawValue == 32)
    #expect(MemoryAccess.onDemand.rawValue == 64)
    #expect(MemoryAccess.hugeTLB.rawValue == 128)
    #expect(MemoryAccess.relaxedOrdering.rawValue == 1 << 20)
  }

  @Test func writablePagesFollowTheKernelRule() {
    #expect(!MemoryAccess([]).needsWritablePages)
    #expect(!MemoryAccess.remoteRead.needsWritablePages)
    for flag in [MemoryAccess.localWrite, .remoteWrite, .remoteAtomic, .memoryWindowBind] {
      #expect(flag.needsWritablePages)
    }
  }
}

@Suite struct RegistrationRuleTests {
  let page: UInt64 = 4096

  @Test(arguments: [MemoryAccess.remoteWrite, .remoteAtomic, [.remoteWrite, .remoteRead]])
  func remoteWriteNeedsLocalWrite(access: MemoryAccess) {
    let error = expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      try Registration.validate(
        address: 0x10000, length: 4096, iova: 0x10000, access: access, context: nil)
    }
    #expect(error?.checkedBeforeCall == true)
    #expect(error?.message.contains("local-write") == true)
  }

  @Test func zeroLengthIsRejected() {
    expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      try Registration.validate(
        address: 0x10000, length: 0, iova: 0x10000, access: .localWrite, context: nil)
    }
  }

  @Test func overflowIsRejected() {
    let error = expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      try Registration.validate(
        address: UInt64.max - 100, length: 4096, iova: 0x1000, access: [], context: nil)
    }
    #expect(error?.message.contains("overflows") == true)
    // The page-aligned end overflowing counts too.
    expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      try Registration.validate(
        address: UInt64.max - 4096, length: 4090, iova: 0x1000, access: [], context: nil)
    }
    // And the IOVA range.
    expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      try Registration.validate(
        address: 0x1000, length: 8192, iova: UInt64.max - 4095, access: [], context: nil)
    }
  }

  @Test func iovaPageOffsetMustMatch() {
    let error = expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      try Registration.validate(address: 0x10100, length: 64, iova: 0x200, access: [], context: nil)
    }
    #expect(error?.message.contains("IOVA") == true)
    #expect(throws: Never.self) {
      try Registration.validate(
        address: 0x10100, length: 64, iova: 0x7000100, access: [], context: nil)
    }
  }

  /// Found by ci/fuzz in Umem's twin of this check: a range ending at
  /// 0xffff_ffff_ffff_f000 passed the overflow check, then rounding it up
  /// to a page trapped. Now it is checked arithmetic all the way.
  @Test func rangeEndingInTheLastPageDoesNotTrap() throws {
    try Registration.validate(
      address: 0xffff_ffff_ffff_e000, length: 0x1000, iova: 0xffff_ffff_ffff_e000,
      access: .localWrite, context: nil)
    expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      try Registration.validate(
        address: 0xffff_ffff_ffff_f000, length: 0x1000, iova: 0x1000, access: .localWrite,
        context: nil)
    }
  }

  @Test func kernelErrorsBecomeAdvice() {
    let limited = MemoryLockStatus(
      softLimit: 8 << 20, hardLimit: 8 << 20, pinnedBytes: 7 << 20, lockedBytes: 0)
    let memlock = Registration.failure(
      operation: "ibv_reg_mr", errno: ENOMEM, access: .localWrite, address: 0x1000,
      length: 2 << 20, status: limited)
    #expect(memlock.code == .memoryLockLimit)
    #expect(memlock.message.contains("RLIMIT_MEMLOCK"))
    #expect(memlock.message.contains("ulimit -l"))
    #expect(memlock.message.contains("CAP_IPC_LOCK"))
    #expect(memlock.message.contains("VmPin"))
    // ENOMEM with room under the limit, no limit, or CAP_IPC_LOCK is not a
    // memlock problem, and the message must not send the user to ulimit.
    for status in [
      limited.with(pinned: 0),
      MemoryLockStatus(softLimit: nil, hardLimit: nil, pinnedBytes: 1 << 30, lockedBytes: 0),
      MemoryLockStatus(
        softLimit: 8 << 20, hardLimit: 8 << 20, pinnedBytes: 7 << 20, lockedBytes: 0,
        mayExceedLimit: true),
    ] {
      let other = Registration.failure(
        operation: "ibv_reg_mr", errno: ENOMEM, access: .localWrite, address: 0x1000,
        length: 2 << 20, status: status)
      #expect(other.code == .resourceExhausted, "\(status)")
      #expect(other.message.contains("not the cause"))
      #expect(!other.message.contains("ulimit -l"))
    }
    let fault = Registration.failure(
      operation: "ibv_reg_mr", errno: EFAULT, access: .localWrite, address: nil, length: 4096)
    #expect(fault.code == .notMapped)
    #expect(fault.message.contains("dma-buf"))
    let odp = Registration.failure(
      operation: "ibv_reg_mr", errno: EINVAL, access: [.localWrite, .onDemand], address: nil,
      length: 4096)
    #expect(odp.code == .notSupported)
    #expect(odp.message.contains("not supported by this device"))
    #expect(odp.description.hasPrefix("ibv_reg_mr failed: EINVAL"))
  }
}

@Suite struct ValueTypeTests {
  @Test func gidFormatsAndMapsIPv4() {
    let gid = GID(bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1])
    #expect(gid.ipv4Address == "198.18.0.1")
    #expect(gid.description == "0000:0000:0000:0000:0000:ffff:c612:0001")
    let link = GID(bytes: [0xfe, 0x80] + Array(repeating: 0, count: 14))
    #expect(link.ipv4Address == nil)
    #expect(!link.isZero)
  }

  @Test func procStatusCountersParse() {
    let text =
      "Name:\tswift\nVmLck:\t    1024 kB\nVmPin:\t      64 kB\nThreads:\t4\nVmRSS:\t  300 kB\n"
    let counters = ProcessStatus.parse(text + "CapEff:\t0000000000004000\n")
    #expect(counters.lockedBytes == 1024 * 1024)
    #expect(counters.pinnedBytes == 64 * 1024)
    #expect(counters.has(capability: ProcessStatus.ipcLock))
    #expect(!counters.has(capability: ProcessStatus.sysAdmin))
    // A nonsense counter is ignored rather than overflowing.
    #expect(ProcessStatus.parse("VmPin:\t99999999999999999999 kB\n").pinnedBytes == 0)
    #expect(ProcessStatus.parse("VmPin:\t18014398509481984 kB\n").pinnedBytes == 0)
  }

  @Test func guidFormat() {
    #expect(Device.format(guid: 0x0250_56ff_fe8a_1b2c) == "0250:56ff:fe8a:1b2c")
    #expect(Device.format(guid: 1) == "0000:0000:0000:0001")
  }

  @Test func bufferIsAlignedAndZeroed() throws {
    let buffer = try PageAlignedBuffer(byteCount: 10_000)
    #expect(buffer.address % UInt64(PageAlignedBuffer.pageSize) == 0)
    #expect(try buffer.load(0..<10_000).allSatisfy { $0 == 0 })
    try buffer.copy(from: [1, 2, 3], at: 9_997)
    #expect(try buffer.load(9_997..<10_000) == [1, 2, 3])
    #expect(buffer.bytes.byteCount == 10_000)
    let huge = try PageAlignedBuffer(byteCount: 4096, alignment: 2 << 20)
    #expect(huge.address % (2 << 20) == 0)
  }

  @Test func bufferRejectsBadSizes() {
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EINVAL) {
      _ = try PageAlignedBuffer(byteCount: 0)
    }
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EINVAL) {
      _ = try PageAlignedBuffer(byteCount: 4096, alignment: 3000)
    }
  }

  @Test(.enabled(if: !DeviceLab.shouldRun))
  func noDevicesIsAClearError() {
    do {
      _ = try DeviceContext.open()
      Issue.record("opened a device on a machine without RDMA")
    } catch {
      #expect(error.code == .noDevices)
      #expect([ENOSYS, ENODEV].contains(error.errno))
      #expect(error.message.contains("ci/rxe"))
    }
  }
}

extension MemoryLockStatus {
  fileprivate func with(pinned: UInt64) -> MemoryLockStatus {
    var copy = self
    copy.pinnedBytes = pinned
    return copy
  }
}
