import Foundation
import TestSupport
import Testing
import Verbs

@testable import RDMACM

#if canImport(Glibc)
  import Glibc
#endif

/// Connection management on a real device (rxe0 on 198.18.0.1 under ci/rxe).
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct RDMACMOnDevice {
  static let host = ProcessInfo.processInfo.environment["UMEM_RXE_ADDR"] ?? "198.18.0.1"
  /// The lab's IPv6 address on the same netdev (ci/lib/guest-rxe.sh).
  static let host6 = ProcessInfo.processInfo.environment["UMEM_RXE_ADDR6"] ?? "fd00:198:18::1"

  /// librdmacm opens every device on first use and keeps it open, so the
  /// first resolution in a process adds descriptors that are not leaks.
  func warmUp() throws {
    let id = try ConnectionID()
    try id.resolveAddress(SocketAddress(host: Self.host, port: 7500))
  }

  @Test func resolvesAddressAndRoute() throws {
    try warmUp()
    try expectNoLeaks("address and route resolution") { try resolve() }
  }

  @Test func loopbackIsATypedError() throws {
    try warmUp()
    try expectNoLeaks("failed resolution") { try resolveLoopback() }
  }

  @Test func nothingListeningIsRejectedAndLeaksNothing() throws {
    try warmUp()
    try expectNoLeaks("a rejected connect with a PD, CQ, QP and MR") { try connectToNobody() }
  }

  @Test func boundPortIsInUseForASecondListener() throws {
    try warmUp()
    try expectNoLeaks("two listeners") { try bindTwice() }
  }

  @Test(arguments: [(host, UInt16(7505)), (host6, UInt16(7508))])
  func connectAcceptSendAndDisconnect(host: String, port: UInt16) throws {
    try warmUp()
    let server = ServerThread()
    try expectNoLeaks("a connection with one SEND over \(host), both sides") {
      try connectBothSides(server, host: host, port: port)
    }
    #expect(server.failure == nil, "\(server.failure ?? "")")
    #expect(server.received == Array("hello, rping".utf8))
    #expect(server.sawDisconnect)
  }

  /// A listener that turns a request down: the client's connect fails with
  /// the REJECTED event carrying the consumer's reason (28), not the "nothing
  /// listening" one (8), and neither side keeps anything.
  @Test func rejectedRequestIsTypedOnTheClient() throws {
    try warmUp()
    try expectNoLeaks("a rejected request, both sides") {
      let rejecter = Rejecter()
      Thread.detachNewThread { rejecter.run(host: Self.host, port: 7506) }
      #expect(rejecter.ready.wait(timeout: .now() + .seconds(40)) == .success)
      let id = try ConnectionID()
      try id.resolveAddress(SocketAddress(host: Self.host, port: 7506))
      try id.resolveRoute()
      let pd = try id.allocateProtectionDomain()
      let cq = try id.createCompletionQueue(entries: 4)
      _ = try id.createQueuePair(pd: pd, completions: cq)
      do {
        try id.connect(timeout: .seconds(20))
        Issue.record("connected although the listener rejects")
      } catch let error as CMError {
        #expect(error.code == .rejected, "\(error)")
        #expect(error.event == .rejected)
        #expect(error.status == 28, "\(error)")
        #expect(!error.description.contains("nothing is listening"), "\(error)")
      }
      let finished = rejecter.done.wait(timeout: .now() + .seconds(40)) == .success
      #expect(finished)
      #expect(rejecter.failure == nil, "\(rejecter.failure ?? "")")
    }
  }

  /// `ConnectionID.destroy`: the kernel's connection id goes at once.
  @Test func destroyReleasesTheIDAtOnce() throws {
    try warmUp()
    let before = ResourceSnapshot.countOwn("cm_id")
    let id = try ConnectionID()
    try id.resolveAddress(SocketAddress(host: Self.host, port: 7507))
    #expect(ResourceSnapshot.countOwn("cm_id") == before + 1)
    try id.destroy()
    #expect(ResourceSnapshot.countOwn("cm_id") == before)
  }

  func resolve() throws {
    let id = try ConnectionID()
    // No device before resolution: a typed error, not a crash.
    do {
      _ = try id.deviceAttributes()
      Issue.record("deviceAttributes() answered before address resolution")
    } catch {
      #expect(error.errno == ENODEV && error.operation == "ibv_query_device_ex")
    }
    try id.resolveAddress(SocketAddress(host: Self.host, port: 7501), timeout: .seconds(2))
    try id.resolveRoute(timeout: .seconds(2))
    let device = id.deviceName
    let peer = id.peerAddress?.description
    #expect(device != nil)
    #expect(peer == "\(Self.host):7501")
    // The id's device answers attribute queries (rdma-perf plans with them).
    let attributes = try id.deviceAttributes()
    #expect(
      attributes.pageSizeCapability & 0xfff == 0 && attributes.pageSizeCapability & 0x1000 != 0)
    #expect(attributes.maxInitiatorReadAtomics >= 1)
  }

  func resolveLoopback() throws {
    let id = try ConnectionID()
    do {
      try id.resolveAddress(SocketAddress(host: "127.0.0.1", port: 7502))
      try id.resolveRoute()
      Issue.record("127.0.0.1 resolved to an RDMA route")
    } catch {
      let codes: [CMError.Code] = [.addressError, .routeError]
      #expect(codes.contains(error.code), "\(error)")
      let enodev: Bool = error.errno == ENODEV || error.status == -ENODEV
      #expect(enodev, "\(error)")
      #expect(error.description.contains("127.0.0.1"), "\(error)")
    }
  }

  func connectToNobody() throws {
    let id = try ConnectionID()
    try id.resolveAddress(SocketAddress(host: Self.host, port: 7503))
    try id.resolveRoute()
    let pd = try id.allocateProtectionDomain()
    let cq = try id.createCompletionQueue(entries: 8)
    let qp = try id.createQueuePair(pd: pd, completions: cq)
    let buffer = try PageAlignedBuffer(byteCount: 4096)
    let mr = try pd.register(buffer, access: .localWrite)
    try qp.postReceive(mr.scatterGather(offset: 0, count: 64), id: 1)
    do {
      try id.connect(timeout: .seconds(20))
      Issue.record("connected although nothing listens on port 7503")
    } catch {
      #expect(error.code == .rejected, "\(error)")
      #expect(error.event == .rejected)
      #expect(error.status == 8)
      #expect(error.rpingLine == "cma event RDMA_CM_EVENT_REJECTED, error 8")
      #expect(error.description.contains("nothing is listening"))
    }
  }

  func bindTwice() throws {
    let first = try ConnectionID()
    try first.bind(SocketAddress(host: Self.host, port: 7504))
    try first.listen()
    let second = try ConnectionID()
    var refused: CMError? = nil
    do {
      try second.bind(SocketAddress(host: Self.host, port: 7504))
    } catch {
      refused = error
    }
    #expect(refused?.errno == EADDRINUSE, "\(String(describing: refused))")
  }

  func connectBothSides(_ server: ServerThread, host: String, port: UInt16) throws {
    Thread.detachNewThread { server.run(host: host, port: port) }
    let deadline = DispatchTime.now() + DispatchTimeInterval.seconds(40)
    let started: Bool = server.ready.wait(timeout: deadline) == DispatchTimeoutResult.success
    #expect(started)
    try client(host: host, port: port)
    let finished: Bool = server.done.wait(timeout: deadline) == DispatchTimeoutResult.success
    #expect(finished)
  }

  func client(host: String, port: UInt16) throws {
    let id = try ConnectionID()
    try id.resolveAddress(SocketAddress(host: host, port: port))
    try id.resolveRoute()
    let pd = try id.allocateProtectionDomain()
    let cq = try id.createCompletionQueue(entries: 8)
    let qp = try id.createQueuePair(pd: pd, completions: cq)
    let buffer = try PageAlignedBuffer(byteCount: 64)
    try buffer.copy(from: Array("hello, rping".utf8))
    let mr = try pd.register(buffer, access: [])
    let established = try id.connect(ConnectionParameters(), timeout: .seconds(20))
    #expect(established.kind == .established)
    #expect(Array(established.privateData.prefix(3)) == [7, 1, 74])
    try qp.postSend(.send, mr.scatterGather(offset: 0, count: 12), id: 9)
    let completions = try id.waitForCompletions(on: cq, timeout: .seconds(20))
    #expect(completions.count == 1)
    #expect(completions.first?.status.isSuccess == true)
    #expect(completions.first?.id == 9)
    try id.disconnect()
  }
}

/// The listening side of ``RDMACMOnDevice/rejectedRequestIsTypedOnTheClient()``:
/// takes one request and rejects it with `rdma_reject`.
final class Rejecter: @unchecked Sendable {
  let ready = DispatchSemaphore(value: 0)
  let done = DispatchSemaphore(value: 0)
  var failure: String?

  func run(host: String, port: UInt16) {
    defer { done.signal() }
    do {
      let listener = try ConnectionID()
      try listener.bind(SocketAddress(host: host, port: port))
      try listener.listen()
      ready.signal()
      guard let request = try listener.nextRequest(timeout: .seconds(20)) else {
        failure = "no connection request within 20 s"
        return
      }
      try request.reject(privateData: [1, 2, 3])
      try request.destroy()
    } catch {
      failure = "\(error)"
      ready.signal()
    }
  }
}

/// The accepting side of ``RDMACMOnDevice/connectAcceptSendAndDisconnect(host:port:)``,
/// on its own thread because connect and accept each wait for the other.
final class ServerThread: @unchecked Sendable {
  let ready = DispatchSemaphore(value: 0)
  let done = DispatchSemaphore(value: 0)
  var received: [UInt8] = []
  var failure: String?
  var sawDisconnect = false

  func run(host: String, port: UInt16) {
    defer { done.signal() }
    do {
      let listener = try ConnectionID()
      try listener.bind(SocketAddress(host: host, port: port))
      try listener.listen()
      ready.signal()
      guard let child = try listener.nextRequest(timeout: .seconds(20)) else {
        failure = "no connection request within 20 s"
        return
      }
      try serve(child)
    } catch {
      failure = "\(error)"
      ready.signal()
    }
  }

  func serve(_ id: borrowing ConnectionID) throws {
    let pd = try id.allocateProtectionDomain()
    let cq = try id.createCompletionQueue(entries: 8)
    let qp = try id.createQueuePair(pd: pd, completions: cq)
    let buffer = try PageAlignedBuffer(byteCount: 64)
    let mr = try pd.register(buffer, access: .localWrite)
    try qp.postReceive(mr.scatterGather(offset: 0, count: 64), id: 1)
    try id.accept(ConnectionParameters(privateData: [7, 1, 74]), timeout: .seconds(20))
    let completions = try id.waitForCompletions(on: cq, timeout: .seconds(20))
    guard let wc = completions.first, wc.status.isSuccess, wc.opcode == .receive else {
      failure = "expected one receive, got \(completions)"
      return
    }
    received = try buffer.load(0..<Int(wc.byteLength))
    let ended = waitForDisconnect(id, cq)
    sawDisconnect = ended?.rpingLine == "cma event RDMA_CM_EVENT_DISCONNECTED, error 0"
  }

  func waitForDisconnect(
    _ id: borrowing ConnectionID, _ cq: borrowing CompletionQueue
  ) -> CMError? {
    do {
      _ = try id.waitForCompletions(on: cq, timeout: .seconds(20))
      return nil
    } catch {
      return error
    }
  }
}
