package import CRDMA

/// Sizes of a queue pair's send and receive queues (`struct ibv_qp_cap`).
public struct QueuePairCapacity: Sendable, Hashable {
  /// Outstanding send work requests.
  public var sendRequests: Int
  /// Outstanding receive work requests.
  public var receiveRequests: Int
  /// Scatter/gather entries per send request.
  public var sendScatterGather: Int
  /// Scatter/gather entries per receive request.
  public var receiveScatterGather: Int
  /// Bytes that may be sent inline (copied into the request).
  public var inlineData: Int

  /// Creates capacities; the defaults suit small tests and samples.
  public init(
    sendRequests: Int = 64, receiveRequests: Int = 64, sendScatterGather: Int = 1,
    receiveScatterGather: Int = 1, inlineData: Int = 0
  ) {
    self.sendRequests = sendRequests
    self.receiveRequests = receiveRequests
    self.sendScatterGather = sendScatterGather
    self.receiveScatterGather = receiveScatterGather
    self.inlineData = inlineData
  }
}

/// What one side tells the other to connect a reliable-connected pair
/// without rdma_cm: queue pair number, starting packet sequence number, and
/// the address (LID on InfiniBand, GID on RoCE).
public struct QueuePairEndpoint: Sendable, Hashable {
  /// The queue pair number (`qp_num`).
  public var queuePairNumber: UInt32
  /// The first packet sequence number, 24 bits.
  public var packetSequenceNumber: UInt32
  /// Local identifier (InfiniBand); 0 on Ethernet.
  public var lid: UInt16
  /// The GID; required on RoCE (rxe), where every packet carries a global route header.
  public var gid: GID?
  /// Index of ``gid`` in the port's GID table (used as `sgid_index` locally).
  public var gidIndex: Int
  /// Port number, from 1.
  public var port: Int
  /// The path MTU in bytes (256...4096).
  public var mtu: Int

  /// Creates an endpoint description.
  public init(
    queuePairNumber: UInt32, packetSequenceNumber: UInt32, lid: UInt16, gid: GID?, gidIndex: Int,
    port: Int, mtu: Int
  ) {
    self.queuePairNumber = queuePairNumber
    self.packetSequenceNumber = packetSequenceNumber
    self.lid = lid
    self.gid = gid
    self.gidIndex = gidIndex
    self.port = port
    self.mtu = mtu
  }
}

/// What a send work request does (`enum ibv_wr_opcode`).
public enum SendOperation: Sendable, Hashable {
  /// SEND into the peer's next posted receive (`IBV_WR_SEND`).
  case send
  /// SEND with 32 bits of immediate data (`IBV_WR_SEND_WITH_IMM`).
  case sendWithImmediate(UInt32)
  /// RDMA WRITE into peer memory (`IBV_WR_RDMA_WRITE`).
  case write(to: RemoteBuffer)
  /// RDMA WRITE that also consumes a receive with immediate data (`IBV_WR_RDMA_WRITE_WITH_IMM`).
  case writeWithImmediate(to: RemoteBuffer, UInt32)
  /// RDMA READ from peer memory into the local entry (`IBV_WR_RDMA_READ`).
  case read(from: RemoteBuffer)
  /// 64-bit compare-and-swap at peer memory (`IBV_WR_ATOMIC_CMP_AND_SWP`).
  case compareAndSwap(at: RemoteBuffer, expected: UInt64, desired: UInt64)
  /// 64-bit fetch-and-add at peer memory (`IBV_WR_ATOMIC_FETCH_AND_ADD`).
  case fetchAndAdd(at: RemoteBuffer, add: UInt64)
}

/// A reliable-connected queue pair (`struct ibv_qp`, `IBV_QPT_RC`).
/// Created by ``ProtectionDomain/createQueuePair(sendCompletions:receiveCompletions:capacity:)``
/// and destroyed exactly once with `ibv_destroy_qp`. It borrows its domain
/// and both completion queues. The owned, shareable counterpart is
/// ``SharedQueuePair``; both run the same code.
public struct QueuePair: ~Copyable, ~Escapable {
  package let raw: UnsafeMutablePointer<ibv_qp>
  /// Set when librdmacm created the queue pair on this connection id
  /// (`rdma_create_qp`); it is then destroyed with `rdma_destroy_qp`, which
  /// also clears `cm_id->qp`.
  package let connectionID: UnsafeMutablePointer<rdma_cm_id>?

  var core: QueuePairCore { QueuePairCore(raw: raw) }

  /// Adopts the queue pair that `rdma_create_qp` made on `connectionID`.
  /// It borrows the domain, the completion queue, and `owner`, the value
  /// that owns the connection id.
  @_lifetime(borrow pd, borrow completions, borrow owner)
  package init<Owner: ~Copyable>(
    adopting connectionID: UnsafeMutablePointer<rdma_cm_id>, pd: borrowing ProtectionDomain,
    completions: borrowing CompletionQueue, owner: borrowing Owner
  ) {
    self.raw = connectionID.pointee.qp
    self.connectionID = connectionID
  }

  @_lifetime(borrow pd, borrow sendCompletions, borrow receiveCompletions)
  init(
    pd: borrowing ProtectionDomain, sendCompletions: borrowing CompletionQueue,
    receiveCompletions: borrowing CompletionQueue, capacity: QueuePairCapacity
  ) throws(VerbsError) {
    raw = try pd.core.createQueuePair(
      send: sendCompletions.raw, receive: receiveCompletions.raw, capacity: capacity)
    connectionID = nil
  }

  deinit {
    if let connectionID { rdma_destroy_qp(connectionID) } else { _ = ibv_destroy_qp(raw) }
  }

  /// Destroys the queue pair now and reports failure. The C function is
  /// `ibv_destroy_qp` (`rdma_destroy_qp` for one made by librdmacm).
  public consuming func destroy() throws(VerbsError) {
    let raw = self.raw
    let connectionID = self.connectionID
    discard self
    if let connectionID {
      rdma_destroy_qp(connectionID)
      return
    }
    try QueuePairCore(raw: raw).destroy()
  }

  /// The queue pair number (`qp_num`).
  public var number: UInt32 { core.number }

  /// Describes this side for the peer: its QP number, a random starting
  /// PSN, and the port's LID, GID (the first RoCE v2 IPv4-mapped GID on
  /// Ethernet, else index 0) and active MTU.
  public func endpoint(port: Int = 1, gidIndex: Int? = nil) throws(VerbsError) -> QueuePairEndpoint
  {
    try core.endpoint(port: port, gidIndex: gidIndex)
  }

  /// Moves the queue pair through INIT, RTR and RTS so it talks to `remote`.
  /// The C function is `ibv_modify_qp`.
  ///
  /// - Parameters:
  ///   - remote: the peer's endpoint, exchanged out of band.
  ///   - local: this side's endpoint, from ``endpoint(port:gidIndex:)``.
  ///   - access: what the peer may do to memory through this QP.
  ///   - readAtomics: outstanding RDMA READ/atomic operations each way.
  public func connect(
    to remote: QueuePairEndpoint, from local: QueuePairEndpoint,
    access: MemoryAccess = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic],
    readAtomics: Int = 16
  ) throws(VerbsError) {
    try core.connect(to: remote, from: local, access: access, readAtomics: readAtomics)
  }

  /// Connects this queue pair and `other`, on the same device, to each
  /// other: both endpoints are taken from ``endpoint(port:gidIndex:)`` and
  /// each side is moved to RTS with ``connect(to:from:access:readAtomics:)``.
  /// Handy for loopback tests and self-checks; rxe routes the traffic
  /// through its internal loopback path.
  public func connectLoopback(
    with other: borrowing QueuePair,
    access: MemoryAccess = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic]
  ) throws(VerbsError) {
    try core.connectLoopback(with: other.core, access: access)
  }

  /// Posts one receive. The C function is `ibv_post_recv`.
  public func postReceive(_ element: ScatterGatherElement, id: UInt64) throws(VerbsError) {
    try core.postReceive(element, id: id)
  }

  /// Posts one send-queue work request using `element` as the local memory
  /// (source for SEND/WRITE/atomics' operand, destination for READ and atomic results).
  /// The C function is `ibv_post_send`.
  public func postSend(
    _ operation: SendOperation, _ element: ScatterGatherElement, id: UInt64,
    signaled: Bool = true, inline: Bool = false
  ) throws(VerbsError) {
    try core.postSend(operation, element, id: id, signaled: signaled, inline: inline)
  }
}
