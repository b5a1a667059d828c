package import CRDMA

#if canImport(Glibc)
  import Glibc
#endif

/// A connection-management identifier (`struct rdma_cm_id`) with its own
/// event channel (`struct rdma_event_channel`): the RDMA counterpart of a
/// socket. Clients resolve an address and route and connect; servers bind,
/// listen, and receive a new id for every connection request.
///
/// Each id owns its event channel, so waiting for its events never picks
/// up another connection's, and the channel always outlives the id.
/// Waiting sleeps in `poll(2)` on the channel's descriptor; nothing spins.
/// Destroyed with `rdma_destroy_id` and `rdma_destroy_event_channel`, in
/// that order, when dropped or by ``destroy()``. Verbs resources made on an
/// id (``allocateProtectionDomain()``, ``createCompletionQueue(entries:)``,
/// ``createQueuePair(pd:completions:capacity:)``) borrow it, so the
/// compiler rejects any that could outlive it.
public struct ConnectionID: ~Copyable {
  package let raw: UnsafeMutablePointer<rdma_cm_id>
  package let channel: UnsafeMutablePointer<rdma_event_channel>

  /// Creates an id for reliable connections (`RDMA_PS_TCP`, as rping uses).
  /// The C functions are `rdma_create_event_channel` and `rdma_create_id`.
  public init() throws(CMError) {
    let channel = try ConnectionID.makeChannel()
    var id: UnsafeMutablePointer<rdma_cm_id>? = nil
    guard rdma_create_id(channel, &id, nil, RDMA_PS_TCP) == 0, let id else {
      let code = CRDMA_errno()
      rdma_destroy_event_channel(channel)
      throw CMError(
        .other, operation: "rdma_create_id", errno: code,
        message: code == ENODEV || code == ENOENT
          ? "librdmacm found no RDMA device; load rdma_rxe and add rxe0 (or run under ci/rxe)"
          : "could not create a connection id")
    }
    self.init(raw: id, channel: channel)
  }

  init(raw: UnsafeMutablePointer<rdma_cm_id>, channel: UnsafeMutablePointer<rdma_event_channel>) {
    self.raw = raw
    self.channel = channel
  }

  static func makeChannel() throws(CMError) -> UnsafeMutablePointer<rdma_event_channel> {
    guard let channel = rdma_create_event_channel() else {
      let code = CRDMA_errno()
      throw CMError(
        .other, operation: "rdma_create_event_channel", errno: code,
        message: code == ENODEV || code == ENOENT
          ? "/dev/infiniband/rdma_cm is missing: load rdma_ucm (and an RDMA device such as rdma_rxe)"
          : "could not open the connection manager (/dev/infiniband/rdma_cm)")
    }
    let flags = fcntl(channel.pointee.fd, F_GETFL)
    _ = fcntl(channel.pointee.fd, F_SETFL, flags | O_NONBLOCK)
    return channel
  }

  deinit {
    _ = rdma_destroy_id(raw)
    rdma_destroy_event_channel(channel)
  }

  /// Destroys the id now and reports failure. The C functions are
  /// `rdma_destroy_id` and `rdma_destroy_event_channel`.
  public consuming func destroy() throws(CMError) {
    let raw = self.raw
    let channel = self.channel
    discard self
    let result = rdma_destroy_id(raw)
    let code = CRDMA_errno()
    rdma_destroy_event_channel(channel)
    if result != 0 {
      throw CMError(
        .other, operation: "rdma_destroy_id", errno: code,
        message: "the connection id could not be destroyed; destroy its queue pair first")
    }
  }

  /// The event channel's descriptor, readable when an event is waiting.
  public var eventDescriptor: Int32 { channel.pointee.fd }

  /// The RDMA device the id is bound to, once it has one (`ibv_get_device_name`).
  public var deviceName: String? {
    guard let verbs = raw.pointee.verbs, let name = ibv_get_device_name(verbs.pointee.device) else {
      return nil
    }
    return String(cString: name)
  }

  /// The local address (`rdma_get_local_addr`).
  public var localAddress: SocketAddress? { SocketAddress(rdma_get_local_addr(raw)) }
  /// The peer's address (`rdma_get_peer_addr`).
  public var peerAddress: SocketAddress? { SocketAddress(rdma_get_peer_addr(raw)) }

  // MARK: Client side

  /// Resolves `destination` to an RDMA device and waits for
  /// `RDMA_CM_EVENT_ADDR_RESOLVED`. The C function is `rdma_resolve_addr`.
  ///
  /// - Parameters:
  ///   - source: the local address to use (rping's `-I`); nil lets routing choose.
  ///   - timeout: how long resolution may take (rping uses 2 s).
  public func resolveAddress(
    _ destination: SocketAddress, from source: SocketAddress? = nil,
    timeout: Duration = .milliseconds(2000)
  ) throws(CMError) {
    try startResolvingAddress(destination, from: source, timeout: timeout)
    _ = try expect(
      .addressResolved, operation: "rdma_resolve_addr", peer: destination,
      timeout: timeout + .seconds(5))
  }

  /// Starts address resolution; the sync and async waits follow.
  func startResolvingAddress(
    _ destination: SocketAddress, from source: SocketAddress?, timeout: Duration
  ) throws(CMError) {
    let ms = Int32(clamping: max(1, timeout.milliseconds))
    let result = destination.withSockaddr { dst in
      if let source {
        return source.withSockaddr { src in rdma_resolve_addr(raw, src, dst, ms) }
      }
      return rdma_resolve_addr(raw, nil, dst, ms)
    }
    if result != 0 {
      let code = CRDMA_errno()
      throw CMError(
        .addressError, operation: "rdma_resolve_addr", errno: code,
        message: "cannot start resolving \(destination)"
          + (code == EADDRNOTAVAIL ? "; the source address is not local" : ""))
    }
  }

  /// Resolves the route to the resolved address and waits for
  /// `RDMA_CM_EVENT_ROUTE_RESOLVED`. The C function is `rdma_resolve_route`.
  public func resolveRoute(timeout: Duration = .milliseconds(2000)) throws(CMError) {
    try startResolvingRoute(timeout: timeout)
    _ = try expect(
      .routeResolved, operation: "rdma_resolve_route", peer: peerAddress,
      timeout: timeout + .seconds(5))
  }

  /// Starts route resolution; the sync and async waits follow.
  func startResolvingRoute(timeout: Duration) throws(CMError) {
    if rdma_resolve_route(raw, Int32(clamping: max(1, timeout.milliseconds))) != 0 {
      let code = CRDMA_errno()
      throw CMError(
        .routeError, operation: "rdma_resolve_route", errno: code,
        message: code == ENODEV
          ? "no RDMA device serves the route to \(peerAddress.map { "\($0)" } ?? "the peer"); "
            + "use an address on the netdev rxe is bound to (127.0.0.1 does not work with rxe)"
          : "cannot start route resolution; resolve the address first")
    }
  }

  /// Connects and waits for `RDMA_CM_EVENT_ESTABLISHED`; returns that event,
  /// which carries the server's private data. The C function is `rdma_connect`.
  ///
  /// Create the queue pair first: librdmacm moves it through INIT, RTR and
  /// RTS as the handshake proceeds.
  @discardableResult
  public func connect(
    _ parameters: ConnectionParameters = ConnectionParameters(), timeout: Duration = .seconds(30)
  ) throws(CMError) -> CMEvent {
    try startConnecting(parameters)
    return try expect(.established, operation: "rdma_connect", peer: peerAddress, timeout: timeout)
  }

  /// Starts connecting; the sync and async waits follow.
  func startConnecting(_ parameters: ConnectionParameters) throws(CMError) {
    try parameters.validate(operation: "rdma_connect")
    if parameters.withC({ rdma_connect(raw, $0) }) != 0 {
      throw CMError(
        .connectError, operation: "rdma_connect", errno: CRDMA_errno(),
        message: "cannot start connecting; resolve the address and route first")
    }
  }

  // MARK: Server side

  /// Binds the id to a local address and port. The C function is `rdma_bind_addr`.
  public func bind(_ address: SocketAddress) throws(CMError) {
    if address.withSockaddr({ rdma_bind_addr(raw, $0) }) != 0 {
      let code = CRDMA_errno()
      throw CMError(
        .invalidArgument, operation: "rdma_bind_addr", errno: code,
        message: code == EADDRINUSE
          ? "port \(address.port) is already in use by another rdma_cm listener"
          : code == EADDRNOTAVAIL || code == ENODEV
            ? "\(address) is not an address of a local RDMA-capable netdev"
            : "cannot bind to \(address)")
    }
  }

  /// Starts listening for connection requests. The C function is `rdma_listen`.
  public func listen(backlog: Int = 3) throws(CMError) {
    if rdma_listen(raw, Int32(clamping: backlog)) != 0 {
      throw CMError(
        .other, operation: "rdma_listen", errno: CRDMA_errno(),
        message: "cannot listen; bind to an address first")
    }
  }

  /// Waits for the next connection request and returns the new id for it,
  /// with its own event channel (`rdma_migrate_id`). Accept it with
  /// ``accept(_:timeout:)`` or refuse it with ``reject(privateData:)``.
  /// Returns nil when `timeout` passes first.
  public func nextRequest(timeout: Duration? = nil) throws(CMError) -> ConnectionID? {
    let clock = ContinuousClock()
    let deadline = timeout.map { clock.now.advanced(by: $0) }
    while true {
      let left = deadline.map { clock.now.duration(to: $0) }
      if let left, left <= .zero { return nil }
      guard let event = try waitForEvent(timeout: left) else { continue }
      if let request = try ConnectionID.adoptRequest(event) { return request }
    }
  }

  /// The new id of a `CONNECT_REQUEST` event, moved to its own event
  /// channel (`rdma_migrate_id`); nil for an event to skip; a failure event
  /// becomes the error. Shared by the sync and async waits for requests.
  static func adoptRequest(_ event: CMEvent) throws(CMError) -> ConnectionID? {
    if event.kind == .connectRequest,
      let child = UnsafeMutablePointer<rdma_cm_id>(bitPattern: event.requestID)
    {
      let channel: UnsafeMutablePointer<rdma_event_channel>
      do { channel = try ConnectionID.makeChannel() } catch {
        _ = rdma_reject(child, nil, 0)
        _ = rdma_destroy_id(child)
        throw error
      }
      if rdma_migrate_id(child, channel) != 0 {
        let code = CRDMA_errno()
        _ = rdma_reject(child, nil, 0)
        _ = rdma_destroy_id(child)
        rdma_destroy_event_channel(channel)
        throw CMError(
          .other, operation: "rdma_migrate_id", errno: code,
          message: "could not give the new connection its own event channel")
      }
      return ConnectionID(raw: child, channel: channel)
    }
    if let failure = event.kind.failure {
      throw CMError(
        failure, operation: "rdma_listen", event: event.kind, status: event.status,
        message: ConnectionID.explain(event, peer: nil))
    }
    return nil
  }

  /// Accepts the connection request this id came from and waits for
  /// `RDMA_CM_EVENT_ESTABLISHED`. The C function is `rdma_accept`.
  ///
  /// With nil parameters (as rping passes), librdmacm uses the values from
  /// the request, lowered to what the device supports.
  @discardableResult
  public func accept(
    _ parameters: ConnectionParameters? = nil, timeout: Duration = .seconds(30)
  ) throws(CMError) -> CMEvent {
    try startAccepting(parameters)
    return try expect(.established, operation: "rdma_accept", peer: peerAddress, timeout: timeout)
  }

  /// Starts accepting; the sync and async waits follow.
  func startAccepting(_ parameters: ConnectionParameters?) throws(CMError) {
    let result: Int32
    if let parameters {
      try parameters.validate(operation: "rdma_accept")
      result = parameters.withC { rdma_accept(raw, $0) }
    } else {
      result = rdma_accept(raw, nil)
    }
    if result != 0 {
      throw CMError(
        .connectError, operation: "rdma_accept", errno: CRDMA_errno(),
        message: "cannot accept; the requester may have given up")
    }
  }

  /// Refuses the connection request this id came from. The C function is `rdma_reject`.
  public func reject(privateData: [UInt8] = []) throws(CMError) {
    let result = privateData.withUnsafeBytes {
      rdma_reject(raw, $0.baseAddress, UInt8(clamping: $0.count))
    }
    if result != 0 {
      throw CMError(
        .other, operation: "rdma_reject", errno: CRDMA_errno(),
        message: "cannot reject the request")
    }
  }

  // MARK: Both sides

  /// Disconnects. librdmacm first moves the queue pair to the error state,
  /// which flushes posted receives. The C function is `rdma_disconnect`.
  public func disconnect() throws(CMError) {
    if rdma_disconnect(raw) != 0 {
      throw CMError(
        .other, operation: "rdma_disconnect", errno: CRDMA_errno(),
        message: "cannot disconnect; the id is not connected")
    }
  }

  /// Takes the next event, waiting up to `timeout` (nil: forever); returns
  /// nil when none arrived in time. The event is acknowledged before it is
  /// returned. The C functions are `rdma_get_cm_event` and `rdma_ack_cm_event`.
  public func waitForEvent(timeout: Duration? = nil) throws(CMError) -> CMEvent? {
    let clock = ContinuousClock()
    let deadline = timeout.map { clock.now.advanced(by: $0) }
    while true {
      if let event = try takeEvent() { return event }
      var ms: Int32 = -1
      if let deadline {
        let left = clock.now.duration(to: deadline)
        if left <= .zero { return nil }
        ms = Int32(clamping: max(1, left.milliseconds))
      }
      var descriptor = pollfd(fd: channel.pointee.fd, events: Int16(POLLIN), revents: 0)
      if Glibc.poll(&descriptor, 1, ms) < 0 && errno != EINTR {
        throw CMError(
          .other, operation: "poll", errno: errno,
          message: "waiting on the event channel failed")
      }
    }
  }

  /// Takes an event if one is waiting, without blocking.
  func takeEvent() throws(CMError) -> CMEvent? {
    var event: UnsafeMutablePointer<rdma_cm_event>? = nil
    if rdma_get_cm_event(channel, &event) != 0 {
      let code = CRDMA_errno()
      if code == EAGAIN || code == EWOULDBLOCK || code == EINTR { return nil }
      throw CMError(
        .other, operation: "rdma_get_cm_event", errno: code,
        message: "reading the event channel failed")
    }
    guard let event else { return nil }
    let copy = CMEvent(event)
    _ = rdma_ack_cm_event(event)
    return copy
  }

  /// Waits for `kind`; a failure event or the timeout becomes a ``CMError``.
  func expect(
    _ kind: CMEvent.Kind, operation: String, peer: SocketAddress?, timeout: Duration
  ) throws(CMError) -> CMEvent {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
      let left = clock.now.duration(to: deadline)
      guard left > .zero, let event = try waitForEvent(timeout: left) else {
        throw CMError(
          .timedOut, operation: operation, errno: ETIMEDOUT,
          message: "no \(kind) within \(timeout)"
            + (peer.map { " from \($0)" } ?? ""))
      }
      if try ConnectionID.judge(event, expecting: kind, operation: operation, peer: peer) {
        return event
      }
    }
  }

  /// Whether `event` is the awaited `kind` (true), one to skip (false), or
  /// the failure it reports (thrown). Shared by the sync and async waits.
  static func judge(
    _ event: CMEvent, expecting kind: CMEvent.Kind, operation: String, peer: SocketAddress?
  ) throws(CMError) -> Bool {
    if event.kind == kind { return true }
    if let failure = event.kind.failure {
      throw CMError(
        failure, operation: operation, event: event.kind, status: event.status,
        message: ConnectionID.explain(event, peer: peer))
    }
    if event.kind == .timewaitExit || event.kind == .addressChange { return false }
    throw CMError(
      .unexpectedEvent, operation: operation, event: event.kind, status: event.status,
      message: "expected \(kind) but got \(event.kind)")
  }

  /// A sentence for a failure event.
  static func explain(_ event: CMEvent, peer: SocketAddress?) -> String {
    let peerText = peer.map { "\($0)" } ?? "the peer"
    let status = event.status
    switch event.kind {
    case .addressError:
      if status == -ENODEV {
        return "no RDMA device serves the route to \(peerText); use an address on the netdev "
          + "rxe is bound to (127.0.0.1 does not work with rxe)"
      }
      if status == -ETIMEDOUT {
        return "resolving \(peerText) timed out; nothing answered for that address"
      }
      return "could not resolve \(peerText) to an RDMA device (\(errnoText(-status)))"
    case .routeError:
      return "no route to \(peerText) (\(errnoText(-status)))"
    case .rejected:
      if status == 8 {
        return "\(peerText) rejected the connection: nothing is listening on that port "
          + "(InfiniBand CM reject reason 8, invalid service ID)"
      }
      return "\(peerText) rejected the connection (reject reason \(status))"
    case .unreachable:
      return "\(peerText) did not answer the connection handshake (\(errnoText(-status)))"
    case .connectError:
      return "the connection to \(peerText) failed while being set up (status \(status))"
    case .disconnected:
      return "\(peerText) disconnected"
    case .deviceRemoval:
      return "the RDMA device was removed"
    default:
      return "\(event.kind) with status \(status)"
    }
  }
}

extension Duration {
  var milliseconds: Int64 {
    let (seconds, attoseconds) = components
    return seconds * 1000 + attoseconds / 1_000_000_000_000_000
  }
}
