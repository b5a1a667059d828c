internal import CRDMA
import Synchronization
internal import UmemSystem
public import Verbs

#if canImport(Glibc)
  import Glibc
#endif

/// A connection id in the owned tier: a reference-counted, `Sendable` class
/// around a ``ConnectionID``, so a server can hand each accepted connection
/// to its own Task (a Task cannot capture the `~Copyable` id), with
/// `async` versions of every wait: ``resolveAddress(_:from:timeout:)``,
/// ``resolveRoute(timeout:)``, ``connect(_:timeout:)``, ``nextRequest(timeout:)``,
/// ``accept(_:timeout:)``, ``disconnect(timeout:)`` and ``nextEvent(timeout:)``.
///
/// Waits suspend the Task; the process's one reactor thread (epoll) wakes
/// it when the id's event channel is readable. Every wait throws
/// `CancellationError` when its Task is cancelled, and otherwise a
/// ``CMError``: ``CMError/Code/timedOut``, ``CMError/Code/closed`` after
/// ``close()``, or the failure an event reports (a peer's disconnect is
/// ``CMError/Code/disconnected``).
///
/// Verbs resources: ``deviceContext()`` gives an owned-tier handle on the
/// id's device (librdmacm's `cm_id->verbs`) for domains, regions and
/// queues; ``createQueuePair(domain:sendCompletions:receiveCompletions:capacity:)``
/// makes the id's queue pair with `rdma_create_qp`, and it is destroyed with
/// `rdma_destroy_qp`. Each of them keeps the connection alive, so the id
/// (`rdma_destroy_id`, then `rdma_destroy_event_channel`) is destroyed after
/// all of them, when the last reference goes.
///
/// Concurrency: events belong to the id as a whole, so its waits are meant
/// to be taken one at a time (two Tasks awaiting events on one connection
/// each get some of them). ``close()`` may be called from any Task.
public final class SharedConnection: @unchecked Sendable {
  // @unchecked: the id's pointers are immutable; librdmacm's calls on one
  // id are thread-safe, and the id is destroyed only in deinit.
  let id: ConnectionID
  let readiness: ReadinessSource
  private let isClosed = Atomic<Bool>(false)

  /// Takes ownership of `id`.
  public init(_ id: consuming ConnectionID) {
    readiness = Reactor.shared.source(for: id.channel.pointee.fd)
    self.id = id
  }

  /// Creates an id for reliable connections (`RDMA_PS_TCP`).
  /// The C functions are `rdma_create_event_channel` and `rdma_create_id`.
  public convenience init() throws(CMError) {
    self.init(try ConnectionID())
  }

  deinit {
    // Out of epoll before `id`'s deinit closes the descriptor.
    readiness.close()
  }

  /// Ends every wait on the connection with ``CMError/Code/closed`` and
  /// refuses later ones. The id itself is destroyed when the last reference
  /// to the connection, and to the resources made on it, goes; disconnect
  /// first for an orderly goodbye.
  public func close() {
    isClosed.store(true, ordering: .releasing)
    readiness.close()
  }

  /// The local address (`rdma_get_local_addr`).
  public var localAddress: SocketAddress? { id.localAddress }
  /// The peer's address (`rdma_get_peer_addr`).
  public var peerAddress: SocketAddress? { id.peerAddress }
  /// The RDMA device the id is bound to, once it has one.
  public var deviceName: String? { id.deviceName }

  // MARK: Client side

  /// Resolves `destination` to an RDMA device. The C function is `rdma_resolve_addr`.
  public func resolveAddress(
    _ destination: SocketAddress, from source: SocketAddress? = nil,
    timeout: Duration = .milliseconds(2000)
  ) async throws {
    try checkOpen("rdma_resolve_addr")
    try id.startResolvingAddress(destination, from: source, timeout: timeout)
    _ = try await expect(
      .addressResolved, operation: "rdma_resolve_addr", peer: destination,
      timeout: timeout + .seconds(5))
  }

  /// Resolves the route to the resolved address. The C function is `rdma_resolve_route`.
  public func resolveRoute(timeout: Duration = .milliseconds(2000)) async throws {
    try checkOpen("rdma_resolve_route")
    try id.startResolvingRoute(timeout: timeout)
    _ = try await expect(
      .routeResolved, operation: "rdma_resolve_route", peer: id.peerAddress,
      timeout: timeout + .seconds(5))
  }

  /// Connects (create the queue pair first) and returns the
  /// `RDMA_CM_EVENT_ESTABLISHED` event with the server's private data.
  /// The C function is `rdma_connect`.
  @discardableResult
  public func connect(
    _ parameters: ConnectionParameters = ConnectionParameters(), timeout: Duration = .seconds(30)
  ) async throws -> CMEvent {
    try checkOpen("rdma_connect")
    try id.startConnecting(parameters)
    return try await expect(
      .established, operation: "rdma_connect", peer: id.peerAddress, timeout: timeout)
  }

  // MARK: Server side

  /// Binds the id to a local address and port. The C function is `rdma_bind_addr`.
  public func bind(_ address: SocketAddress) throws(CMError) {
    try checkOpen("rdma_bind_addr")
    try id.bind(address)
  }

  /// Starts listening. The C function is `rdma_listen`.
  public func listen(backlog: Int = 64) throws(CMError) {
    try checkOpen("rdma_listen")
    try id.listen(backlog: backlog)
  }

  /// Waits for the next connection request and returns its new id, with
  /// its own event channel (`rdma_migrate_id`); accept it with
  /// ``accept(_:timeout:)`` or refuse it with ``reject(privateData:)``.
  /// The request's private data is in ``CMEvent/privateData`` of the
  /// returned event.
  public func nextRequest(timeout: Duration? = nil) async throws -> (
    connection: SharedConnection, request: CMEvent
  ) {
    let deadline = timeout.map { ContinuousClock.now.advanced(by: $0) }
    while true {
      let event = try await event(until: deadline, operation: "rdma_listen")
      if let request = try ConnectionID.adoptRequest(event) {
        return (SharedConnection(request), event)
      }
    }
  }

  /// Accepts the request this id came from and waits until the connection
  /// is established. The C function is `rdma_accept`.
  @discardableResult
  public func accept(
    _ parameters: ConnectionParameters? = nil, timeout: Duration = .seconds(30)
  ) async throws -> CMEvent {
    try checkOpen("rdma_accept")
    try id.startAccepting(parameters)
    return try await expect(
      .established, operation: "rdma_accept", peer: id.peerAddress, timeout: timeout)
  }

  /// Refuses the request this id came from. The C function is `rdma_reject`.
  public func reject(privateData: [UInt8] = []) throws(CMError) {
    try checkOpen("rdma_reject")
    try id.reject(privateData: privateData)
  }

  // MARK: Both sides

  /// Disconnects and waits for `RDMA_CM_EVENT_DISCONNECTED`. librdmacm first
  /// moves the queue pair to the error state, which flushes posted
  /// requests. The C function is `rdma_disconnect`.
  public func disconnect(timeout: Duration = .seconds(5)) async throws {
    try checkOpen("rdma_disconnect")
    try id.disconnect()
    _ = try await expect(
      .disconnected, operation: "rdma_disconnect", peer: id.peerAddress, timeout: timeout)
  }

  /// Moves the queue pair to the error state and tells the peer, without
  /// waiting: what a server does when the peer's disconnect arrives.
  /// The C function is `rdma_disconnect`.
  public func disconnectNow() throws(CMError) {
    try id.disconnect()
  }

  /// Waits for the next event, whatever it is, and returns it acknowledged.
  /// The C functions are `rdma_get_cm_event` and `rdma_ack_cm_event`.
  public func nextEvent(timeout: Duration? = nil) async throws -> CMEvent {
    try await event(
      until: timeout.map { ContinuousClock.now.advanced(by: $0) }, operation: "rdma_get_cm_event")
  }

  // MARK: Verbs resources on the connection's device

  /// An owned-tier handle on the id's device (`cm_id->verbs`), available
  /// after address resolution or on an id from ``nextRequest(timeout:)``.
  /// Domains and queues made from it keep this connection (and so the
  /// device) alive; closing the handle does not close the device, which
  /// librdmacm owns.
  public func deviceContext() throws(CMError) -> SharedDeviceContext {
    try checkOpen("ibv_alloc_pd")
    return SharedDeviceContext(borrowing: try id.device(for: "ibv_alloc_pd"), owner: self)
  }

  /// Creates the id's reliable-connected queue pair with `rdma_create_qp`;
  /// librdmacm drives its state during connect, accept and disconnect. The
  /// queue pair keeps this connection alive and is destroyed with
  /// `rdma_destroy_qp` (by its `close()` or when its last reference goes).
  /// `domain` and the queues must come from ``deviceContext()``.
  public func createQueuePair(
    domain: SharedProtectionDomain, sendCompletions: SharedCompletionQueue,
    receiveCompletions: SharedCompletionQueue, capacity: QueuePairCapacity = QueuePairCapacity()
  ) throws(CMError) -> SharedQueuePair {
    try checkOpen("rdma_create_qp")
    var failure: CMError?
    let made: SharedQueuePair?
    do throws(VerbsError) {
      made = try domain.adoptQueuePair(
        sendCompletions: sendCompletions, receiveCompletions: receiveCompletions,
        release: { [self] in rdma_destroy_qp(self.id.raw) }
      ) { pd, send, receive in
        do throws(CMError) {
          return try id.makeQueuePair(pd: pd, send: send, receive: receive, capacity: capacity)
        } catch {
          failure = error
          return nil
        }
      }
    } catch {
      throw CMError(error)
    }
    guard let made else {
      throw failure
        ?? CMError(.other, operation: "rdma_create_qp", message: "no queue pair was made")
    }
    return made
  }

  // MARK: Waiting

  /// Waits for `kind`; a failure event or the timeout becomes a ``CMError``.
  func expect(
    _ kind: CMEvent.Kind, operation: String, peer: SocketAddress?, timeout: Duration
  ) async throws -> CMEvent {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while true {
      let event: CMEvent
      do {
        event = try await self.event(until: deadline, operation: operation)
      } catch let error as CMError where error.code == .timedOut {
        throw CMError(
          .timedOut, operation: operation, errno: ETIMEDOUT,
          message: "no \(kind) within \(timeout)" + (peer.map { " from \($0)" } ?? ""))
      }
      if try ConnectionID.judge(event, expecting: kind, operation: operation, peer: peer) {
        return event
      }
    }
  }

  /// Takes the next event, suspending until the channel is readable.
  func event(until deadline: ContinuousClock.Instant?, operation: String) async throws -> CMEvent {
    while true {
      try Task.checkCancellation()
      try checkOpen(operation)
      if let event = try id.takeEvent() { return event }
      switch await readiness.readable(until: deadline) {
      case .readable:
        continue
      case .cancelled:
        throw CancellationError()
      case .timedOut:
        throw CMError(
          .timedOut, operation: operation, errno: ETIMEDOUT,
          message: "no connection event arrived in time")
      case .closed:
        throw CMError.closed(operation: operation)
      case .failed(let call, let code):
        throw CMError(
          .other, operation: call, errno: code,
          message: "the reactor could not watch the event channel; "
            + "check the process's descriptor limit (ulimit -n)")
      }
    }
  }

  func checkOpen(_ operation: String) throws(CMError) {
    if isClosed.load(ordering: .acquiring) { throw CMError.closed(operation: operation) }
  }
}

extension CMError {
  /// The error for a call on a ``SharedConnection`` after ``SharedConnection/close()``.
  static func closed(operation: String) -> CMError {
    CMError(
      .closed, operation: operation, errno: EBADF,
      message: "the connection was closed with close(); make a new one, or close it only "
        + "once every Task using it is done")
  }
}
