package import CRDMA

#if canImport(Glibc)
  import Glibc
#endif

/// A completion queue with its own completion channel, so waiting for work
/// to finish sleeps in `poll(2)` instead of spinning.
/// Wraps `struct ibv_cq` and `struct ibv_comp_channel`
/// (`ibv_create_cq`, `ibv_create_comp_channel`, `ibv_destroy_cq`).
public struct CompletionQueue: ~Copyable, ~Escapable {
  package let raw: UnsafeMutablePointer<ibv_cq>
  package let channel: UnsafeMutablePointer<ibv_comp_channel>

  package var core: CompletionQueueCore { CompletionQueueCore(raw: raw, channel: channel) }

  @_lifetime(borrow context)
  init(context: borrowing DeviceContext, entries: Int) throws(VerbsError) {
    let core = try CompletionQueueCore.create(context: context.raw, entries: entries)
    (raw, channel) = (core.raw, core.channel)
  }

  /// Creates a queue on a device context that another library owns
  /// (librdmacm's `cm_id->verbs`); the queue borrows `owner`, the value
  /// that keeps that context open.
  @_lifetime(borrow owner)
  package init<Owner: ~Copyable>(
    context: UnsafeMutablePointer<ibv_context>, entries: Int, owner: borrowing Owner
  ) throws(VerbsError) {
    let core = try CompletionQueueCore.create(context: context, entries: entries)
    (raw, channel) = (core.raw, core.channel)
  }

  deinit { try? CompletionQueueCore(raw: raw, channel: channel).destroy() }

  /// Destroys the queue and its channel now and reports failure. The C
  /// functions are `ibv_destroy_cq` and `ibv_destroy_comp_channel`.
  public consuming func destroy() throws(VerbsError) {
    let core = self.core
    discard self
    try core.destroy()
  }

  /// The number of entries the device actually gave the queue (`cqe`).
  public var capacity: Int { core.capacity }

  /// Takes up to `maximum` completions without waiting. The C function is `ibv_poll_cq`.
  public func poll(maximum: Int = 16) throws(VerbsError) -> [WorkCompletion] {
    var completions: [WorkCompletion] = []
    try poll(maximum: maximum) { completions.append($0) }
    return completions
  }

  /// Takes up to `maximum` completions without waiting and hands each to
  /// `body`; returns how many there were. No allocation.
  @discardableResult
  public func poll(maximum: Int = 16, _ body: (WorkCompletion) -> Void) throws(VerbsError) -> Int {
    try core.poll(maximum: maximum, body)
  }

  /// Waits until `count` completions have arrived, sleeping on the
  /// completion channel between polls, and returns them in order.
  ///
  /// Throws ``VerbsError/Code/timedOut`` after `timeout` with the number seen.
  /// The C functions are `ibv_req_notify_cq`, `ibv_get_cq_event` and `ibv_ack_cq_events`.
  public func wait(
    for count: Int, timeout: Duration = .seconds(10)
  ) throws(VerbsError) -> [WorkCompletion] {
    try core.wait(for: count, timeout: timeout)
  }
}

extension Duration {
  var milliseconds: Int64 {
    let (seconds, attoseconds) = components
    return seconds * 1000 + attoseconds / 1_000_000_000_000_000
  }
}

/// The outcome of one work request (`struct ibv_wc`).
public struct WorkCompletion: Sendable, Hashable, CustomStringConvertible {
  /// The `wr_id` the request was posted with.
  public var id: UInt64
  /// Success, or why it failed.
  public var status: Status
  /// What kind of request finished.
  public var opcode: Opcode
  /// Bytes received, for receive completions (`byte_len`).
  public var byteLength: UInt32
  /// Immediate data, when the sender attached some (`imm_data`, host order).
  public var immediate: UInt32?
  /// The local queue pair number (`qp_num`).
  public var queuePairNumber: UInt32
  /// Vendor-specific error detail (`vendor_err`).
  public var vendorError: UInt32

  /// A completion status (`enum ibv_wc_status`).
  public struct Status: Sendable, Hashable, CustomStringConvertible {
    /// The raw `IBV_WC_*` value.
    public var rawValue: UInt32
    /// `IBV_WC_SUCCESS`.
    public static let success = Status(rawValue: IBV_WC_SUCCESS.rawValue)
    /// True for `IBV_WC_SUCCESS`.
    public var isSuccess: Bool { self == .success }
    /// The text `ibv_wc_status_str` gives, such as `remote access error`.
    public var description: String {
      String(cString: ibv_wc_status_str(ibv_wc_status(rawValue: rawValue)))
    }

    /// What the status usually means and what to look at.
    public var advice: String {
      switch ibv_wc_status(rawValue: rawValue) {
      case IBV_WC_LOC_PROT_ERR:
        "a local key (lkey) in the request does not name a live region of this queue pair's "
          + "protection domain that covers those bytes: the region was deregistered (closed), "
          + "belongs to another domain, or the entry runs past its end"
      case IBV_WC_REM_ACCESS_ERR:
        "the peer refused the remote key: its region was deregistered or is unknown there, the "
          + "address range runs outside it, or it lacks the remote access this operation needs"
      case IBV_WC_LOC_QP_OP_ERR:
        "the request could not be carried out locally; most often a local key (lkey) that is "
          + "not, or no longer, registered (soft-RoCE reports a deregistered lkey this way), "
          + "or an entry that runs past its region"
      case IBV_WC_LOC_ACCESS_ERR:
        "the local region lacks local-write, which receives and READ responses need"
      case IBV_WC_WR_FLUSH_ERR:
        "the queue pair had already failed, so this request was flushed; the first failed "
          + "completion says why (soft-RoCE on Linux 7.x reports a request whose local key was "
          + "deregistered this way, with no earlier failed completion)"
      case IBV_WC_RETRY_EXC_ERR:
        "the peer did not acknowledge: it is gone, unreachable, or its queue pair is not connected"
      case IBV_WC_RNR_RETRY_EXC_ERR:
        "the peer had no receive posted for a SEND; post receives before the sender sends"
      case IBV_WC_REM_INV_REQ_ERR:
        "the peer found the request invalid, for example longer than its posted receive"
      case IBV_WC_LOC_LEN_ERR:
        "a message was longer than the receive buffer, or a request exceeded the port's limits"
      case IBV_WC_REM_OP_ERR:
        "the peer could not complete the operation (its queue pair or memory failed)"
      default:
        "see the vendor error and the device's documentation"
      }
    }
  }

  /// Completed operations (`enum ibv_wc_opcode`).
  public enum Opcode: Sendable, Hashable {
    /// A SEND finished.
    case send
    /// An RDMA WRITE finished.
    case rdmaWrite
    /// An RDMA READ finished.
    case rdmaRead
    /// An atomic compare-and-swap finished.
    case compareAndSwap
    /// An atomic fetch-and-add finished.
    case fetchAndAdd
    /// A receive was filled by a SEND.
    case receive
    /// A receive was consumed by an RDMA WRITE with immediate.
    case receiveRDMAWithImmediate
    /// Anything else, with the raw code.
    case other(UInt32)
  }

  init(_ wc: ibv_wc) {
    id = wc.wr_id
    status = Status(rawValue: wc.status.rawValue)
    opcode =
      switch wc.opcode {
      case IBV_WC_SEND: .send
      case IBV_WC_RDMA_WRITE: .rdmaWrite
      case IBV_WC_RDMA_READ: .rdmaRead
      case IBV_WC_COMP_SWAP: .compareAndSwap
      case IBV_WC_FETCH_ADD: .fetchAndAdd
      case IBV_WC_RECV: .receive
      case IBV_WC_RECV_RDMA_WITH_IMM: .receiveRDMAWithImmediate
      default: .other(wc.opcode.rawValue)
      }
    byteLength = wc.byte_len
    immediate =
      wc.wc_flags & UInt32(IBV_WC_WITH_IMM.rawValue) != 0 ? UInt32(bigEndian: wc.imm_data) : nil
    queuePairNumber = wc.qp_num
    vendorError = wc.vendor_err
  }

  /// Throws ``VerbsError/Code/completionError`` unless the status is success.
  ///
  /// The message names the work request and its status and says what the
  /// status usually means. It does not name the opcode: the verbs
  /// specification leaves `opcode` undefined in a failed completion.
  public func checkSuccess() throws(VerbsError) {
    guard !status.isSuccess else { return }
    throw VerbsError(
      .completionError, operation: "ibv_poll_cq", errno: EIO,
      message: "work request \(id) completed with status '\(status)' "
        + "(vendor error 0x\(String(vendorError, radix: 16))): \(status.advice)")
  }

  /// `wr ID: opcode status, N bytes`; a failed completion's opcode is
  /// undefined, so it is not printed.
  public var description: String {
    status.isSuccess
      ? "wr \(id): \(opcode) \(status), \(byteLength) bytes"
      : "wr \(id): \(status) (opcode undefined for a failed completion)"
  }
}
