internal import CRDMA

/// The state of one device port, from `ibv_query_port` (`struct ibv_port_attr`).
public struct PortAttributes: Sendable, Hashable {
  /// Logical port state (`state`).
  public var state: State
  /// Largest MTU the port supports, in bytes (`max_mtu`).
  public var maxMTU: Int
  /// MTU in use, in bytes (`active_mtu`).
  public var activeMTU: Int
  /// Link layer (`link_layer`).
  public var linkLayer: LinkLayer
  /// Local identifier; 0 on Ethernet (`lid`).
  public var lid: UInt16
  /// Entries in the GID table (`gid_tbl_len`).
  public var gidTableLength: Int
  /// Raw `active_speed` and `active_width` codes.
  public var activeSpeed: UInt32
  /// Raw `active_width` code.
  public var activeWidth: UInt8

  /// Port states (`enum ibv_port_state`).
  public enum State: Sendable, Hashable, CustomStringConvertible {
    /// `IBV_PORT_NOP`.
    case nop
    /// `IBV_PORT_DOWN`.
    case down
    /// `IBV_PORT_INIT`.
    case initializing
    /// `IBV_PORT_ARMED`.
    case armed
    /// `IBV_PORT_ACTIVE`.
    case active
    /// `IBV_PORT_ACTIVE_DEFER`.
    case activeDeferred

    /// Name as `ibv_devinfo` prints it, such as `PORT_ACTIVE`.
    public var description: String {
      switch self {
      case .nop: "PORT_NOP"
      case .down: "PORT_DOWN"
      case .initializing: "PORT_INIT"
      case .armed: "PORT_ARMED"
      case .active: "PORT_ACTIVE"
      case .activeDeferred: "PORT_ACTIVE_DEFER"
      }
    }
  }

  /// Link layers (`IBV_LINK_LAYER_*`).
  public enum LinkLayer: Sendable, Hashable, CustomStringConvertible {
    /// InfiniBand.
    case infiniband
    /// Ethernet (RoCE, including rxe).
    case ethernet
    /// Not reported.
    case unspecified

    /// `InfiniBand`, `Ethernet` or `Unspecified`.
    public var description: String {
      switch self {
      case .infiniband: "InfiniBand"
      case .ethernet: "Ethernet"
      case .unspecified: "Unspecified"
      }
    }
  }

  init(_ attr: ibv_port_attr) {
    state =
      switch attr.state {
      case IBV_PORT_DOWN: .down
      case IBV_PORT_INIT: .initializing
      case IBV_PORT_ARMED: .armed
      case IBV_PORT_ACTIVE: .active
      case IBV_PORT_ACTIVE_DEFER: .activeDeferred
      default: .nop
      }
    maxMTU = PortAttributes.bytes(attr.max_mtu)
    activeMTU = PortAttributes.bytes(attr.active_mtu)
    linkLayer =
      switch Int32(attr.link_layer) {
      case Int32(IBV_LINK_LAYER_INFINIBAND): .infiniband
      case Int32(IBV_LINK_LAYER_ETHERNET): .ethernet
      default: .unspecified
      }
    lid = attr.lid
    gidTableLength = Int(attr.gid_tbl_len)
    activeSpeed = UInt32(attr.active_speed)
    activeWidth = attr.active_width
  }

  static func bytes(_ mtu: ibv_mtu) -> Int {
    switch mtu {
    case IBV_MTU_256: 256
    case IBV_MTU_512: 512
    case IBV_MTU_1024: 1024
    case IBV_MTU_2048: 2048
    case IBV_MTU_4096: 4096
    default: 0
    }
  }
}

/// A 128-bit global identifier: an IPv6 address, or an IPv4-mapped one on RoCE.
public struct GID: Sendable, Hashable, CustomStringConvertible {
  /// The 16 bytes in network order.
  public var bytes: [UInt8]

  /// Creates a GID from 16 bytes in network order.
  public init(bytes: [UInt8]) {
    precondition(bytes.count == 16, "a GID has 16 bytes")
    self.bytes = bytes
  }

  /// The IPv4 address when this GID is IPv4-mapped (`::ffff:a.b.c.d`), as RoCEv2 uses.
  public var ipv4Address: String? {
    guard bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff else {
      return nil
    }
    return bytes[12..<16].map { String($0) }.joined(separator: ".")
  }

  /// True when all bytes are zero (an unused table slot).
  public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

  /// Eight groups of four hex digits, as `ibv_devinfo -v` prints a GID.
  public var description: String {
    stride(from: 0, to: 16, by: 2).map { index in
      let word = UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1])
      let hex = String(word, radix: 16)
      return String(repeating: "0", count: 4 - hex.count) + hex
    }.joined(separator: ":")
  }

  init(_ gid: ibv_gid) {
    var copy = gid
    bytes = withUnsafeBytes(of: &copy) { Array($0) }
  }

  var raw: ibv_gid {
    var gid = ibv_gid()
    withUnsafeMutableBytes(of: &gid) { $0.copyBytes(from: bytes) }
    return gid
  }
}

/// One populated entry of a port's GID table (`struct ibv_gid_entry`).
public struct GIDEntry: Sendable, Hashable {
  /// Index in the port's table: the `sgid_index` to use in an address handle.
  public var index: Int
  /// Port number, from 1.
  public var port: Int
  /// The GID.
  public var gid: GID
  /// Protocol flavour of this GID (`gid_type`).
  public var type: Kind

  /// GID types (`enum ibv_gid_type`).
  public enum Kind: Sendable, Hashable, CustomStringConvertible {
    /// InfiniBand.
    case infiniband
    /// RoCE v1 (Ethernet layer 2).
    case roceV1
    /// RoCE v2 (UDP/IP), which rxe uses.
    case roceV2

    /// `IB`, `RoCE v1` or `RoCE v2`.
    public var description: String {
      switch self {
      case .infiniband: "IB"
      case .roceV1: "RoCE v1"
      case .roceV2: "RoCE v2"
      }
    }
  }
}
