import Foundation
import TestSupport
import Testing
import UmemSystem

@testable import Verbs

/// Device tests: they run against a real RDMA device (rxe under `ci/rxe`).
/// Serialized, because the leak checks count this process's resources.
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct VerbsOnDevice {
  @Test func listsAndOpensTheDevice() throws {
    let devices = try Device.list()
    #expect(!devices.isEmpty)
    let context = try DeviceContext.open(name: DeviceLab.deviceName ?? devices[0].name)
    #expect(devices.contains { $0.name == context.name })
    let attributes = try context.attributes()
    #expect(attributes.pageSizeCapability != 0)
    #expect(attributes.maxMemoryRegions > 0)
    #expect(attributes.maxProtectionDomains > 0)
    #expect(attributes.maxQueuePairs > 0)
    #expect(attributes.portCount >= 1)
    let port = try context.port(1)
    #expect(port.state == .active)
    #expect(port.activeMTU >= 256)
    if port.linkLayer == .ethernet {
      let gids = try context.gids()
      #expect(gids.contains { $0.type == .roceV2 && $0.gid.ipv4Address != nil })
    }
  }

  @Test func rxeFacts() throws {
    let context = try DeviceLab.open()
    // The lab's device is rxe; elsewhere (a real HCA) these facts differ.
    guard context.name.hasPrefix("rxe") else {
      #expect(!DeviceLab.required, "the lab's device should be rxe, got \(context.name)")
      return
    }
    let attributes = try context.attributes()
    // Linux 6.1's rxe advertises 4K..2G; newer kernels advertise PAGE_SIZE.
    #expect(attributes.pageSizeCapability == 0xffff_f000 || attributes.pageSizeCapability == 0x1000)
    #expect(attributes.maxMemoryRegionSize == UInt64.max)
    let capabilities = try context.capabilities()
    #expect(!capabilities.dmabufRegistration)
    #expect(!capabilities.reregistration)
    // ODP as the device answers a real registration, not as the attributes
    // that capabilities() itself reads.
    try context.withProtectionDomain { pd in
      let buffer = try PageAlignedBuffer(byteCount: 4096)
      let registered = (try? pd.register(buffer, access: [.localWrite, .onDemand])) != nil
      #expect(capabilities.onDemandPaging == registered)
    }
    #expect(try context.port(1).linkLayer == .ethernet)
  }

  @Test func unknownDeviceNameIsAClearError() {
    let error = expectVerbsError(.deviceNotFound, operation: "ibv_open_device", errno: ENODEV) {
      _ = try DeviceContext.open(name: "no-such-device0")
    }
    #expect(error?.message.contains("no-such-device0") == true)
  }

  @Test func probesLeaveNothingBehind() throws {
    let context = try DeviceLab.open()
    try expectNoLeaks("capability probe") { _ = try context.capabilities() }
  }

  @Test func forkProtectionIsNotForcedWhenTheKernelMakesItUnneeded() throws {
    // Linux 5.13 and later keep DMA-pinned pages in the parent on fork
    // (copy on fork), so rdma-core reports fork protection as unneeded there:
    // checked against uname, not against the value itself.
    let after = try ForkProtection.enableIfNeeded()
    #expect(after == (KernelVersion.atLeast(5, 13) ? .unneeded : .enabled))
  }

  @Test(arguments: [
    MemoryAccess([]), .localWrite, [.localWrite, .remoteRead], [.localWrite, .remoteWrite],
    [.localWrite, .remoteAtomic], [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic],
    [.localWrite, .memoryWindowBind], [.localWrite, .relaxedOrdering],
  ])
  func registersWithAccess(_ access: MemoryAccess) throws {
    let context = try DeviceLab.open()
    try context.withProtectionDomain { pd in
      let buffer = try PageAlignedBuffer(byteCount: 64 << 10)
      try expectNoLeaks("register \(access)") {
        let mr = try pd.register(buffer, access: access)
        // The leak checks are only as good as the counter: it must see this MR.
        #expect(ResourceSnapshot.countOwn("mr") == 1)
        #expect(ResourceSnapshot.countOwn("pd") == 1)
        // And pinning must show: the kernel charges the MR's pages to VmPin.
        #expect(MemoryLockStatus.current().pinnedBytes >= 64 << 10)
        // (Address, length, IOVA and keys echo the arguments; that data
        // really moves through them is checked by movesDataAtAChosenIOVA.)
        try mr.deregister()
      }
    }
  }

  /// Data moves through regions at chosen IOVAs: a peer WRITEs to
  /// 0x10_0000_0000 + 4096 and the bytes land 4096 bytes into the buffer;
  /// a local entry at IOVA 0x5133 (inside a region registered at 0x5123)
  /// is read from buffer + 0x133. Wrong IOVA handling fails the transfers.
  @Test func movesDataAtAChosenIOVA() throws {
    let context = try DeviceLab.open()
    try expectNoLeaks("data at a chosen IOVA") {
      let pd = try context.allocateProtectionDomain()
      let cq = try context.createCompletionQueue(entries: 16)
      let a = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq)
      let b = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq)
      try a.connectLoopback(with: b)
      let all: MemoryAccess = [.localWrite, .remoteWrite, .remoteRead]
      let buffer = try PageAlignedBuffer(byteCount: 3 * 4096)
      let mr = try pd.register(buffer, access: all, iova: 0x10_0000_0000)
      #expect(mr.remote.address == 0x10_0000_0000)
      let source = try PageAlignedBuffer(byteCount: 8192)
      let sourceRegion = try pd.register(source, access: all)
      let pattern = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
      try source.copy(from: pattern)
      try a.postSend(
        .write(to: try mr.remote.advanced(by: 4096)),
        try sourceRegion.scatterGather(count: pattern.count), id: 1)
      try cq.wait(for: 1)[0].checkSuccess()
      #expect(try buffer.load(4096..<(4096 + pattern.count)) == pattern)
      #expect(try buffer.load(0..<4096).allSatisfy { $0 == 0 })
      // An unaligned interior registration keeps its page offset in the IOVA:
      // SEND 100 bytes from IOVA 0x5133, which is buffer + 0x133.
      let inner = try pd.unsafeRegister(
        UnsafeMutableRawBufferPointer(start: buffer.baseAddress + 0x123, count: 5000),
        access: .localWrite, iova: 0x5123)
      try buffer.copy(from: pattern.prefix(100), at: 0x133)
      try b.postReceive(try sourceRegion.scatterGather(offset: 4096, count: 4096), id: 2)
      try a.postSend(.send, try inner.scatterGather(offset: 0x10, count: 100), id: 3)
      let done = try cq.wait(for: 2)
      for completion in done { try completion.checkSuccess() }
      #expect(try source.load(4096..<4196) == Array(pattern.prefix(100)))
    }
  }

  @Test func dropReleasesEverything() throws {
    let context = try DeviceLab.open()
    try expectNoLeaks("drop") {
      try context.withProtectionDomain { pd in
        let buffer = try PageAlignedBuffer(byteCount: 1 << 20)
        for _ in 0..<20 { _ = try pd.register(buffer, access: .localWrite) }
      }
    }
  }

  // MARK: - Bad input: typed errors, nothing left behind
  // (Access, zero-length, overflow and IOVA-offset refusals are raised by our
  // own checks before any call into the kernel: VerbsHostTests covers them.)

  /// ODP as the device offers it: where it does not (rxe before Linux 6.15),
  /// a typed EOPNOTSUPP that says so; where it does, a registration that
  /// pins nothing.
  @Test func onDemandFollowsTheDevice() throws {
    let context = try DeviceLab.open()
    let supported = try context.attributes().onDemandPaging.supported
    try context.withProtectionDomain { pd in
      let buffer = try PageAlignedBuffer(byteCount: 1 << 20)
      try expectNoLeaks("ODP") {
        if supported {
          let pinnedBefore = ProcessStatus.current().pinnedBytes
          let mr = try pd.register(buffer, access: [.localWrite, .onDemand])
          #expect(mr.access.contains(.onDemand))
          #expect(ProcessStatus.current().pinnedBytes == pinnedBefore)
        } else {
          let error = expectVerbsError(.notSupported, operation: "ibv_reg_mr", errno: EOPNOTSUPP) {
            _ = try pd.register(buffer, access: [.localWrite, .onDemand])
          }
          #expect(error?.message.contains("not supported by this device") == true)
        }
      }
    }
  }

  @Test func unmappedMemoryIsEFAULT() throws {
    let context = try DeviceLab.open()
    try context.withProtectionDomain { pd in
      let length = 16 * 4096
      let hole = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
      munmap(hole, length)
      expectNoLeaks("EFAULT") {
        let error = expectVerbsError(.notMapped, operation: "ibv_reg_mr", errno: EFAULT) {
          _ = try pd.unsafeRegister(
            UnsafeMutableRawBufferPointer(start: hole, count: length), access: .localWrite)
        }
        #expect(error?.message.contains("not mapped") == true)
        #expect(error?.message.contains("dma-buf") == true)
      }
    }
  }

  @Test func dmabufAndReregistrationAreNotSupportedOnRXE() throws {
    let context = try DeviceLab.open()
    guard context.name.hasPrefix("rxe") else {
      #expect(!DeviceLab.required, "the lab's device should be rxe, got \(context.name)")
      return
    }
    try context.withProtectionDomain { pd in
      try expectNoLeaks("dmabuf and rereg") {
        expectVerbsError(.notSupported, operation: "ibv_reg_dmabuf_mr", errno: EOPNOTSUPP) {
          _ = try pd.registerDMABuf(fileDescriptor: -1, offset: 0, length: 4096, iova: 0)
        }
        let buffer = try PageAlignedBuffer(byteCount: 4096)
        var mr = try pd.register(buffer, access: .localWrite)
        let error = expectVerbsError(.notSupported, operation: "ibv_rereg_mr", errno: EOPNOTSUPP) {
          try mr.reregister(access: [.localWrite, .remoteRead])
        }
        #expect(error?.message.contains("not supported by this device") == true)
        #expect(mr.access == .localWrite)
      }
    }
  }

  /// ENOMEM from the memlock limit, in a child without CAP_IPC_LOCK (root
  /// would bypass the limit) and with `ulimit -l 64`.
  @Test func memlockLimitSaysWhatToDo() throws {
    let umem = TestTools.executable("umem")
    let script =
      "ulimit -l 64 && exec setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock "
      + "\(umem) register --size 1M"
    let result = TestTools.run(["bash", "-c", script])
    #expect(result.status == 1, "stdout: \(result.stdout) stderr: \(result.stderr)")
    #expect(result.stderr.contains("ENOMEM"), "\(result.stderr)")
    #expect(result.stderr.contains("RLIMIT_MEMLOCK soft 64 KiB, hard 64 KiB"), "\(result.stderr)")
    #expect(result.stderr.contains("VmPin"), "\(result.stderr)")
    #expect(result.stderr.contains("ulimit -l"), "\(result.stderr)")
    #expect(result.stderr.contains("CAP_IPC_LOCK"), "\(result.stderr)")
  }

  // MARK: - Data movement proves the registrations are real

  @Test func sendWriteReadAndAtomicsBetweenTwoQueuePairs() throws {
    let context = try DeviceLab.open()
    try expectNoLeaks("send, write, read and atomics") {
      let pd = try context.allocateProtectionDomain()
      let cqA = try context.createCompletionQueue(entries: 64)
      let cqB = try context.createCompletionQueue(entries: 64)
      let a = try pd.createQueuePair(sendCompletions: cqA, receiveCompletions: cqA)
      let b = try pd.createQueuePair(sendCompletions: cqB, receiveCompletions: cqB)
      try a.connectLoopback(with: b)

      let size = 128 << 10
      let bufferA = try PageAlignedBuffer(byteCount: size)
      let bufferB = try PageAlignedBuffer(byteCount: size)
      let all: MemoryAccess = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic]
      let mrA = try pd.register(bufferA, access: all)
      let mrB = try pd.register(bufferB, access: all, iova: 0x7000_0000_0000)

      // SEND/RECV.
      let message = Array("hello from A through a registered buffer".utf8)
      try bufferA.copy(from: message)
      try b.postReceive(mrB.scatterGather(offset: 0, count: 4096), id: 1)
      try a.postSend(.send, mrA.scatterGather(offset: 0, count: message.count), id: 2)
      let sent = try cqA.wait(for: 1)
      let received = try cqB.wait(for: 1)
      try sent[0].checkSuccess()
      try received[0].checkSuccess()
      #expect(received[0].opcode == .receive)
      #expect(received[0].byteLength == UInt32(message.count))
      #expect(try bufferB.load(0..<message.count) == message)

      // RDMA WRITE of a 32 KiB pattern into B at its custom IOVA.
      let pattern = (0..<(32 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
      try bufferA.copy(from: pattern, at: 4096)
      try a.postSend(
        .write(to: mrB.remote.advanced(by: 8192)),
        mrA.scatterGather(offset: 4096, count: pattern.count),
        id: 3)
      try cqA.wait(for: 1)[0].checkSuccess()
      #expect(try bufferB.load(8192..<(8192 + pattern.count)) == pattern)

      // RDMA READ it back into A elsewhere.
      try a.postSend(
        .read(from: mrB.remote.advanced(by: 8192)),
        mrA.scatterGather(offset: 40960, count: pattern.count),
        id: 4)
      try cqA.wait(for: 1)[0].checkSuccess()
      #expect(try bufferA.load(40960..<(40960 + pattern.count)) == pattern)

      // WRITE with immediate consumes a receive and carries the value.
      try b.postReceive(mrB.scatterGather(offset: 0, count: 0), id: 5)
      try a.postSend(
        .writeWithImmediate(to: mrB.remote, 0xC0FFEE), mrA.scatterGather(offset: 0, count: 16),
        id: 6)
      try cqA.wait(for: 1)[0].checkSuccess()
      let immediate = try cqB.wait(for: 1)
      #expect(immediate[0].immediate == 0xC0FFEE)
      #expect(immediate[0].opcode == .receiveRDMAWithImmediate)

      // Atomics on an 8-byte word of B.
      let wordOffset = 60000  // 8-byte aligned, as atomics require
      try bufferB.copy(
        from: withUnsafeBytes(of: UInt64(41).littleEndian, Array.init), at: wordOffset)
      let word = try mrB.remote.advanced(by: UInt64(wordOffset))
      try a.postSend(.fetchAndAdd(at: word, add: 1), mrA.scatterGather(offset: 0, count: 8), id: 7)
      try cqA.wait(for: 1)[0].checkSuccess()
      #expect(try bufferA.load(0..<8) == withUnsafeBytes(of: UInt64(41).littleEndian, Array.init))
      try a.postSend(
        .compareAndSwap(at: word, expected: 42, desired: 7), mrA.scatterGather(offset: 8, count: 8),
        id: 8)
      try cqA.wait(for: 1)[0].checkSuccess()
      #expect(try bufferA.load(8..<16) == withUnsafeBytes(of: UInt64(42).littleEndian, Array.init))
      #expect(
        try bufferB.load(wordOffset..<(wordOffset + 8))
          == withUnsafeBytes(of: UInt64(7).littleEndian, Array.init))

      // A bad rkey is a completion error, not a crash.
      try a.postSend(
        .write(to: RemoteBuffer(address: mrB.remote.address, length: 16, rkey: mrB.rkey ^ 0xff)),
        mrA.scatterGather(offset: 0, count: 16), id: 9)
      let failed = try cqA.wait(for: 1)
      #expect(!failed[0].status.isSuccess)
      #expect(throws: VerbsError.self) { try failed[0].checkSuccess() }
    }
  }

  @Test func waitingTimesOutWithoutSpinning() throws {
    let context = try DeviceLab.open()
    let cq = try context.createCompletionQueue(entries: 4)
    let cpuBefore = clock()
    let error = expectVerbsError(.timedOut, operation: "ibv_get_cq_event", errno: ETIMEDOUT) {
      _ = try cq.wait(for: 1, timeout: .milliseconds(300))
    }
    let cpuSeconds = Double(clock() - cpuBefore) / Double(CLOCKS_PER_SEC)
    #expect(error?.message.contains("0 of 1") == true)
    #expect(cpuSeconds < 0.15, "waiting burned \(cpuSeconds) s of CPU")
  }
}
