// The server: accepts connections and echoes each one from its own Task.

import Foundation
import RDMACM
import Verbs

/// Listens on `address`:`port` and serves every client from its own Task,
/// until `limit` clients have come and gone (nil: forever). A client that
/// fails or goes away ends only its own Task.
func runServer(address: String, port: UInt16, limit: Int?, verbose: Bool) async throws {
  let listener = try SharedConnection()
  try listener.bind(try SocketAddress(host: address, port: port))
  try listener.listen(backlog: 128)
  say("async-echo server: listening on \(address):\(port)")
  try await withThrowingDiscardingTaskGroup { group in
    var accepted = 0
    while limit.map({ accepted < $0 }) ?? true {
      let (connection, request) = try await listener.nextRequest()
      accepted += 1
      let number = accepted
      group.addTask {
        let summary = await serve(connection, request: request, verbose: verbose)
        say("async-echo server: client \(number): \(summary)")
      }
    }
  }
  say("async-echo server: served \(limit ?? 0) clients")
}

/// Serves one client until it disconnects; returns a one-line summary.
func serve(_ connection: SharedConnection, request: CMEvent, verbose: Bool) async -> String {
  guard let peer = WindowAdvert(request.privateData), (1...largestMessage).contains(Int(peer.size))
  else {
    try? connection.reject()
    return "rejected: its private data names no window of 1 B to 16 MiB"
  }
  let endpoint: EchoEndpoint
  do {
    endpoint = try EchoEndpoint(connection, size: Int(peer.size))
    for _ in 0..<4 { try endpoint.postReceive() }
    try await connection.accept(ConnectionParameters(privateData: endpoint.advert.bytes))
  } catch {
    try? connection.reject()
    return "could not accept: \(error)"
  }
  defer { endpoint.close() }
  if verbose {
    say("async-echo server: \(connection.peerAddress.map { "\($0)" } ?? "?") connected")
  }
  // The peer's disconnect arrives as a connection event; answering it moves
  // the queue pair to the error state, which flushes the posted receives
  // and so ends the completion loop below.
  let watcher = Task {
    while true {
      let event = try await connection.nextEvent()
      if event.kind == .disconnected || event.kind == .deviceRemoval {
        try? connection.disconnectNow()
        return event.kind
      }
    }
  }
  defer { watcher.cancel() }
  var echoes = 0
  do {
    for try await completion in endpoint.completions.completions {
      guard completion.status.isSuccess else { break }
      switch completion.opcode {
      case .receive:
        try endpoint.postReceive()
        try endpoint.queuePair.postSend(
          .send, try endpoint.incoming.scatterGather(count: Int(completion.byteLength)), id: 2)
        echoes += 1
      case .receiveRDMAWithImmediate:
        try endpoint.postReceive()
        try endpoint.queuePair.postSend(
          .writeWithImmediate(to: peer.remote, completion.immediate ?? 0),
          try endpoint.window.scatterGather(count: Int(completion.byteLength)), id: 3)
        echoes += 1
      default:
        break
      }
    }
  } catch {
    return "\(echoes) echoes, then \(error)"
  }
  return "\(echoes) echoes, then the client went away"
}

/// One line on standard output, flushed at once (the smoke test reads it live).
func say(_ text: String) {
  FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
