package import CRDMA

/// An open RDMA device in the owned tier: a reference-counted, `Sendable`
/// handle that applications keep for as long as they like, in classes,
/// actors and collections, and use from any thread or Task.
///
/// Wraps `struct ibv_context` (`ibv_open_device`, `ibv_close_device`). Every
/// domain and completion queue made from it holds a reference to it, so the
/// device stays open until the last of them is gone; it is closed exactly
/// once, after all of them, by whichever comes first of ``close()`` and the
/// last reference going away.
///
/// Concurrency: every method may be called from many threads at once
/// (libibverbs serializes what needs it inside the provider). ``close()``
/// waits for calls already running and then refuses new ones with
/// ``VerbsError/Code/closed``.
///
/// The scoped counterpart is ``DeviceContext``; both run the same code.
public final class SharedDeviceContext: @unchecked Sendable {
  // @unchecked: `raw` is only used inside `gate`, which guarantees it is
  // not released while in use; everything else is immutable.
  package let raw: UnsafeMutablePointer<ibv_context>
  let gate = UseGate()
  /// The device's kernel name, such as `rxe0` (`ibv_get_device_name`).
  public let name: String

  var core: DeviceContextCore { DeviceContextCore(raw: raw) }

  /// Set for a context that another library opened (librdmacm's
  /// `cm_id->verbs`): the value that keeps it open, held until the last
  /// domain and queue made from it are gone. Such a context is never
  /// closed with `ibv_close_device`; its owner closes it.
  private let owner: (any Sendable & AnyObject)?

  init(raw: UnsafeMutablePointer<ibv_context>) {
    self.raw = raw
    self.name = DeviceContextCore(raw: raw).name
    self.owner = nil
  }

  /// Wraps a context that `owner` keeps open (a connection id's device),
  /// so owned-tier domains and queues can be made on it.
  package init(borrowing raw: UnsafeMutablePointer<ibv_context>, owner: any Sendable & AnyObject) {
    self.raw = raw
    self.name = DeviceContextCore(raw: raw).name
    self.owner = owner
  }

  /// Opens the device with this name, or the first device when `name` is nil.
  /// The C function is `ibv_open_device`.
  public static func open(name: String? = nil) throws(VerbsError) -> SharedDeviceContext {
    SharedDeviceContext(raw: try DeviceContextCore.open(name: name))
  }

  deinit {
    if !gate.isClosed && owner == nil { _ = ibv_close_device(raw) }
  }

  /// Closes the device now and reports failure. The C function is `ibv_close_device`.
  ///
  /// Throws ``VerbsError/Code/busy`` (and leaves the device open) while
  /// domains or completion queues made from it are alive; throws
  /// ``VerbsError/Code/closed`` when it was closed already.
  public func close() throws(VerbsError) {
    try gate.close(
      "device context", children: "protection domains or completion queues",
      operation: "ibv_close_device"
    ) { () throws(VerbsError) in if owner == nil { try core.close() } }
  }

  /// Queries device attributes. The C function is `ibv_query_device_ex`.
  public func attributes() throws(VerbsError) -> DeviceAttributes {
    try gate.using("device context", "ibv_query_device_ex") { () throws(VerbsError) in
      try DeviceAttributes.query(raw)
    }
  }

  /// Queries one port (numbered from 1). The C macro is `ibv_query_port`.
  public func port(_ number: Int = 1) throws(VerbsError) -> PortAttributes {
    try gate.using("device context", "ibv_query_port") { () throws(VerbsError) in
      try core.port(number)
    }
  }

  /// The populated GID table entries of a port. The C function is `ibv_query_gid_table`.
  public func gids(port number: Int = 1) throws(VerbsError) -> [GIDEntry] {
    try gate.using("device context", "ibv_query_gid_table") { () throws(VerbsError) in
      try core.gids(port: number)
    }
  }

  /// Probes what the device supports; see ``DeviceContext/capabilities()``.
  public func capabilities() throws(VerbsError) -> DeviceCapabilities {
    try gate.using("device context", "ibv_alloc_pd") { () throws(VerbsError) in
      try core.capabilities()
    }
  }

  /// Allocates a protection domain that holds this context open.
  /// The C function is `ibv_alloc_pd`.
  public func allocateProtectionDomain() throws(VerbsError) -> SharedProtectionDomain {
    try gate.using("device context", "ibv_alloc_pd") { () throws(VerbsError) in
      SharedProtectionDomain(raw: try core.allocateProtectionDomain(), context: self)
    }
  }

  /// Creates a completion queue, with its own completion channel, that holds
  /// this context open. The C function is `ibv_create_cq`.
  public func createCompletionQueue(entries: Int = 256) throws(VerbsError)
    -> SharedCompletionQueue
  {
    try gate.using("device context", "ibv_create_cq") { () throws(VerbsError) in
      SharedCompletionQueue(
        core: try CompletionQueueCore.create(context: raw, entries: entries), context: self)
    }
  }
}
