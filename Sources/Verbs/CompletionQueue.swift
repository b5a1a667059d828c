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

  @_lifetime(borrow context)
  init(context: borrowing DeviceContext, entries: Int) throws(VerbsError) {
    (raw, channel) = try CompletionQueue.create(context: context.raw, entries: entries)
  }

  /// Creates a queue on a device context that another library owns
  /// (librdmacm's `cm_id->verbs`); the queue borrows `owner`, the value
  /// that keeps that context open.
  @_lifetime(borrow owner)
  package init<Owner: ~Copyable>(
    context: UnsafeMutablePointer<ibv_context>, entries: Int, owner: borrowing Owner
  ) throws(VerbsError) {
    (raw, channel) = try CompletionQueue.create(context: context, entries: entries)
  }

  static func create(
    context: UnsafeMutablePointer<ibv_context>, entries: Int
  ) throws(VerbsError) -> (UnsafeMutablePointer<ibv_cq>, UnsafeMutablePointer<ibv_comp_channel>) {
    guard entries > 0, let count = Int32(exactly: entries) else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_create_cq", errno: EINVAL,
        message: "a completion queue needs between 1 and Int32.max entries; got \(entries)",
        checkedBeforeCall: true)
    }
    guard let channel = ibv_create_comp_channel(context) else {
      throw VerbsError(
        .resourceExhausted, operation: "ibv_create_comp_channel", errno: CRDMA_errno(),
        message: "could not create a completion channel (file descriptors exhausted?)")
    }
    let flags = fcntl(channel.pointee.fd, F_GETFL)
    _ = fcntl(channel.pointee.fd, F_SETFL, flags | O_NONBLOCK)
    guard let cq = ibv_create_cq(context, count, nil, channel, 0) else {
      let code = CRDMA_errno()
      _ = ibv_destroy_comp_channel(channel)
      throw VerbsError(
        .resourceExhausted, operation: "ibv_create_cq", errno: code,
        message: "the device refused a completion queue of \(entries) entries; "
          + "see attributes().maxCompletionQueueEntries")
    }
    return (cq, channel)
  }

  deinit {
    _ = ibv_destroy_cq(raw)
    _ = ibv_destroy_comp_channel(channel)
  }

  /// The number of entries the device actually gave the queue (`cqe`).
  public var capacity: Int { Int(raw.pointee.cqe) }

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
    var wc = ibv_wc()
    var taken = 0
    while taken < maximum {
      let n = ibv_poll_cq(raw, 1, &wc)
      if n < 0 {
        throw VerbsError(
          .other, operation: "ibv_poll_cq", errno: -n,
          message: "polling the completion queue failed")
      }
      if n == 0 { break }
      body(WorkCompletion(wc))
      taken += 1
    }
    return taken
  }

  /// Waits until `count` completions have arrived, sleeping on the
  /// completion channel between polls, and returns them in order.
  ///
  /// Throws ``VerbsError/Code/timedOut`` after `timeout` with the number seen.
  /// The C functions are `ibv_req_notify_cq`, `ibv_get_cq_event` and `ibv_ack_cq_events`.
  public func wait(
    for count: Int, timeout: Duration = .seconds(10)
  ) throws(VerbsError) -> [WorkCompletion] {
    var completions: [WorkCompletion] = []
    completions.reserveCapacity(count)
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while completions.count < count {
      try poll(maximum: count - completions.count) { completions.append($0) }
      if completions.count >= count { break }
      // Arm, then poll again: a completion that slipped in before arming
      // raises no event.
      let armed = ibv_req_notify_cq(raw, 0)
      if armed != 0 {
        throw VerbsError(
          .other, operation: "ibv_req_notify_cq", errno: armed,
          message: "could not arm the completion queue")
      }
      if try poll(maximum: count - completions.count, { completions.append($0) }) > 0 { continue }
      let left = clock.now.duration(to: deadline)
      if left <= .zero {
        throw VerbsError(
          .timedOut, operation: "ibv_get_cq_event", errno: ETIMEDOUT,
          message: "only \(completions.count) of \(count) completions arrived within \(timeout); "
            + "the peer may be gone or the work requests were never posted")
      }
      try waitForEvent(milliseconds: Int32(clamping: max(1, left.milliseconds)))
    }
    return completions
  }

  func waitForEvent(milliseconds: Int32) throws(VerbsError) {
    var descriptor = pollfd(fd: channel.pointee.fd, events: Int16(POLLIN), revents: 0)
    let ready = Glibc.poll(&descriptor, 1, milliseconds)
    if ready < 0 {
      let code = errno
      if code == EINTR { return }
      throw VerbsError(
        .other, operation: "poll", errno: code,
        message: "waiting on the completion channel failed")
    }
    guard ready > 0 else { return }
    var cq: UnsafeMutablePointer<ibv_cq>? = nil
    var context: UnsafeMutableRawPointer? = nil
    if ibv_get_cq_event(channel, &cq, &context) == 0, let cq {
      ibv_ack_cq_events(cq, 1)
    }
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
  public func checkSuccess() throws(VerbsError) {
    guard !status.isSuccess else { return }
    throw VerbsError(
      .completionError, operation: "ibv_poll_cq", errno: EIO,
      message: "work request \(id) (\(opcode)) completed with status '\(status)' "
        + "(vendor error 0x\(String(vendorError, radix: 16)))")
  }

  /// `id: opcode status, N bytes`.
  public var description: String { "wr \(id): \(opcode) \(status), \(byteLength) bytes" }
}
