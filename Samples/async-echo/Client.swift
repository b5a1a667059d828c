// The client: N connections at once, each from its own Task.

import RDMACM
import Verbs

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
  address: String, port: UInt16, clients: Int, messages: Int, size: Int, verify: Bool
) async -> [ClientOutcome] {
  await withTaskGroup(of: ClientOutcome.self) { group in
    for client in 0..<clients {
      group.addTask {
        var outcome = ClientOutcome(client: client)
        do {
          try await echo(
            client: client, address: address, port: port, messages: messages, size: size,
            verify: verify, outcome: &outcome)
        } catch {
          outcome.failure = "\(error)"
        }
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
  outcome: inout ClientOutcome
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
