package import CRDMA

#if canImport(Glibc)
  import Glibc
#endif

/// The calls made on an open device context, written once for both tiers:
/// ``DeviceContext`` (scoped) and ``SharedDeviceContext`` (owned) forward
/// here. A non-owning view: it never opens or closes the context.
package struct DeviceContextCore {
  package let raw: UnsafeMutablePointer<ibv_context>

  package init(raw: UnsafeMutablePointer<ibv_context>) { self.raw = raw }

  /// Opens the device with this name, or the first device when `name` is nil.
  /// The C function is `ibv_open_device`.
  static func open(name: String?) throws(VerbsError) -> UnsafeMutablePointer<ibv_context> {
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
      return context
    }
  }

  /// Closes the context. The C function is `ibv_close_device`.
  func close() throws(VerbsError) {
    if ibv_close_device(raw) != 0 {
      throw VerbsError(
        .other, operation: "ibv_close_device", errno: CRDMA_errno(),
        message: "closing the device failed")
    }
  }

  /// The device's kernel name (`ibv_get_device_name`).
  var name: String {
    ibv_get_device_name(raw.pointee.device).map { String(cString: $0) } ?? "?"
  }

  /// Queries one port (numbered from 1). The C macro is `ibv_query_port`.
  func port(_ number: Int) throws(VerbsError) -> PortAttributes {
    guard let port = UInt8(exactly: number), port >= 1 else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_query_port", errno: EINVAL,
        message: "port numbers start at 1 and fit in 8 bits; got \(number)",
        checkedBeforeCall: true)
    }
    var attr = ibv_port_attr()
    let result = CRDMA_query_port(raw, port, &attr)
    if result != 0 {
      throw VerbsError(
        .invalidArgument, operation: "ibv_query_port", errno: result,
        message: "port \(number) could not be queried")
    }
    return PortAttributes(attr)
  }

  /// The populated GID table entries of a port. The C function is `ibv_query_gid_table`.
  func gids(port number: Int) throws(VerbsError) -> [GIDEntry] {
    try GIDTable.read(raw, port: number, length: try port(number).gidTableLength)
  }

  /// Probes what the device supports, by asking it (see
  /// ``DeviceContext/capabilities()``). Nothing is left behind.
  func capabilities() throws(VerbsError) -> DeviceCapabilities {
    let odp = try DeviceAttributes.query(raw).onDemandPaging.supported
    let pd = try allocateProtectionDomain()
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
  func allocateProtectionDomain() throws(VerbsError) -> UnsafeMutablePointer<ibv_pd> {
    guard let pd = ibv_alloc_pd(raw) else {
      let code = CRDMA_errno()
      throw VerbsError(
        .resourceExhausted, operation: "ibv_alloc_pd", errno: code,
        message: "the device refused a new protection domain; "
          + "see attributes().maxProtectionDomains")
    }
    return pd
  }
}
