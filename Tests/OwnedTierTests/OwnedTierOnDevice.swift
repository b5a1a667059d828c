import Foundation
import Synchronization
import TestSupport
import Testing
import UmemSystem
import Verbs

/// The owned tier on a real device (rxe under `ci/rxe`): applications'
/// patterns, many threads and Tasks on one domain and one queue pair, the
/// closing rules, and memory the application already has. Serialized: the
/// leak checks count this process's resources.
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct OwnedTierOnDevice {
  static let all: MemoryAccess = [.localWrite, .remoteWrite, .remoteRead]

  /// Two queue pairs on `pd`, connected to each other, sharing one queue.
  /// Keep both: in the owned tier a queue pair that is dropped is destroyed
  /// at once, and its peer's requests then go unanswered.
  struct Loopback {
    let a: SharedQueuePair
    let b: SharedQueuePair
    let cq: SharedCompletionQueue
  }

  static func loopback(_ pd: SharedProtectionDomain, sendRequests: Int = 64) throws -> Loopback {
    let cq = try pd.context.createCompletionQueue(entries: 4096)
    let capacity = QueuePairCapacity(sendRequests: sendRequests, receiveRequests: 16)
    let a = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq, capacity: capacity)
    let b = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq, capacity: capacity)
    try a.connectLoopback(with: b)
    return Loopback(a: a, b: b, cq: cq)
  }

  static func pattern(_ count: Int, seed: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed &* 7 &+ 1) }
  }

  @Test func communicatorAndActorKeepRegistrationsAcrossTasks() async throws {
    try await expectNoLeaks("communicator") {
      let before = ResourceSnapshot.take()
      let communicator = try Communicator(device: DeviceLab.deviceName)
      try await withThrowingTaskGroup(of: Void.self) { group in
        for i in 0..<16 {
          group.addTask {
            _ = try await communicator.pool.region(
              "r\(i % 8)", bytes: 64 << 10, access: Self.all)
          }
        }
        try await group.waitForAll()
      }
      #expect(await communicator.pool.count == 8)
      var regions: [SharedMemoryRegion] = []
      for i in 0..<8 {
        regions.append(try await communicator.pool.region("r\(i)", bytes: 0, access: []))
      }
      #expect(await keysFromTasks(regions).count == 8)
      let during = ResourceSnapshot.take()
      #expect(during.memoryRegions == before.memoryRegions + 8, "\(during)")
      #expect(during.pinnedBytes >= before.pinnedBytes + 8 * (64 << 10), "\(during)")
      // Dropping one from the actor and the local array deregisters it.
      regions.removeAll()
      #expect(await communicator.pool.remove("r0") != nil)
      #expect(ResourceSnapshot.take().memoryRegions == before.memoryRegions + 7)
    }
  }

  @Test func regionOutlivesTheFunctionThatMadeItAndMovesData() throws {
    try expectNoLeaks("region from a function") {
      let region = try makeRegion(device: DeviceLab.deviceName, bytes: 64 << 10)
      // Its domain and context are alive only through the region.
      let link = try Self.loopback(region.domain)
      let source = try SharedBuffer(byteCount: 64 << 10)
      let sourceRegion = try region.domain.register(source, access: Self.all)
      let data = Self.pattern(40_000, seed: 3)
      try source.copy(from: data)
      try link.a.postSend(
        .write(to: try region.remote.advanced(by: 4096)),
        try sourceRegion.scatterGather(count: data.count), id: 1)
      try link.cq.wait(for: 1)[0].checkSuccess()
      #expect(try region.memory!.load(4096..<(4096 + data.count)) == data)
      // And back with a READ into the other half of the source.
      try link.a.postSend(
        .read(from: region.remote), try sourceRegion.scatterGather(offset: 0, count: 4096), id: 2)
      try link.cq.wait(for: 1)[0].checkSuccess()
      #expect(try source.load(0..<4096) == [UInt8](repeating: 0, count: 4096))
    }
  }

  @Test func eightThreadsRegisterAndDeregisterOnOneDomain() throws {
    let threads = 8
    let cycles = Int(ProcessInfo.processInfo.environment["UMEM_OWNED_CYCLES"] ?? "") ?? 5000
    let before = ResourceSnapshot.take()
    do {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let pd = try context.allocateProtectionDomain()
      let failures = Mutex<[String]>([])
      let done = Atomic<Int>(0)
      let start = ContinuousClock.now
      runOnThreads(threads) { thread in
        do {
          let buffer = try SharedBuffer(byteCount: 4096)
          for _ in 0..<cycles {
            let region = try pd.register(buffer, access: Self.all)
            try region.close()
            done.add(1, ordering: .relaxed)
          }
        } catch {
          failures.withLock { $0.append("thread \(thread): \(error)") }
        }
      }
      let elapsed = ContinuousClock.now - start
      #expect(failures.withLock { $0 } == [])
      #expect(done.load(ordering: .relaxed) == threads * cycles)
      let seconds =
        Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
      print(
        "owned tier: \(threads) threads x \(cycles) register+close: \(elapsed), "
          + "\(Int(Double(threads * cycles) / seconds)) per second")
      let during = ResourceSnapshot.take()
      #expect(during.memoryRegions == before.memoryRegions, "\(during)")
      #expect(during.pinnedBytes == before.pinnedBytes, "\(during)")
      try pd.close()
      try context.close()
    }
    let after = ResourceSnapshot.take()
    #expect(after == before, "before \(before), after \(after)")
  }

  @Test func eightTasksPostWritesOnOneQueuePair() async throws {
    try await expectNoLeaks("tasks on one QP") {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let pd = try context.allocateProtectionDomain()
      let link = try Self.loopback(pd, sendRequests: 512)
      let tasks = 8
      let writes = 16
      let slice = writes * 4096
      let target = try pd.register(SharedBuffer(byteCount: tasks * slice), access: Self.all)
      var sources: [SharedMemoryRegion] = []
      for t in 0..<tasks {
        let buffer = try SharedBuffer(byteCount: slice)
        try buffer.copy(from: Self.pattern(slice, seed: t + 1))
        sources.append(try pd.register(buffer, access: Self.all))
      }
      try await withThrowingTaskGroup(of: Void.self) { group in
        for (t, source) in sources.enumerated() {
          group.addTask {
            for k in 0..<writes {
              let offset = k * 4096
              try link.a.postSend(
                .write(to: try target.remote.advanced(by: UInt64(t * slice + offset))),
                try source.scatterGather(offset: offset, count: 4096),
                id: UInt64(t << 16 | k))
            }
          }
        }
        try await group.waitForAll()
      }
      let completions = try link.cq.wait(for: tasks * writes, timeout: .seconds(60))
      for completion in completions { try completion.checkSuccess() }
      #expect(Set(completions.map(\.id)).count == tasks * writes)
      for t in 0..<tasks {
        #expect(
          try target.memory!.load((t * slice)..<((t + 1) * slice))
            == Self.pattern(slice, seed: t + 1), "task \(t)'s slice")
      }
    }
  }

  @Test func closingFollowsChildrenBeforeParents() throws {
    try expectNoLeaks("close rules") {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let pd = try context.allocateProtectionDomain()
      let region = try pd.register(SharedBuffer(byteCount: 8192))
      // A parent with live children refuses, names them, and stays usable.
      let busy = expectVerbsError(.busy, operation: "ibv_dealloc_pd", errno: EBUSY) {
        try pd.close()
      }
      #expect(busy?.message.contains("1 live memory regions or queue pairs") == true)
      expectVerbsError(.busy, operation: "ibv_close_device", errno: EBUSY) { try context.close() }
      let second = try pd.register(SharedBuffer(byteCount: 4096))
      // Closing twice is a typed error, not a double free.
      try region.close()
      #expect(region.isClosed)
      expectVerbsError(.closed, operation: "ibv_dereg_mr", errno: EBADF) { try region.close() }
      try second.close()
      let cq = try context.createCompletionQueue(entries: 16)
      let qp = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq)
      expectVerbsError(.busy, operation: "ibv_destroy_cq", errno: EBUSY) { try cq.close() }
      try qp.close()
      expectVerbsError(.closed, operation: "ibv_post_send", errno: EBADF) {
        try qp.postSend(.send, ScatterGatherElement(address: 0, length: 0, lkey: 0), id: 1)
      }
      try cq.close()
      try pd.close()
      expectVerbsError(.closed, operation: "ibv_reg_mr", errno: EBADF) {
        _ = try pd.register(SharedBuffer(byteCount: 4096))
      }
      expectVerbsError(.closed, operation: "ibv_dealloc_pd", errno: EBADF) { try pd.close() }
      try context.close()
      expectVerbsError(.closed, operation: "ibv_alloc_pd", errno: EBADF) {
        _ = try context.allocateProtectionDomain()
      }
    }
  }

  @Test func completionsNameDeregisteredKeys() throws {
    try expectNoLeaks("stale keys") {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let pd = try context.allocateProtectionDomain()
      let source = try pd.register(SharedBuffer(byteCount: 8192), access: Self.all)
      // A local key that was deregistered.
      do {
        let link = try Self.loopback(pd)
        let target = try pd.register(SharedBuffer(byteCount: 8192), access: Self.all)
        let gone = try pd.register(SharedBuffer(byteCount: 8192), access: Self.all)
        let element = try gone.scatterGather(count: 4096)
        try gone.close()
        try link.a.postSend(.write(to: target.remote), element, id: 11)
        let completion = try link.cq.wait(for: 1)[0]
        let error = expectVerbsError(.completionError, operation: "ibv_poll_cq", errno: EIO) {
          try completion.checkSuccess()
        }
        #expect(error?.message.contains("deregistered") == true, "\(String(describing: error))")
        #expect(error?.message.contains("rdmaWrite") == false)
      }
      // A remote key that was deregistered.
      do {
        let link = try Self.loopback(pd)
        let gone = try pd.register(SharedBuffer(byteCount: 8192), access: Self.all)
        let remote = gone.remote
        try gone.close()
        try link.a.postSend(.write(to: remote), try source.scatterGather(count: 4096), id: 12)
        let completion = try link.cq.wait(for: 1)[0]
        let error = expectVerbsError(.completionError, operation: "ibv_poll_cq", errno: EIO) {
          try completion.checkSuccess()
        }
        #expect(error?.message.contains("deregistered") == true, "\(String(describing: error))")
      }
    }
  }

  @Test func closingAQueueEndsAWaitOnAnotherThread() throws {
    try expectNoLeaks("wait ended by close") {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let cq = try context.createCompletionQueue(entries: 16)
      let outcome = Mutex<VerbsError?>(nil)
      let finished = DispatchSemaphore(value: 0)
      let started = ContinuousClock.now
      Thread.detachNewThread {
        do throws(VerbsError) {
          _ = try cq.wait(for: 1, timeout: .seconds(30))
        } catch {
          outcome.withLock { $0 = error }
        }
        finished.signal()
      }
      Thread.sleep(forTimeInterval: 0.3)
      try cq.close()
      #expect(finished.wait(timeout: .now() + 5) == .success)
      #expect(ContinuousClock.now - started < .seconds(5))
      #expect(outcome.withLock { $0?.code } == .closed)
      try context.close()
    }
  }

  @Test func sharedBuffersOwnAllocatedAndMappedMemory() throws {
    try expectNoLeaks("adopted and mapped memory") {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let pd = try context.allocateProtectionDomain()
      let link = try Self.loopback(pd)
      let source = try pd.register(SharedBuffer(byteCount: 64 << 10), access: Self.all)
      let data = Self.pattern(12_345, seed: 9)
      try source.memory!.copy(from: data)

      // Memory from UnsafeMutableRawBufferPointer.allocate, not page aligned.
      let allocated = UnsafeMutableRawBufferPointer.allocate(byteCount: 20_000, alignment: 64)
      allocated.initializeMemory(as: UInt8.self, repeating: 0)
      let adopted = try pd.register(SharedBuffer(adopting: allocated), access: Self.all)
      try link.a.postSend(
        .write(to: adopted.remote), try source.scatterGather(count: data.count), id: 1)
      try link.cq.wait(for: 1)[0].checkSuccess()
      #expect(try adopted.memory!.load(0..<data.count) == data)

      // A writable shared file mapping: the bytes land in the file.
      let path = Self.scratchFile(bytes: 3 * 4096 + 17)
      defer { unlink(path) }
      let mapped = try pd.register(
        SharedBuffer(mappingFileAt: path, offset: 100, length: 3 * 4096 - 100, writable: true),
        access: Self.all)
      try link.a.postSend(.write(to: mapped.remote), try source.scatterGather(count: 5000), id: 2)
      try link.cq.wait(for: 1)[0].checkSuccess()
      let file = try Data(contentsOf: URL(fileURLWithPath: path))
      #expect(Array(file[100..<5100]) == Array(data[0..<5000]))

      // A read-only shared mapping: kernels before 6.2 pin every
      // registration for write, so it fails there with the real reason.
      let readOnly = try SharedBuffer(mappingFileAt: path, writable: false)
      if KernelVersion.atLeast(6, 2) {
        let region = try pd.register(readOnly, access: [.remoteRead])
        try link.a.postSend(
          .read(from: region.remote), try source.scatterGather(count: 4096), id: 3)
        try link.cq.wait(for: 1)[0].checkSuccess()
      } else {
        let error = expectVerbsError(.permissionDenied, operation: "ibv_reg_mr", errno: EFAULT) {
          _ = try pd.register(readOnly, access: [.remoteRead])
        }
        #expect(error?.message.contains("read-only shared mapping") == true)
        #expect(error?.message.contains("6.2") == true)
      }
      // Asking for write access to it fails on every kernel, and says why.
      let writeError = expectVerbsError(.permissionDenied, operation: "ibv_reg_mr", errno: EFAULT) {
        _ = try pd.register(readOnly, access: Self.all)
      }
      #expect(writeError?.message.contains("needs writable pages") == true)
    }
  }

  @Test func arraysRegisterForOneScope() throws {
    try expectNoLeaks("scoped arrays") {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let pd = try context.allocateProtectionDomain()
      let link = try Self.loopback(pd)
      let data = Self.pattern(10_000, seed: 5)
      let source = try pd.register(SharedBuffer(byteCount: 16 << 10), access: Self.all)
      try source.memory!.copy(from: data)
      var array = [UInt8](repeating: 0, count: data.count)
      let mrsBefore = ResourceSnapshot.countOwn("mr")
      try pd.withRegistration(of: &array, access: Self.all) { region in
        #expect(ResourceSnapshot.countOwn("mr") == mrsBefore + 1)
        try link.a.postSend(
          .write(to: region.remote), try source.scatterGather(count: data.count), id: 1)
        try link.cq.wait(for: 1)[0].checkSuccess()
      }
      #expect(ResourceSnapshot.countOwn("mr") == mrsBefore)
      #expect(array == data)
      // Read-only bytes: peers may READ them; write access is refused.
      let message = Self.pattern(3000, seed: 8)
      try pd.withRegistration(ofReadOnly: message) { region in
        try link.a.postSend(
          .read(from: region.remote), try source.scatterGather(offset: 12_000, count: 3000), id: 2)
        try link.cq.wait(for: 1)[0].checkSuccess()
      }
      #expect(try source.memory!.load(12_000..<15_000) == message)
      expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
        try pd.withRegistration(ofReadOnly: message, access: Self.all) { _ in }
      }
      var empty: [UInt8] = []
      expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
        try pd.withRegistration(of: &empty) { _ in }
      }
    }
  }

  @Test func readmeOwnedTourRuns() async throws {
    try await expectNoLeaks("README owned tour") {
      let mrsBefore = ResourceSnapshot.countOwn("mr")
      let pool = try BufferPool(device: DeviceLab.deviceName, buffers: 4, bytes: 64 << 10)
      #expect(ResourceSnapshot.countOwn("mr") == mrsBefore + 4)
      let remotes = try await fillFromTasks(pool, tasks: 8)
      #expect((4...8).contains(remotes.count), "\(remotes)")
      #expect(Set(remotes.map(\.rkey)).isSubset(of: Set(pool.regions.map(\.rkey))))
      // Every buffer went back, and one of the Tasks' fills is in each used one.
      #expect((0..<4).compactMap { _ in pool.take() }.count == 4)
    }
  }

  /// A file of zeros on tmpfs when there is one (`/dev/shm`), else in the
  /// temporary directory.
  static func scratchFile(bytes: Int) -> String {
    let folder =
      FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let path = (folder as NSString).appendingPathComponent("umem-owned-\(getpid())-\(UUID())")
    _ = FileManager.default.createFile(atPath: path, contents: Data(count: bytes))
    return path
  }
}
