// The server: accepts a client, registers a data buffer as large as the
// client asks (through Umem, with a plan), and takes part where a test
// needs it (the WRITE ping-pong). Bandwidth and READ tests are one-sided:
// the server's CPU only waits for the next control message, asleep.

import RDMACM
import Umem
import Verbs

struct ServerSettings {
  var address: String?
  var port: UInt16
  var backing: UmemBuffer.Backing
  var iova: IOVAChoice
  var persistent: Bool
  var verbose: Bool
}

/// Messages larger than this are refused (the buffer holds two).
let largestMessage = 1 << 30

/// Runs longer than this are refused on both sides: a latency run keeps a
/// timestamp per iteration (800 MB at this count).
let largestIterationCount = 100_000_000

func runServer(_ settings: ServerSettings) throws {
  let listener = try ConnectionID()
  let address =
    if let host = settings.address { try SocketAddress(host: host, port: settings.port) } else {
      SocketAddress.any(port: settings.port)
    }
  try listener.bind(address)
  try listener.listen()
  log("rdma-perf server listening on \(address)")
  repeat {
    guard let child = try listener.nextRequest() else { continue }
    let peer = child.peerAddress.map { "\($0)" } ?? "?"
    do {
      try serve(child, peer: peer, settings)
      log("client \(peer): done")
    } catch {
      guard settings.persistent else { throw error }
      log("client \(peer): \(error)")
    }
  } while settings.persistent
}

func serve(_ id: borrowing ConnectionID, peer: String, _ settings: ServerSettings) throws {
  let attributes = try id.deviceAttributes()
  try withEndpoint(id, sendDepth: 16) { pd, qp, cq, control, controlBase in
    try id.accept()
    var pending = PendingCompletions()
    let hello = try receive(&pending, id, qp, cq, control, base: controlBase)
    guard hello.kind == .hello else {
      throw PerfError("the client opened with \(hello.kind); expected hello")
    }
    let largest = Int(clamping: hello[0])
    guard (1...largestMessage).contains(largest) else {
      throw PerfError(
        "the client asked for \(largest)-byte messages; the limit is \(largestMessage)")
    }
    let client = RemoteBuffer(
      address: hello[1], length: hello[3], rkey: UInt32(truncatingIfNeeded: hello[2]))
    try withDataRegion(
      pd, pageSizeCap: attributes.pageSizeCapability, bytes: dataBytes(largestMessage: largest),
      backing: settings.backing, iovaPolicy: settings.iova
    ) { data, base, plan in
      try send(
        Message(.ready, [data.iova, UInt64(data.rkey)] + plan.words),
        &pending, id, qp, cq, control, base: controlBase)
      log("client \(peer): data region \(plan.summary)")
      while true {
        let message = try receive(&pending, id, qp, cq, control, base: controlBase)
        switch message.kind {
        case .bye:
          try? id.disconnect()
          return
        case .run:
          guard let test = Test(rawValue: message[0]),
            (1...largest).contains(Int(clamping: message[1])),
            (1...largestIterationCount).contains(Int(clamping: message[2]))
          else {
            throw PerfError(
              "the client asked for test \(message[0]) at \(message[1]) bytes, "
                + "\(message[2]) times; is it an rdma-perf of this version?")
          }
          // Both checked just above, so neither conversion traps.
          let size = Int(message[1])
          let iterations = Int(message[2])
          let areas = Areas(size: size, incomingOffset: largest, peer: client, base: base)
          areas.watchedIncoming.storeBytes(of: 0, as: UInt8.self)
          try send(Message(.ack), &pending, id, qp, cq, control, base: controlBase)
          if test == .writeLatency {
            _ = try measureWriteLatency(
              iterations: iterations, areas: areas, isClient: false, id, qp, cq, data, &pending)
          }
          if settings.verbose { log("client \(peer): \(test.name) \(size) B x \(iterations)") }
        default:
          throw PerfError("unexpected control message \(message.kind)")
        }
      }
    }
  }
}
