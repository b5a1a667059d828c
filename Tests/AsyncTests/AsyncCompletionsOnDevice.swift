import Foundation
import RDMACM
import Synchronization
import TestSupport
import Testing
import UmemSystem
import Verbs

/// Async completions and connection events on a real device (rxe under
/// `ci/rxe`): a long run through the `AsyncSequence`, several queues from
/// several Tasks, cancellation, closing under a waiting Task, timeouts, and
/// a peer that disconnects while a Task awaits its next event. Serialized:
/// the leak checks count this process's descriptors, pins, QPs and CQs.
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct AsyncCompletionsOnDevice {
  static let all: MemoryAccess = [.localWrite, .remoteWrite, .remoteRead]
  static let host = ProcessInfo.processInfo.environment["UMEM_RXE_ADDR"] ?? "198.18.0.1"
  /// Completions for the long run; `UMEM_ASYNC_COMPLETIONS` changes it.
  static let longRun =
    Int(ProcessInfo.processInfo.environment["UMEM_ASYNC_COMPLETIONS"] ?? "") ?? 100_000

  /// Two connected queue pairs; `a`'s sends complete on `cq`. Keep both
  /// referenced: a dropped queue pair is destroyed at once.
  struct Loopback: Sendable {
    let a: SharedQueuePair
    let b: SharedQueuePair
    let cq: SharedCompletionQueue
    let peerQueue: SharedCompletionQueue
    let source: SharedMemoryRegion
    let target: SharedMemoryRegion
  }

  static func loopback(_ pd: SharedProtectionDomain, depth: Int = 256) throws -> Loopback {
    let cq = try pd.context.createCompletionQueue(entries: 4096)
    let peerQueue = try pd.context.createCompletionQueue(entries: 64)
    let capacity = QueuePairCapacity(sendRequests: depth, receiveRequests: 16)
    let a = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq, capacity: capacity)
    let b = try pd.createQueuePair(
      sendCompletions: peerQueue, receiveCompletions: peerQueue, capacity: capacity)
    try a.connectLoopback(with: b)
    let source = try pd.register(SharedBuffer(byteCount: 4096), access: all)
    let target = try pd.register(SharedBuffer(byteCount: 4096), access: all)
    return Loopback(a: a, b: b, cq: cq, peerQueue: peerQueue, source: source, target: target)
  }

  /// Posts an 8-byte signaled WRITE with this id.
  static func write(_ link: Loopback, id: UInt64) throws {
    try link.a.postSend(
      .write(to: link.target.remote), try link.source.scatterGather(count: 8), id: id)
  }

  /// The reactor's epoll and eventfd descriptors stay for the life of the
  /// process, librdmacm keeps devices open, and the concurrency runtime opens
  /// its timer descriptors at the first `Task.sleep`: make all of them exist
  /// before counting descriptors.
  static func warmUp() async throws {
    // A 1 ms and a 200 ms sleep: the runtime's timers for short and long
    // sleeps live on separate descriptors.
    try await Task.sleep(for: .milliseconds(1))
    try await Task.sleep(for: .milliseconds(200))
    let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
    let cq = try context.createCompletionQueue(entries: 4)
    _ = try? await cq.next(timeout: .milliseconds(1))
    try cq.close()
    try context.close()
    let id = try ConnectionID()
    try id.resolveAddress(SocketAddress(host: host, port: 7600))
  }

  /// What each open descriptor refers to (`/proc/self/fd`), to name a leak.
  static func descriptors() -> [String: String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    var targets: [String: String] = [:]
    for name in names {
      targets[name] =
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(name)"))
        ?? "?"
    }
    return targets
  }

  /// The descriptors in `after` that were not in `before`, as `fd -> target`.
  static func added(_ before: [String: String], _ after: [String: String]) -> [String] {
    after.filter { before[$0.key] != $0.value }.map { "\($0.key) -> \($0.value)" }.sorted()
  }

  static func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
  }

  @Test func manyCompletionsThroughTheAsyncSequence() async throws {
    try await Self.warmUp()
    let total = Self.longRun
    try await expectNoLeaks("\(total) completions through the AsyncSequence") {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let pd = try context.allocateProtectionDomain()
      let link = try Self.loopback(pd)
      let window = 128
      var posted = 0
      while posted < min(window, total) {
        try Self.write(link, id: UInt64(posted))
        posted += 1
      }
      let start = ContinuousClock.now
      var seen = 0
      for try await completion in link.cq.completions {
        try completion.checkSuccess()
        #expect(completion.id == UInt64(seen), "completions arrive in order")
        seen += 1
        if seen == total { break }
        if posted < total {
          try Self.write(link, id: UInt64(posted))
          posted += 1
        }
      }
      let took = Self.seconds(ContinuousClock.now - start)
      print(
        "async sequence: \(seen) completions in \(String(format: "%.2f", took)) s, "
          + "\(Int(Double(seen) / max(took, 1e-9))) per second")
      #expect(seen == total)
      #expect(try link.cq.poll().isEmpty)
      #expect(Reactor.shared.waiterCount == 0)
    }
  }

  @Test func severalQueuesAwaitedFromSeveralTasks() async throws {
    try await Self.warmUp()
    try await expectNoLeaks("4 queues from 4 Tasks") {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let pd = try context.allocateProtectionDomain()
      let links = try (0..<4).map { _ in try Self.loopback(pd) }
      let perQueue = 2000
      let counts = try await withThrowingTaskGroup(of: Int.self) { group in
        for link in links {
          group.addTask {
            var posted = 0
            var seen = 0
            while posted < 32 {
              try Self.write(link, id: UInt64(posted))
              posted += 1
            }
            while seen < perQueue {
              for completion in try await link.cq.next(maximum: 16, timeout: .seconds(30)) {
                try completion.checkSuccess()
                seen += 1
                if posted < perQueue {
                  try Self.write(link, id: UInt64(posted))
                  posted += 1
                }
              }
            }
            return seen
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      #expect(counts == Array(repeating: perQueue, count: 4))
    }
  }

  @Test func cancelledTaskReturnsPromptlyAndLeavesNothing() async throws {
    try await Self.warmUp()
    let descriptorsBefore = Self.descriptors()
    defer {
      let added = Self.added(descriptorsBefore, Self.descriptors())
      if !added.isEmpty { print("cancelled wait: descriptors added: \(added)") }
    }
    try await expectNoLeaks("a cancelled wait") {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let pd = try context.allocateProtectionDomain()
      let link = try Self.loopback(pd)
      let waiter = Task { try await link.cq.next() }
      try await Task.sleep(for: .milliseconds(200))
      let start = ContinuousClock.now
      waiter.cancel()
      await #expect(throws: CancellationError.self) { try await waiter.value }
      #expect(Self.seconds(ContinuousClock.now - start) < 1)
      #expect(Reactor.shared.waiterCount == 0)
      // The queue stays armed; the event the next completion raises is taken
      // and acknowledged by the next wait, which gets that completion.
      try Self.write(link, id: 7)
      let completion = try await link.cq.next(timeout: .seconds(10))
      #expect(completion.id == 7)
      try completion.checkSuccess()
      // Destroying a queue with an unacknowledged event would hang here.
      try link.a.close()
      try link.b.close()
      try link.cq.close()
      try link.peerQueue.close()
    }
  }

  @Test func closingTheQueueEndsTheWaitWithATypedError() async throws {
    try await Self.warmUp()
    try await expectNoLeaks("a queue closed under a waiting Task") {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      let cq = try context.createCompletionQueue(entries: 16)
      let waiters = (0..<3).map { _ in Task { try await cq.next() } }
      try await Task.sleep(for: .milliseconds(200))
      let start = ContinuousClock.now
      try cq.close()
      for waiter in waiters {
        do {
          _ = try await waiter.value
          Issue.record("the wait should have ended with .closed")
        } catch let error as VerbsError {
          #expect(error.code == .closed, "\(error)")
          #expect(error.operation == "ibv_get_cq_event")
        }
      }
      #expect(Self.seconds(ContinuousClock.now - start) < 1)
      // And later waits are refused at once.
      await #expect(throws: VerbsError.self) { try await cq.next() }
      try context.close()
    }
  }

  @Test func timeoutIsATypedError() async throws {
    try await Self.warmUp()
    let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
    let cq = try context.createCompletionQueue(entries: 16)
    let start = ContinuousClock.now
    do {
      _ = try await cq.next(timeout: .milliseconds(200))
      Issue.record("expected a timeout")
    } catch let error as VerbsError {
      #expect(error.code == .timedOut)
    }
    let took = Self.seconds(ContinuousClock.now - start)
    #expect(took >= 0.2 && took < 2, "took \(took) s")
  }

  @Test func peerDisconnectEndsAWaitForTheNextEvent() async throws {
    try await Self.warmUp()
    let port: UInt16 = 7610
    try await expectNoLeaks("a connection whose peer disconnects, both sides") {
      let listener = try SharedConnection()
      try listener.bind(try SocketAddress(host: Self.host, port: port))
      try listener.listen()
      async let serverSide: CMEvent.Kind = {
        let (connection, _) = try await listener.nextRequest(timeout: .seconds(30))
        let context = try connection.deviceContext()
        let pd = try context.allocateProtectionDomain()
        let cq = try context.createCompletionQueue(entries: 16)
        let qp = try connection.createQueuePair(
          domain: pd, sendCompletions: cq, receiveCompletions: cq)
        try await connection.accept()
        // The Task waits here until the peer goes away.
        let event = try await connection.nextEvent(timeout: .seconds(30))
        try qp.close()
        return event.kind
      }()
      let client = try SharedConnection()
      try await client.resolveAddress(try SocketAddress(host: Self.host, port: port))
      try await client.resolveRoute()
      let context = try client.deviceContext()
      let pd = try context.allocateProtectionDomain()
      let cq = try context.createCompletionQueue(entries: 16)
      let qp = try client.createQueuePair(domain: pd, sendCompletions: cq, receiveCompletions: cq)
      try await client.connect()
      try await Task.sleep(for: .milliseconds(200))
      try await client.disconnect()
      try qp.close()
      #expect(try await serverSide == .disconnected)
      listener.close()
      // A closed connection refuses waits with a typed error.
      do {
        _ = try await listener.nextRequest(timeout: .seconds(1))
        Issue.record("expected .closed")
      } catch let error as CMError {
        #expect(error.code == .closed, "\(error)")
      }
    }
  }

  @Test func cancellingAWaitForAConnectionEvent() async throws {
    try await Self.warmUp()
    try await expectNoLeaks("a cancelled wait for a connection request") {
      let listener = try SharedConnection()
      try listener.bind(try SocketAddress(host: Self.host, port: 7611))
      try listener.listen()
      let waiter = Task { try await listener.nextRequest() }
      try await Task.sleep(for: .milliseconds(200))
      waiter.cancel()
      await #expect(throws: CancellationError.self) { _ = try await waiter.value }
    }
  }
}
