package import CRDMA

/// An open RDMA device: the root every other verbs resource hangs from.
///
/// Wraps `struct ibv_context`. Opening and closing map to `ibv_open_device`
/// and `ibv_close_device`. Protection domains and completion queues borrow
/// the context, so the compiler rejects any that could outlive it.
///
/// This is the scoped tier, for code that fits in one scope. To keep a
/// context, domain or region in a class, actor or collection, or to use it
/// from several threads or Tasks, use ``SharedDeviceContext`` (the owned
/// tier); both run the same code.
public struct DeviceContext: ~Copyable {
  package let raw: UnsafeMutablePointer<ibv_context>

  init(raw: UnsafeMutablePointer<ibv_context>) { self.raw = raw }

  var core: DeviceContextCore { DeviceContextCore(raw: raw) }

  /// Opens the device with this name, or the first device when `name` is nil.
  /// The C function is `ibv_open_device`.
  public static func open(name: String? = nil) throws(VerbsError) -> DeviceContext {
    DeviceContext(raw: try DeviceContextCore.open(name: name))
  }

  deinit { _ = ibv_close_device(raw) }

  /// Closes the device now and reports failure. The C function is `ibv_close_device`.
  public consuming func close() throws(VerbsError) {
    let core = self.core
    discard self
    try core.close()
  }

  /// The device's kernel name, such as `rxe0` (`ibv_get_device_name`).
  public var name: String { core.name }

  /// Queries device attributes. The C function is `ibv_query_device_ex`.
  public func attributes() throws(VerbsError) -> DeviceAttributes {
    try DeviceAttributes.query(raw)
  }

  /// Queries one port (numbered from 1). The C macro is `ibv_query_port`.
  public func port(_ number: Int = 1) throws(VerbsError) -> PortAttributes {
    try core.port(number)
  }

  /// The populated GID table entries of a port. The C function is `ibv_query_gid_table`.
  public func gids(port number: Int = 1) throws(VerbsError) -> [GIDEntry] {
    try core.gids(port: number)
  }

  /// Probes what the device supports, by asking it.
  ///
  /// ODP comes from the attributes. Dma-buf support is probed by calling
  /// `ibv_reg_dmabuf_mr` with an invalid descriptor (a provider without it
  /// answers `EOPNOTSUPP` before reaching the kernel; one with it reaches the
  /// kernel, which answers `EBADF`). Re-registration is probed with
  /// `ibv_rereg_mr` on a temporary one-page region. Nothing is left behind.
  public func capabilities() throws(VerbsError) -> DeviceCapabilities {
    try core.capabilities()
  }

  /// Allocates a protection domain. The C function is `ibv_alloc_pd`.
  ///
  /// The domain borrows this context and cannot outlive it.
  @_lifetime(borrow self)
  public func allocateProtectionDomain() throws(VerbsError) -> ProtectionDomain {
    ProtectionDomain(raw: try core.allocateProtectionDomain(), context: self)
  }

  /// Creates a completion queue with room for at least `entries` completions.
  /// The C function is `ibv_create_cq`.
  @_lifetime(borrow self)
  public func createCompletionQueue(entries: Int = 256) throws(VerbsError) -> CompletionQueue {
    try CompletionQueue(context: self, entries: entries)
  }
}
