// One side's verbs resources on a connection, the same on both sides.

import RDMACM
import Verbs

/// A connection's domain, completion queue, queue pair and three regions:
/// `outgoing` (SEND and WRITE source), `incoming` (receives) and `window`
/// (what the peer WRITEs into). Owned-tier values, so a Task can keep them.
struct EchoEndpoint: Sendable {
  let connection: SharedConnection
  let completions: SharedCompletionQueue
  let queuePair: SharedQueuePair
  let outgoing: SharedMemoryRegion
  let incoming: SharedMemoryRegion
  let window: SharedMemoryRegion
  let size: Int

  init(_ connection: SharedConnection, size: Int) throws {
    self.connection = connection
    self.size = size
    let context = try connection.deviceContext()
    let domain = try context.allocateProtectionDomain()
    completions = try context.createCompletionQueue(entries: 64)
    queuePair = try connection.createQueuePair(
      domain: domain, sendCompletions: completions, receiveCompletions: completions,
      capacity: QueuePairCapacity(sendRequests: 16, receiveRequests: 16))
    outgoing = try domain.register(SharedBuffer(byteCount: size), access: .localWrite)
    incoming = try domain.register(SharedBuffer(byteCount: size), access: .localWrite)
    window = try domain.register(
      SharedBuffer(byteCount: size), access: [.localWrite, .remoteWrite])
  }

  var advert: WindowAdvert { WindowAdvert(window) }

  /// Posts one receive into `incoming`.
  func postReceive() throws {
    try queuePair.postReceive(try incoming.scatterGather(count: size), id: 1)
  }

  /// The next successful completion of kind `opcode`; others that succeed
  /// (SEND and WRITE completions) are skipped, a failed one throws.
  func next(_ opcode: WorkCompletion.Opcode) async throws -> WorkCompletion {
    while true {
      let completion = try await completions.next()
      try completion.checkSuccess()
      if completion.opcode == opcode { return completion }
    }
  }

  /// Destroys the queue pair (`rdma_destroy_qp`); the rest goes with the
  /// last reference.
  func close() {
    try? queuePair.close()
  }
}
