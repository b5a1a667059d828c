package import CRDMA

/// What a device can do, from `ibv_query_device_ex` (`struct ibv_device_attr_ex`).
public struct DeviceAttributes: Sendable, Hashable {
  /// Firmware version string (`fw_ver`).
  public var firmwareVersion: String
  /// Node GUID, host byte order (`node_guid`).
  public var nodeGUID: UInt64
  /// System image GUID, host byte order (`sys_image_guid`).
  public var systemImageGUID: UInt64
  /// Largest registrable region in bytes (`max_mr_size`).
  public var maxMemoryRegionSize: UInt64
  /// Bitmap of HCA page sizes: bit k set means 2^k-byte pages (`page_size_cap`).
  public var pageSizeCapability: UInt64
  /// PCI vendor id (`vendor_id`).
  public var vendorID: UInt32
  /// Vendor part id (`vendor_part_id`).
  public var vendorPartID: UInt32
  /// Hardware version (`hw_ver`).
  public var hardwareVersion: UInt32
  /// Queue pairs (`max_qp`).
  public var maxQueuePairs: Int
  /// Work requests per queue (`max_qp_wr`).
  public var maxWorkRequestsPerQueue: Int
  /// Scatter/gather entries per work request (`max_sge`).
  public var maxScatterGatherEntries: Int
  /// Completion queues (`max_cq`).
  public var maxCompletionQueues: Int
  /// Entries per completion queue (`max_cqe`).
  public var maxCompletionQueueEntries: Int
  /// Memory regions (`max_mr`).
  public var maxMemoryRegions: Int
  /// Protection domains (`max_pd`).
  public var maxProtectionDomains: Int
  /// Memory windows (`max_mw`); 0 when the device has none.
  public var maxMemoryWindows: Int
  /// Outstanding RDMA READ/atomic operations a QP can answer (`max_qp_rd_atom`).
  public var maxResponderReadAtomics: Int
  /// Outstanding RDMA READ/atomic operations a QP can issue (`max_qp_init_rd_atom`).
  public var maxInitiatorReadAtomics: Int
  /// Atomic operation guarantees (`atomic_cap`).
  public var atomicCapability: AtomicCapability
  /// Physical ports (`phys_port_cnt`).
  public var portCount: Int
  /// On-demand paging support (`odp_caps`).
  public var onDemandPaging: OnDemandPaging
  /// Raw `device_cap_flags_ex`.
  public var capabilityFlags: UInt64

  /// Atomic operation support (`enum ibv_atomic_cap`).
  public enum AtomicCapability: Sendable, Hashable, CustomStringConvertible {
    /// No atomics (`IBV_ATOMIC_NONE`).
    case none
    /// Atomic among this HCA's own operations (`IBV_ATOMIC_HCA`).
    case hca
    /// Atomic with respect to CPUs too (`IBV_ATOMIC_GLOB`).
    case global

    /// `none`, `hca` or `global`.
    public var description: String {
      switch self {
      case .none: "none"
      case .hca: "hca"
      case .global: "global"
      }
    }
  }

  /// On-demand paging capabilities (`struct ibv_odp_caps`).
  public struct OnDemandPaging: Sendable, Hashable {
    /// The device supports ODP at all (`IBV_ODP_SUPPORT`).
    public var supported: Bool
    /// The device supports implicit ODP over the whole address space (`IBV_ODP_SUPPORT_IMPLICIT`).
    public var implicit: Bool
    /// Raw `per_transport_caps.rc_odp_caps` (`IBV_ODP_SUPPORT_SEND`, ...).
    public var reliableConnectedOperations: UInt32
  }

  init(_ ex: ibv_device_attr_ex) {
    let attr = ex.orig_attr
    var fw = attr.fw_ver
    firmwareVersion = withUnsafeBytes(of: &fw) { raw in
      String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
    nodeGUID = UInt64(bigEndian: attr.node_guid)
    systemImageGUID = UInt64(bigEndian: attr.sys_image_guid)
    maxMemoryRegionSize = attr.max_mr_size
    pageSizeCapability = attr.page_size_cap
    vendorID = attr.vendor_id
    vendorPartID = attr.vendor_part_id
    hardwareVersion = attr.hw_ver
    maxQueuePairs = Int(attr.max_qp)
    maxWorkRequestsPerQueue = Int(attr.max_qp_wr)
    maxScatterGatherEntries = Int(attr.max_sge)
    maxCompletionQueues = Int(attr.max_cq)
    maxCompletionQueueEntries = Int(attr.max_cqe)
    maxMemoryRegions = Int(attr.max_mr)
    maxProtectionDomains = Int(attr.max_pd)
    maxMemoryWindows = Int(attr.max_mw)
    maxResponderReadAtomics = Int(attr.max_qp_rd_atom)
    maxInitiatorReadAtomics = Int(attr.max_qp_init_rd_atom)
    atomicCapability =
      switch attr.atomic_cap {
      case IBV_ATOMIC_HCA: .hca
      case IBV_ATOMIC_GLOB: .global
      default: .none
      }
    portCount = Int(attr.phys_port_cnt)
    let general = ex.odp_caps.general_caps
    onDemandPaging = OnDemandPaging(
      supported: general & UInt64(IBV_ODP_SUPPORT.rawValue) != 0,
      implicit: general & UInt64(IBV_ODP_SUPPORT_IMPLICIT.rawValue) != 0,
      reliableConnectedOperations: ex.odp_caps.per_transport_caps.rc_odp_caps
    )
    capabilityFlags = ex.device_cap_flags_ex
  }
}

/// What a device supports, found by asking it rather than by its name.
public struct DeviceCapabilities: Sendable, Hashable {
  /// `ibv_reg_dmabuf_mr` reaches the kernel (device memory, GPU buffers).
  public var dmabufRegistration: Bool
  /// On-demand paging (`IBV_ACCESS_ON_DEMAND` registrations).
  public var onDemandPaging: Bool
  /// `ibv_rereg_mr` is implemented by the provider.
  public var reregistration: Bool
}

extension DeviceAttributes {
  /// Queries the attributes of an open context, for modules (such as
  /// RDMACM) that hold a context they did not open. The C function is
  /// `ibv_query_device_ex`.
  package static func query(_ context: UnsafeMutablePointer<ibv_context>) throws(VerbsError)
    -> DeviceAttributes
  {
    var attr = ibv_device_attr_ex()
    let result = ibv_query_device_ex(context, nil, &attr)
    if result != 0 {
      throw VerbsError(
        .other, operation: "ibv_query_device_ex", errno: result,
        message: "the device did not answer an attribute query")
    }
    return DeviceAttributes(attr)
  }
}
