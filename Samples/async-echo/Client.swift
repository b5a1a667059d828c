// The client: N connections at once, each from its own Task.

import RDMACM
import Synchronization
import Verbs

/// The idle phase of a run: every connection, once up, waits on its queue
/// until `until`, with nothing in flight, while the main Task measures the
/// process's CPU time. It wakes the main Task when all clients have arrived
/// (connected, or failed).
final class IdlePhase: Sendable {
  let expected: Int
  let until: ContinuousClock.Instant
  private let state = Mutex<(arrived: Int, waiter: CheckedContinuation<Void, Never>?)>((0, nil))

  init(expected: Int, seconds: Double) {
    self.expected = expected
    self.until = .now + .milliseconds(Int(seconds * 1000))
  }

  func arrive() {
    let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
      state.arrived += 1
      guard state.arrived == expected else { return nil }
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume()
  }

  /// Returns once every client has arrived.
  func allArrived() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let now = state.withLock { state -> Bool in
        if state.arrived >= expected { return true }
        state.waiter = continuation
        return false
      }
      if now { continuation.resume() }
    }
  }

  /// Waits on `completions` until the phase ends; nothing should arrive.
  func idle(on completions: SharedCompletionQueue) async throws {
    let left = ContinuousClock.now.duration(to: until)
    guard left > .zero else { return }
    do {
      let early = try await completions.next(timeout: left)
      throw CMError(
        .unexpectedEvent, operation: "ibv_poll_cq",
        message: "a completion arrived while idle: \(early)")
    } catch let error as VerbsError where error.code == .timedOut {}
  }
}

/// What one connection did.
struct ClientOutcome: Sendable {
  var client: Int
  var echoes = 0
  var mismatches = 0
  var failure: String?
}

/// Runs `clients` connections concurrently, each echoing `messages`
/// messages of `size` bytes twice (SEND/RECV, then WRITE with immediate).
func runClients(
  address: String, port: UInt16, clients: Int, messages: Int, size: Int, verify: Bool,
  idle: IdlePhase? = nil
) async -> [ClientOutcome] {
  await withTaskGroup(of: ClientOutcome.self) { group in
    for client in 0..<clients {
      group.addTask {
        var outcome = ClientOutcome(client: client)
        var arrived = false
        do {
          try await echo(
            client: client, address: address, port: port, messages: messages, size: size,
            verify: verify, outcome: &outcome, idle: idle, arrived: &arrived)
        } catch {
          outcome.failure = "\(error)"
        }
        if !arrived { idle?.arrive() }
        return outcome
      }
    }
    var outcomes: [ClientOutcome] = []
    for await outcome in group { outcomes.append(outcome) }
    return outcomes.sorted { $0.client < $1.client }
  }
}

func echo(
  client: Int, address: String, port: UInt16, messages: Int, size: Int, verify: Bool,
  outcome: inout ClientOutcome, idle: IdlePhase?, arrived: inout Bool
) async throws {
  let connection = try SharedConnection()
  try await connection.resolveAddress(try SocketAddress(host: address, port: port))
  try await connection.resolveRoute()
  let endpoint = try EchoEndpoint(connection, size: size)
  defer { endpoint.close() }
  try endpoint.postReceive()
  let established = try await connection.connect(
    ConnectionParameters(privateData: endpoint.advert.bytes))
  guard let server = WindowAdvert(established.privateData), Int(server.size) >= size else {
    throw CMError(
      .unexpectedEvent, operation: "rdma_connect",
      message: "the server's accept carried no window of \(size) bytes; is it async-echo?")
  }
  if let idle {
    idle.arrive()
    arrived = true
    try await idle.idle(on: endpoint.completions)
  }
  for message in 0..<messages {
    // SEND, echoed back by SEND.
    let sent = pattern(client: client, message: message, kind: 0, count: size)
    try endpoint.outgoing.memory?.copy(from: sent)
    try endpoint.queuePair.postSend(.send, try endpoint.outgoing.scatterGather(count: size), id: 10)
    let received = try await endpoint.next(.receive)
    try endpoint.postReceive()
    if verify {
      let back = try endpoint.incoming.memory?.load(0..<size)
      if received.byteLength != size || back != sent { outcome.mismatches += 1 }
    }
    outcome.echoes += 1
    // WRITE with immediate into the server's window, written back into ours.
    let written = pattern(client: client, message: message, kind: 1, count: size)
    try endpoint.outgoing.memory?.copy(from: written)
    try endpoint.queuePair.postSend(
      .writeWithImmediate(to: server.remote, UInt32(truncatingIfNeeded: message)),
      try endpoint.outgoing.scatterGather(count: size), id: 11)
    let arrived = try await endpoint.next(.receiveRDMAWithImmediate)
    try endpoint.postReceive()
    if verify {
      let back = try endpoint.window.memory?.load(0..<size)
      if arrived.immediate != UInt32(truncatingIfNeeded: message) || back != written {
        outcome.mismatches += 1
      }
    }
    outcome.echoes += 1
  }
  try await connection.disconnect()
}
