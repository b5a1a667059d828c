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
/// and both completion queues.
public struct QueuePair: ~Copyable, ~Escapable {
  package let raw: UnsafeMutablePointer<ibv_qp>
  /// Set when librdmacm created the queue pair on this connection id
  /// (`rdma_create_qp`); it is then destroyed with `rdma_destroy_qp`, which
  /// also clears `cm_id->qp`.
  package let connectionID: UnsafeMutablePointer<rdma_cm_id>?

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
    func u32(_ value: Int, _ name: String) throws(VerbsError) -> UInt32 {
      guard let v = UInt32(exactly: value) else {
        throw VerbsError(
          .invalidArgument, operation: "ibv_create_qp", errno: EINVAL,
          message: "\(name) must be between 0 and \(UInt32.max); got \(value)",
          checkedBeforeCall: true)
      }
      return v
    }
    var attr = ibv_qp_init_attr()
    attr.send_cq = sendCompletions.raw
    attr.recv_cq = receiveCompletions.raw
    attr.qp_type = IBV_QPT_RC
    attr.sq_sig_all = 0
    attr.cap.max_send_wr = try u32(capacity.sendRequests, "sendRequests")
    attr.cap.max_recv_wr = try u32(capacity.receiveRequests, "receiveRequests")
    attr.cap.max_send_sge = try u32(capacity.sendScatterGather, "sendScatterGather")
    attr.cap.max_recv_sge = try u32(capacity.receiveScatterGather, "receiveScatterGather")
    attr.cap.max_inline_data = try u32(capacity.inlineData, "inlineData")
    guard let qp = ibv_create_qp(pd.raw, &attr) else {
      let code = CRDMA_errno()
      throw VerbsError(
        .resourceExhausted, operation: "ibv_create_qp", errno: code,
        message: "the device refused a queue pair with \(capacity); "
          + "compare with attributes().maxWorkRequestsPerQueue and maxQueuePairs")
    }
    raw = qp
    connectionID = nil
  }

  deinit {
    if let connectionID { rdma_destroy_qp(connectionID) } else { _ = ibv_destroy_qp(raw) }
  }

  /// Destroys the queue pair now and reports failure. The C function is `ibv_destroy_qp`.
  public consuming func destroy() throws(VerbsError) {
    let raw = self.raw
    let connectionID = self.connectionID
    discard self
    if let connectionID {
      rdma_destroy_qp(connectionID)
      return
    }
    let result = ibv_destroy_qp(raw)
    if result != 0 {
      throw VerbsError(
        .other, operation: "ibv_destroy_qp", errno: result,
        message: "the device failed to destroy the queue pair")
    }
  }

  /// The queue pair number (`qp_num`).
  public var number: UInt32 { raw.pointee.qp_num }

  /// Describes this side for the peer: its QP number, a random starting
  /// PSN, and the port's LID, GID (the first RoCE v2 IPv4-mapped GID on
  /// Ethernet, else index 0) and active MTU.
  public func endpoint(port: Int = 1, gidIndex: Int? = nil) throws(VerbsError) -> QueuePairEndpoint
  {
    let context = DeviceContextView(raw: raw.pointee.context)
    let attributes = try context.port(port)
    let gids = try context.gids(port: port)
    let chosen: GIDEntry? =
      if let gidIndex { gids.first { $0.index == gidIndex } } else {
        gids.first { $0.type == .roceV2 && $0.gid.ipv4Address != nil } ?? gids.first
      }
    if attributes.linkLayer == .ethernet && chosen == nil {
      throw VerbsError(
        .invalidArgument, operation: "ibv_query_gid_table", errno: ENODATA,
        message: "port \(port) has no usable GID; on RoCE give the netdev an IP address")
    }
    return QueuePairEndpoint(
      queuePairNumber: number, packetSequenceNumber: UInt32.random(in: 0..<(1 << 24)),
      lid: attributes.lid, gid: chosen?.gid, gidIndex: chosen?.index ?? 0, port: port,
      mtu: attributes.activeMTU)
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
    let port = UInt8(truncatingIfNeeded: local.port)
    let rd = UInt8(clamping: readAtomics)

    var attr = ibv_qp_attr()
    attr.qp_state = IBV_QPS_INIT
    attr.pkey_index = 0
    attr.port_num = port
    attr.qp_access_flags = access.rawValue
    try modify(&attr, [IBV_QP_STATE, IBV_QP_PKEY_INDEX, IBV_QP_PORT, IBV_QP_ACCESS_FLAGS], "INIT")

    attr = ibv_qp_attr()
    attr.qp_state = IBV_QPS_RTR
    attr.path_mtu = QueuePair.mtu(min(local.mtu, remote.mtu))
    attr.dest_qp_num = remote.queuePairNumber
    attr.rq_psn = remote.packetSequenceNumber
    attr.max_dest_rd_atomic = rd
    attr.min_rnr_timer = 12
    attr.ah_attr.dlid = remote.lid
    attr.ah_attr.sl = 0
    attr.ah_attr.src_path_bits = 0
    attr.ah_attr.port_num = port
    if let gid = remote.gid {
      attr.ah_attr.is_global = 1
      attr.ah_attr.grh.dgid = gid.raw
      attr.ah_attr.grh.sgid_index = UInt8(truncatingIfNeeded: local.gidIndex)
      attr.ah_attr.grh.hop_limit = 64
    }
    try modify(
      &attr,
      [
        IBV_QP_STATE, IBV_QP_AV, IBV_QP_PATH_MTU, IBV_QP_DEST_QPN, IBV_QP_RQ_PSN,
        IBV_QP_MAX_DEST_RD_ATOMIC, IBV_QP_MIN_RNR_TIMER,
      ], "RTR")

    attr = ibv_qp_attr()
    attr.qp_state = IBV_QPS_RTS
    attr.timeout = 14
    attr.retry_cnt = 7
    attr.rnr_retry = 7
    attr.sq_psn = local.packetSequenceNumber
    attr.max_rd_atomic = rd
    try modify(
      &attr,
      [
        IBV_QP_STATE, IBV_QP_TIMEOUT, IBV_QP_RETRY_CNT, IBV_QP_RNR_RETRY, IBV_QP_SQ_PSN,
        IBV_QP_MAX_QP_RD_ATOMIC,
      ], "RTS")
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
    let mine = try endpoint()
    let theirs = try other.endpoint()
    try connect(to: theirs, from: mine, access: access)
    try other.connect(to: mine, from: theirs, access: access)
  }

  func modify(_ attr: inout ibv_qp_attr, _ mask: [ibv_qp_attr_mask], _ state: String)
    throws(VerbsError)
  {
    let bits = mask.reduce(UInt32(0)) { $0 | $1.rawValue }
    let result = ibv_modify_qp(raw, &attr, Int32(bitPattern: bits))
    if result != 0 {
      throw VerbsError(
        .invalidArgument, operation: "ibv_modify_qp", errno: result,
        message: "moving queue pair \(number) to \(state) failed; check the peer's "
          + "endpoint (QP number, GID, port) and the device limits")
    }
  }

  static func mtu(_ bytes: Int) -> ibv_mtu {
    switch bytes {
    case ..<512: IBV_MTU_256
    case ..<1024: IBV_MTU_512
    case ..<2048: IBV_MTU_1024
    case ..<4096: IBV_MTU_2048
    default: IBV_MTU_4096
    }
  }

  /// Posts one receive. The C function is `ibv_post_recv`.
  public func postReceive(_ element: ScatterGatherElement, id: UInt64) throws(VerbsError) {
    var sge = ibv_sge(addr: element.address, length: element.length, lkey: element.lkey)
    let result = withUnsafeMutablePointer(to: &sge) { sgePointer in
      var wr = ibv_recv_wr()
      wr.wr_id = id
      wr.sg_list = sgePointer
      wr.num_sge = 1
      var bad: UnsafeMutablePointer<ibv_recv_wr>? = nil
      return ibv_post_recv(raw, &wr, &bad)
    }
    if result != 0 {
      throw VerbsError(
        .resourceExhausted, operation: "ibv_post_recv", errno: result,
        message: "the receive queue is full or the QP is in an error state")
    }
  }

  /// Posts one send-queue work request using `element` as the local memory
  /// (source for SEND/WRITE/atomics' operand, destination for READ and atomic results).
  /// The C function is `ibv_post_send`.
  public func postSend(
    _ operation: SendOperation, _ element: ScatterGatherElement, id: UInt64,
    signaled: Bool = true, inline: Bool = false
  ) throws(VerbsError) {
    var sge = ibv_sge(addr: element.address, length: element.length, lkey: element.lkey)
    let result = withUnsafeMutablePointer(to: &sge) { sgePointer in
      var wr = ibv_send_wr()
      wr.wr_id = id
      wr.sg_list = sgePointer
      wr.num_sge = 1
      var flags: UInt32 = 0
      if signaled { flags |= IBV_SEND_SIGNALED.rawValue }
      if inline { flags |= IBV_SEND_INLINE.rawValue }
      wr.send_flags = flags
      switch operation {
      case .send:
        wr.opcode = IBV_WR_SEND
      case .sendWithImmediate(let value):
        wr.opcode = IBV_WR_SEND_WITH_IMM
        wr.imm_data = value.bigEndian
      case .write(let remote):
        wr.opcode = IBV_WR_RDMA_WRITE
        wr.wr.rdma.remote_addr = remote.address
        wr.wr.rdma.rkey = remote.rkey
      case .writeWithImmediate(let remote, let value):
        wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM
        wr.wr.rdma.remote_addr = remote.address
        wr.wr.rdma.rkey = remote.rkey
        wr.imm_data = value.bigEndian
      case .read(let remote):
        wr.opcode = IBV_WR_RDMA_READ
        wr.wr.rdma.remote_addr = remote.address
        wr.wr.rdma.rkey = remote.rkey
      case .compareAndSwap(let remote, let expected, let desired):
        wr.opcode = IBV_WR_ATOMIC_CMP_AND_SWP
        wr.wr.atomic.remote_addr = remote.address
        wr.wr.atomic.rkey = remote.rkey
        wr.wr.atomic.compare_add = expected
        wr.wr.atomic.swap = desired
      case .fetchAndAdd(let remote, let add):
        wr.opcode = IBV_WR_ATOMIC_FETCH_AND_ADD
        wr.wr.atomic.remote_addr = remote.address
        wr.wr.atomic.rkey = remote.rkey
        wr.wr.atomic.compare_add = add
      }
      var bad: UnsafeMutablePointer<ibv_send_wr>? = nil
      return ibv_post_send(raw, &wr, &bad)
    }
    if result != 0 {
      throw VerbsError(
        .resourceExhausted, operation: "ibv_post_send", errno: result,
        message: "the send queue is full, the QP is not connected (RTS), "
          + "or the request exceeds its limits")
    }
  }
}

/// A non-owning view of a context, for queries made on behalf of a child.
struct DeviceContextView {
  package let raw: UnsafeMutablePointer<ibv_context>?

  func port(_ number: Int) throws(VerbsError) -> PortAttributes {
    var attr = ibv_port_attr()
    let result = CRDMA_query_port(raw, UInt8(truncatingIfNeeded: number), &attr)
    if result != 0 {
      throw VerbsError(
        .invalidArgument, operation: "ibv_query_port", errno: result,
        message: "port \(number) could not be queried")
    }
    return PortAttributes(attr)
  }

  func gids(port number: Int) throws(VerbsError) -> [GIDEntry] {
    try GIDTable.read(raw, port: number, length: try port(number).gidTableLength)
  }
}

/// Reads a port's GID table (`ibv_query_gid_table`).
enum GIDTable {
  static func read(
    _ context: UnsafeMutablePointer<ibv_context>?, port number: Int, length: Int
  ) throws(VerbsError) -> [GIDEntry] {
    guard length > 0 else { return [] }
    var entries = [ibv_gid_entry](repeating: ibv_gid_entry(), count: length)
    let count = entries.withUnsafeMutableBufferPointer { buffer in
      ibv_query_gid_table(context, buffer.baseAddress, buffer.count, 0)
    }
    if count < 0 {
      throw VerbsError(
        .other, operation: "ibv_query_gid_table", errno: Int32(-count),
        message: "the GID table of port \(number) could not be read")
    }
    return entries.prefix(count).compactMap { entry in
      guard Int(entry.port_num) == number else { return nil }
      let kind: GIDEntry.Kind =
        switch entry.gid_type {
        case UInt32(IBV_GID_TYPE_ROCE_V1.rawValue): .roceV1
        case UInt32(IBV_GID_TYPE_ROCE_V2.rawValue): .roceV2
        default: .infiniband
        }
      return GIDEntry(index: Int(entry.gid_index), port: number, gid: GID(entry.gid), type: kind)
    }
  }
}
