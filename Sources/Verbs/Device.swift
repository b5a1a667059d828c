internal import CRDMA

#if canImport(Glibc)
  import Glibc
#endif

/// An RDMA device the kernel knows about, as listed by `ibv_get_device_list`.
///
/// A `Device` is a description only; open it with ``DeviceContext/open(name:)``
/// to use it.
public struct Device: Sendable, Hashable, CustomStringConvertible {
  /// Kernel name, such as `rxe0` or `mlx5_0` (`ibv_get_device_name`).
  public var name: String
  /// Node GUID in host byte order (`ibv_get_device_guid`).
  public var guid: UInt64
  /// The transport family (`ibv_device.transport_type`).
  public var transport: Transport

  /// RDMA transport families (`enum ibv_transport_type`).
  public enum Transport: Sendable, Hashable, CustomStringConvertible {
    /// InfiniBand, including RoCE devices such as rxe.
    case infiniband
    /// iWARP.
    case iwarp
    /// Cisco usNIC.
    case usnic
    /// Cisco usNIC over UDP.
    case usnicUDP
    /// Unspecified or unknown.
    case unknown

    /// Short name as `ibv_devinfo` prints it.
    public var description: String {
      switch self {
      case .infiniband: "InfiniBand"
      case .iwarp: "iWARP"
      case .usnic: "usNIC"
      case .usnicUDP: "usNIC UDP"
      case .unknown: "unknown"
      }
    }
  }

  /// `name (GUID xxxx:xxxx:xxxx:xxxx, transport)`.
  public var description: String { "\(name) (GUID \(Device.format(guid: guid)), \(transport))" }

  /// Formats a GUID the way rdma-core tools do: four groups of four hex digits.
  public static func format(guid: UInt64) -> String {
    let hex = String(guid, radix: 16)
    let padded = String(repeating: "0", count: 16 - hex.count) + hex
    var groups: [Substring] = []
    var index = padded.startIndex
    for _ in 0..<4 {
      let end = padded.index(index, offsetBy: 4)
      groups.append(padded[index..<end])
      index = end
    }
    return groups.joined(separator: ":")
  }

  /// Lists the RDMA devices on this machine. The C function is `ibv_get_device_list`.
  ///
  /// An empty list is not an error; a machine without RDMA support in its
  /// kernel throws ``VerbsError/Code/noDevices``.
  public static func list() throws(VerbsError) -> [Device] {
    try DeviceList.withDevices { list throws(VerbsError) in list.map(\.device) }
  }
}

/// The raw device list, alive only inside `withDevices`.
struct DeviceList {
  struct Entry {
    var pointer: UnsafeMutablePointer<ibv_device>
    var device: Device
  }

  static func withDevices<T: ~Copyable>(
    _ body: ([Entry]) throws(VerbsError) -> T
  ) throws(VerbsError) -> T {
    var count: Int32 = 0
    guard let list = ibv_get_device_list(&count) else {
      let code = CRDMA_errno()
      throw VerbsError(
        .noDevices, operation: "ibv_get_device_list", errno: code,
        message: "this kernel offers no RDMA support (no /sys/class/infiniband). "
          + "Load a driver (for soft-RoCE: modprobe rdma_rxe; rdma link add rxe0 type rxe netdev IFACE) "
          + "or run the command inside the project's lab: ci/rxe COMMAND")
    }
    defer { ibv_free_device_list(list) }
    var entries: [Entry] = []
    for index in 0..<Int(count) {
      guard let pointer = list[index] else { continue }
      let name = ibv_get_device_name(pointer).map { String(cString: $0) } ?? "?"
      let guid = UInt64(bigEndian: ibv_get_device_guid(pointer))
      let transport: Device.Transport =
        switch pointer.pointee.transport_type {
        case IBV_TRANSPORT_IB: .infiniband
        case IBV_TRANSPORT_IWARP: .iwarp
        case IBV_TRANSPORT_USNIC: .usnic
        case IBV_TRANSPORT_USNIC_UDP: .usnicUDP
        default: .unknown
        }
      entries.append(
        Entry(pointer: pointer, device: Device(name: name, guid: guid, transport: transport)))
    }
    return try body(entries)
  }
}
