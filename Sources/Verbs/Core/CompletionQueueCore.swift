package import CRDMA

#if canImport(Glibc)
  import Glibc
#endif

/// The calls made on a completion queue and its completion channel, written
/// once for both tiers: ``CompletionQueue`` (scoped) and
/// ``SharedCompletionQueue`` (owned). A non-owning view.
package struct CompletionQueueCore {
  package let raw: UnsafeMutablePointer<ibv_cq>
  package let channel: UnsafeMutablePointer<ibv_comp_channel>

  package init(raw: UnsafeMutablePointer<ibv_cq>, channel: UnsafeMutablePointer<ibv_comp_channel>) {
    self.raw = raw
    self.channel = channel
  }

  /// Creates a queue with its own non-blocking completion channel.
  /// The C functions are `ibv_create_comp_channel` and `ibv_create_cq`.
  static func create(
    context: UnsafeMutablePointer<ibv_context>, entries: Int
  ) throws(VerbsError) -> CompletionQueueCore {
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
    return CompletionQueueCore(raw: cq, channel: channel)
  }

  /// Destroys the queue, then its channel. The C functions are
  /// `ibv_destroy_cq` and `ibv_destroy_comp_channel`.
  func destroy() throws(VerbsError) {
    let result = ibv_destroy_cq(raw)
    if result != 0 {
      // The queue stays; so must its channel.
      throw VerbsError(
        result == EBUSY ? .busy : .other, operation: "ibv_destroy_cq", errno: result,
        message: "the completion queue is still used by a queue pair; destroy that first")
    }
    _ = ibv_destroy_comp_channel(channel)
  }

  /// The number of entries the device gave the queue (`cqe`).
  var capacity: Int { Int(raw.pointee.cqe) }

  /// Takes up to `maximum` completions without waiting and hands each to
  /// `body`; returns how many there were. The C function is `ibv_poll_cq`.
  func poll(maximum: Int, _ body: (WorkCompletion) -> Void) throws(VerbsError) -> Int {
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

  /// Waits until `count` completions have arrived, sleeping in `poll(2)` on
  /// the completion channel between polls. `stop` is asked between sleeps of
  /// at most `slice`; when it answers with an error, the wait ends with it.
  func wait(
    for count: Int, timeout: Duration, slice: Duration? = nil,
    stop: () -> VerbsError? = { nil }
  ) throws(VerbsError) -> [WorkCompletion] {
    var completions: [WorkCompletion] = []
    completions.reserveCapacity(max(0, min(count, 4096)))
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while completions.count < count {
      if try drainOrArm(maximum: count - completions.count, { completions.append($0) }) > 0 {
        continue
      }
      if let failure = stop() { throw failure }
      var left = clock.now.duration(to: deadline)
      if left <= .zero {
        throw VerbsError(
          .timedOut, operation: "ibv_get_cq_event", errno: ETIMEDOUT,
          message: "only \(completions.count) of \(count) completions arrived within \(timeout); "
            + "the peer may be gone or the work requests were never posted")
      }
      if let slice, left > slice { left = slice }
      try waitForEvent(milliseconds: Int32(clamping: max(1, left.milliseconds)))
    }
    return completions
  }

  /// The first step of every wait, synchronous or async: takes up to
  /// `maximum` completions; when there are none, arms the queue and polls
  /// once more, because a completion that arrived before the arm raises no
  /// event. Returns how many were taken; 0 means the queue is armed and the
  /// channel becomes readable with the next completion.
  /// The C functions are `ibv_poll_cq` and `ibv_req_notify_cq`.
  package func drainOrArm(maximum: Int, _ body: (WorkCompletion) -> Void) throws(VerbsError)
    -> Int
  {
    let taken = try poll(maximum: maximum, body)
    if taken > 0 { return taken }
    try arm()
    return try poll(maximum: maximum, body)
  }

  /// Asks for an event on the next completion. The C function is `ibv_req_notify_cq`.
  func arm() throws(VerbsError) {
    let armed = ibv_req_notify_cq(raw, 0)
    if armed != 0 {
      throw VerbsError(
        .other, operation: "ibv_req_notify_cq", errno: armed,
        message: "could not arm the completion queue")
    }
  }

  /// Sleeps in `poll(2)` until the channel is readable or `milliseconds`
  /// pass, then takes and acknowledges the events, if any.
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
    acknowledgeEvents()
  }

  /// The last step of every wait: takes every event waiting on the
  /// (non-blocking) channel and acknowledges them all, so that
  /// `ibv_destroy_cq` never waits for an event that was read but not
  /// acknowledged. Returns how many there were. The C functions are
  /// `ibv_get_cq_event` and `ibv_ack_cq_events`.
  @discardableResult
  package func acknowledgeEvents() -> Int {
    var cq: UnsafeMutablePointer<ibv_cq>? = nil
    var context: UnsafeMutableRawPointer? = nil
    var taken: UInt32 = 0
    while ibv_get_cq_event(channel, &cq, &context) == 0 { taken += 1 }
    // Every event of this channel names this queue (one queue per channel).
    if taken > 0 { ibv_ack_cq_events(raw, taken) }
    return Int(taken)
  }
}
