package import CRDMA

/// The calls made on a queue pair, written once for both tiers:
/// ``QueuePair`` (scoped) and ``SharedQueuePair`` (owned) forward here. A
/// non-owning view.
package struct QueuePairCore {
  package let raw: UnsafeMutablePointer<ibv_qp>

  package init(raw: UnsafeMutablePointer<ibv_qp>) { self.raw = raw }

  /// Destroys the queue pair. The C function is `ibv_destroy_qp`.
  func destroy() throws(VerbsError) {
    let result = ibv_destroy_qp(raw)
    if result != 0 {
      throw VerbsError(
        .other, operation: "ibv_destroy_qp", errno: result,
        message: "the device failed to destroy the queue pair")
    }
  }

  /// The queue pair number (`qp_num`).
  var number: UInt32 { raw.pointee.qp_num }

  /// Describes this side for the peer: its QP number, a random starting
  /// PSN, and the port's LID, GID (the first RoCE v2 IPv4-mapped GID on
  /// Ethernet, else index 0) and active MTU.
  func endpoint(port: Int = 1, gidIndex: Int? = nil) throws(VerbsError) -> QueuePairEndpoint {
    let context = DeviceContextCore(raw: raw.pointee.context)
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
  func connect(
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
    attr.path_mtu = QueuePairCore.mtu(min(local.mtu, remote.mtu))
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
  func connectLoopback(
    with other: QueuePairCore,
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
  func postReceive(_ element: ScatterGatherElement, id: UInt64) throws(VerbsError) {
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
  func postSend(
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
