package import CRDMA

/// An open RDMA device: the root every other verbs resource hangs from.
///
/// Wraps `struct ibv_context`. Opening and closing map to `ibv_open_device`
/// and `ibv_close_device`. Protection domains and completion queues borrow
/// the context, so the compiler rejects any that could outlive it.
public struct DeviceContext: ~Copyable {
  package let raw: UnsafeMutablePointer<ibv_context>

  init(raw: UnsafeMutablePointer<ibv_context>) { self.raw = raw }

  /// Opens the device with this name, or the first device when `name` is nil.
  /// The C function is `ibv_open_device`.
  public static func open(name: String? = nil) throws(VerbsError) -> DeviceContext {
    try DeviceList.withDevices { entries throws(VerbsError) in
      guard !entries.isEmpty else {
        throw VerbsError(
          .noDevices, operation: "ibv_get_device_list", errno: ENODEV,
          message: "no RDMA devices are configured. For soft-RoCE run "
            + "'modprobe rdma_rxe; rdma link add rxe0 type rxe netdev IFACE', "
            + "or run the command inside the project's lab: ci/rxe COMMAND")
      }
      let entry: DeviceList.Entry
      if let name {
        guard let match = entries.first(where: { $0.device.name == name }) else {
          let names = entries.map(\.device.name).joined(separator: ", ")
          throw VerbsError(
            .deviceNotFound, operation: "ibv_open_device", errno: ENODEV,
            message: "no RDMA device is named '\(name)'; this machine has: \(names)",
            checkedBeforeCall: true)
        }
        entry = match
      } else {
        entry = entries[0]
      }
      guard let context = ibv_open_device(entry.pointer) else {
        let code = CRDMA_errno()
        throw VerbsError(
          code == EACCES || code == EPERM ? .permissionDenied : .other,
          operation: "ibv_open_device", errno: code,
          message: "could not open \(entry.device.name); check the permissions of "
            + "/dev/infiniband/uverbs* and that the device is not being removed")
      }
      return DeviceContext(raw: context)
    }
  }

  deinit { _ = ibv_close_device(raw) }

  /// Closes the device now and reports failure. The C function is `ibv_close_device`.
  public consuming func close() throws(VerbsError) {
    let raw = self.raw
    discard self
    let result = ibv_close_device(raw)
    if result != 0 {
      throw VerbsError(
        .other, operation: "ibv_close_device", errno: CRDMA_errno(),
        message: "closing the device failed")
    }
  }

  /// The device's kernel name, such as `rxe0` (`ibv_get_device_name`).
  public var name: String {
    ibv_get_device_name(raw.pointee.device).map { String(cString: $0) } ?? "?"
  }

  /// Queries device attributes. The C function is `ibv_query_device_ex`.
  public func attributes() throws(VerbsError) -> DeviceAttributes {
    try DeviceAttributes.query(raw)
  }

  /// Queries one port (numbered from 1). The C macro is `ibv_query_port`.
  public func port(_ number: Int = 1) throws(VerbsError) -> PortAttributes {
    guard let port = UInt8(exactly: number), port >= 1 else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_query_port", errno: EINVAL,
        message: "port numbers start at 1 and fit in 8 bits; got \(number)",
        checkedBeforeCall: true)
    }
    return try DeviceContextView(raw: raw).port(Int(port))
  }

  /// The populated GID table entries of a port. The C function is `ibv_query_gid_table`.
  public func gids(port number: Int = 1) throws(VerbsError) -> [GIDEntry] {
    _ = try port(number)
    return try DeviceContextView(raw: raw).gids(port: number)
  }

  /// Probes what the device supports, by asking it.
  ///
  /// ODP comes from the attributes. Dma-buf support is probed by calling
  /// `ibv_reg_dmabuf_mr` with an invalid descriptor (a provider without it
  /// answers `EOPNOTSUPP` before reaching the kernel; one with it reaches the
  /// kernel, which answers `EBADF`). Re-registration is probed with
  /// `ibv_rereg_mr` on a temporary one-page region. Nothing is left behind.
  public func capabilities() throws(VerbsError) -> DeviceCapabilities {
    let odp = try attributes().onDemandPaging.supported
    guard let pd = ibv_alloc_pd(raw) else {
      throw VerbsError(
        .resourceExhausted, operation: "ibv_alloc_pd", errno: CRDMA_errno(),
        message: "could not allocate a protection domain for the probe")
    }
    defer { _ = ibv_dealloc_pd(pd) }

    var dmabuf = false
    CRDMA_set_errno(0)
    if let mr = ibv_reg_dmabuf_mr(pd, 0, 4096, 0, -1, Int32(IBV_ACCESS_LOCAL_WRITE.rawValue)) {
      _ = ibv_dereg_mr(mr)
      dmabuf = true
    } else {
      let code = CRDMA_errno()
      dmabuf = code != EOPNOTSUPP && code != EPROTONOSUPPORT && code != ENOSYS
    }

    var rereg = false
    let page = PageAlignedBuffer.pageSize
    if let buffer = try? PageAlignedBuffer(byteCount: page) {
      let access = Int32(IBV_ACCESS_LOCAL_WRITE.rawValue)
      if let mr = ibv_reg_mr_iova2(
        pd, buffer.baseAddress, page, UInt64(UInt(bitPattern: buffer.baseAddress)), UInt32(access))
      {
        let result = ibv_rereg_mr(
          mr, Int32(IBV_REREG_MR_CHANGE_ACCESS.rawValue), nil, nil, 0, access)
        rereg = result == 0
        _ = ibv_dereg_mr(mr)
      }
    }
    return DeviceCapabilities(
      dmabufRegistration: dmabuf, onDemandPaging: odp, reregistration: rereg)
  }

  /// Allocates a protection domain. The C function is `ibv_alloc_pd`.
  ///
  /// The domain borrows this context and cannot outlive it.
  @_lifetime(borrow self)
  public func allocateProtectionDomain() throws(VerbsError) -> ProtectionDomain {
    guard let pd = ibv_alloc_pd(raw) else {
      let code = CRDMA_errno()
      throw VerbsError(
        .resourceExhausted, operation: "ibv_alloc_pd", errno: code,
        message: "the device refused a new protection domain; "
          + "see attributes().maxProtectionDomains")
    }
    return ProtectionDomain(raw: pd, context: self)
  }

  /// Creates a completion queue with room for at least `entries` completions.
  /// The C function is `ibv_create_cq`.
  @_lifetime(borrow self)
  public func createCompletionQueue(entries: Int = 256) throws(VerbsError) -> CompletionQueue {
    try CompletionQueue(context: self, entries: entries)
  }
}
