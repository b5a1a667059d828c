internal import CRDMA
public import Verbs

#if canImport(Glibc)
  import Glibc
#endif

extension ConnectionID {
  /// Allocates a protection domain on the id's device; it borrows the id.
  /// Available once the id has a device: after address resolution, or on an
  /// id from ``nextRequest(timeout:)``. The C function is `ibv_alloc_pd`.
  @_lifetime(borrow self)
  public func allocateProtectionDomain() throws(CMError) -> ProtectionDomain {
    let verbs = try device(for: "ibv_alloc_pd")
    guard let pd = ibv_alloc_pd(verbs) else {
      throw CMError(
        VerbsError(
          .resourceExhausted, operation: "ibv_alloc_pd", errno: CRDMA_errno(),
          message: "the device refused a new protection domain"))
    }
    return ProtectionDomain(raw: pd, owner: self)
  }

  /// The attributes of the id's device, such as its page-size bitmap and
  /// read/atomic limits. Available once the id has a device. The C function
  /// is `ibv_query_device_ex`.
  public func deviceAttributes() throws(CMError) -> DeviceAttributes {
    let verbs = try device(for: "ibv_query_device_ex")
    do {
      return try DeviceAttributes.query(verbs)
    } catch {
      throw CMError(error)
    }
  }

  /// Creates a completion queue, with its own completion channel, on the
  /// id's device; it borrows the id. The C function is `ibv_create_cq`.
  @_lifetime(borrow self)
  public func createCompletionQueue(entries: Int) throws(CMError) -> CompletionQueue {
    let verbs = try device(for: "ibv_create_cq")
    do {
      return try CompletionQueue(context: verbs, entries: entries, owner: self)
    } catch {
      throw CMError(error)
    }
  }

  /// Creates the id's reliable-connected queue pair, whose send and receive
  /// completions both go to `completions`. librdmacm then drives its state
  /// during connect, accept and disconnect. The queue pair borrows the id,
  /// the domain and the queue, and is destroyed with `rdma_destroy_qp`.
  /// The C function is `rdma_create_qp`.
  @_lifetime(borrow self, borrow pd, borrow completions)
  public func createQueuePair(
    pd: borrowing ProtectionDomain, completions: borrowing CompletionQueue,
    capacity: QueuePairCapacity = QueuePairCapacity()
  ) throws(CMError) -> QueuePair {
    _ = try makeQueuePair(
      pd: pd.raw, send: completions.raw, receive: completions.raw, capacity: capacity)
    return QueuePair(adopting: raw, pd: pd, completions: completions, owner: self)
  }

  /// Makes the id's queue pair with `rdma_create_qp`, for both tiers.
  func makeQueuePair(
    pd: UnsafeMutablePointer<ibv_pd>, send: UnsafeMutablePointer<ibv_cq>,
    receive: UnsafeMutablePointer<ibv_cq>, capacity: QueuePairCapacity
  ) throws(CMError) -> UnsafeMutablePointer<ibv_qp> {
    var attr = ibv_qp_init_attr()
    attr.send_cq = send
    attr.recv_cq = receive
    attr.qp_type = IBV_QPT_RC
    attr.sq_sig_all = 0
    guard let sendRequests = UInt32(exactly: capacity.sendRequests),
      let receiveRequests = UInt32(exactly: capacity.receiveRequests),
      let sendSGE = UInt32(exactly: capacity.sendScatterGather),
      let receiveSGE = UInt32(exactly: capacity.receiveScatterGather),
      let inline = UInt32(exactly: capacity.inlineData)
    else {
      throw CMError(
        .invalidArgument, operation: "rdma_create_qp", errno: EINVAL,
        message: "queue pair capacities must fit in 32 bits; got \(capacity)")
    }
    attr.cap = ibv_qp_cap(
      max_send_wr: sendRequests, max_recv_wr: receiveRequests, max_send_sge: sendSGE,
      max_recv_sge: receiveSGE, max_inline_data: inline)
    // The rules librdmacm answers with a bare EINVAL, checked here so the
    // error says which one; an EINVAL after them is the connection's state.
    let verbs = try device(for: "rdma_create_qp")
    guard raw.pointee.qp == nil else {
      throw CMError(
        .invalidArgument, operation: "rdma_create_qp", errno: EINVAL,
        message: "this id has a queue pair already; an id carries one, so create another id")
    }
    guard pd.pointee.context == verbs, send.pointee.context == verbs,
      receive.pointee.context == verbs
    else {
      throw CMError(
        .invalidArgument, operation: "rdma_create_qp", errno: EINVAL,
        message: "the protection domain and the completion queue must come from this id's "
          + "device; allocate them through the id")
    }
    if rdma_create_qp(raw, pd, &attr) != 0 {
      let code = CRDMA_errno()
      throw CMError(Self.queuePairRefusal(errno: code, capacity: capacity))
    }
    return raw.pointee.qp
  }

  /// Waits until `completions` has at least one work completion, and returns
  /// up to `maximum` of them. Sleeps in `poll(2)` on both the queue's
  /// completion channel and this id's event channel, so a peer that goes
  /// away ends the wait with ``CMError/Code/disconnected`` (or the event that
  /// said so) instead of a hang. Completions that arrived before such an
  /// event are returned first; the event ends the following call. Returns an
  /// empty array when `timeout` passes.
  ///
  /// The C functions are `ibv_poll_cq`, `ibv_req_notify_cq`,
  /// `ibv_get_cq_event`, `ibv_ack_cq_events` and `rdma_get_cm_event`.
  public func waitForCompletions(
    on completions: borrowing CompletionQueue, maximum: Int = 16, timeout: Duration? = nil
  ) throws(CMError) -> [WorkCompletion] {
    let clock = ContinuousClock()
    let deadline = timeout.map { clock.now.advanced(by: $0) }
    let core = completions.core
    while true {
      var found: [WorkCompletion] = []
      do throws(VerbsError) {
        if try core.drainOrArm(maximum: maximum, { found.append($0) }) > 0 { return found }
      } catch {
        throw CMError(error)
      }
      var ms: Int32 = -1
      if let deadline {
        let left = clock.now.duration(to: deadline)
        if left <= .zero { return [] }
        ms = Int32(clamping: max(1, left.milliseconds))
      }
      var descriptors = [
        pollfd(fd: core.channel.pointee.fd, events: Int16(POLLIN), revents: 0),
        pollfd(fd: channel.pointee.fd, events: Int16(POLLIN), revents: 0),
      ]
      if Glibc.poll(&descriptors, 2, ms) < 0 && errno != EINTR {
        throw CMError(
          .other, operation: "poll", errno: errno,
          message: "waiting for completions and events failed")
      }
      // Completions first: when the queue's channel is readable, take its
      // events and drain the queue on the next turn, leaving any
      // connection event queued until the completions are out.
      if descriptors[0].revents != 0 {
        core.acknowledgeEvents()
        continue
      }
      if descriptors[1].revents != 0 {
        // A connection event waits. Completions that arrived before it (a
        // peer's last SEND, then its disconnect) are delivered first; the
        // event stays queued and ends the next call.
        do throws(VerbsError) {
          if try core.drainOrArm(maximum: maximum, { found.append($0) }) > 0 { return found }
        } catch {
          throw CMError(error)
        }
        if let event = try takeEvent(), let failure = event.kind.failure {
          throw CMError(
            failure, operation: "ibv_poll_cq", event: event.kind, status: event.status,
            message: ConnectionID.explain(event, peer: peerAddress))
        }
      }
    }
  }

  /// Why `rdma_create_qp` refused, once the id, domain and queue passed the
  /// checks above. EINVAL then comes from the kernel's connection state: on
  /// an id from a connection request, the request went stale (the peer gave
  /// up, timed out or was rejected before it was served).
  static func queuePairRefusal(errno code: Int32, capacity: QueuePairCapacity) -> VerbsError {
    if code == EINVAL {
      return VerbsError(
        .invalidArgument, operation: "rdma_create_qp", errno: code,
        message: "the connection is no longer in a state that takes a queue pair: for an id "
          + "from a connection request, the request went stale (the peer gave up, timed out "
          + "or was rejected before it was served); drop this id and take the next request")
    }
    return VerbsError(
      .resourceExhausted, operation: "rdma_create_qp", errno: code,
      message: "the device refused a queue pair with \(capacity)")
  }

  func device(for operation: String) throws(CMError) -> UnsafeMutablePointer<ibv_context> {
    guard let verbs = raw.pointee.verbs else {
      throw CMError(
        .invalidArgument, operation: operation, errno: ENODEV,
        message: "the id has no RDMA device yet; resolve an address first, "
          + "or use the id a connection request gave you")
    }
    return verbs
  }
}
