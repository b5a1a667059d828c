internal import CRDMA

/// What a memory region lets the local and remote sides do
/// (`enum ibv_access_flags`).
///
/// The empty set is valid: the HCA may read the memory for local sends, and
/// nothing else (rping registers its start and stop buffers that way).
public struct MemoryAccess: OptionSet, Sendable, Hashable, CustomStringConvertible {
  /// The raw `IBV_ACCESS_*` bits.
  public var rawValue: UInt32

  /// Creates a set from raw `IBV_ACCESS_*` bits.
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// The HCA may write the memory locally, for receives and READ responses (`IBV_ACCESS_LOCAL_WRITE`).
  public static let localWrite = MemoryAccess(rawValue: IBV_ACCESS_LOCAL_WRITE.rawValue)
  /// Peers may RDMA WRITE into it; requires ``localWrite`` (`IBV_ACCESS_REMOTE_WRITE`).
  public static let remoteWrite = MemoryAccess(rawValue: IBV_ACCESS_REMOTE_WRITE.rawValue)
  /// Peers may RDMA READ from it (`IBV_ACCESS_REMOTE_READ`).
  public static let remoteRead = MemoryAccess(rawValue: IBV_ACCESS_REMOTE_READ.rawValue)
  /// Peers may run atomics on it; requires ``localWrite`` (`IBV_ACCESS_REMOTE_ATOMIC`).
  public static let remoteAtomic = MemoryAccess(rawValue: IBV_ACCESS_REMOTE_ATOMIC.rawValue)
  /// Memory windows may be bound to it (`IBV_ACCESS_MW_BIND`).
  public static let memoryWindowBind = MemoryAccess(rawValue: IBV_ACCESS_MW_BIND.rawValue)
  /// Remote addresses count from 0 instead of the virtual address (`IBV_ACCESS_ZERO_BASED`).
  public static let zeroBased = MemoryAccess(rawValue: IBV_ACCESS_ZERO_BASED.rawValue)
  /// Pages are faulted in on demand instead of pinned (`IBV_ACCESS_ON_DEMAND`).
  public static let onDemand = MemoryAccess(rawValue: IBV_ACCESS_ON_DEMAND.rawValue)
  /// The memory is backed by hugetlbfs pages (`IBV_ACCESS_HUGETLB`).
  public static let hugeTLB = MemoryAccess(rawValue: IBV_ACCESS_HUGETLB.rawValue)
  /// PCIe relaxed ordering where supported; optional, ignored elsewhere (`IBV_ACCESS_RELAXED_ORDERING`).
  public static let relaxedOrdering = MemoryAccess(rawValue: IBV_ACCESS_RELAXED_ORDERING.rawValue)

  /// Every flag with its command-line spelling, in bit order.
  public static let named: [(name: String, access: MemoryAccess)] = [
    ("local-write", .localWrite), ("remote-write", .remoteWrite), ("remote-read", .remoteRead),
    ("remote-atomic", .remoteAtomic), ("mw-bind", .memoryWindowBind), ("zero-based", .zeroBased),
    ("on-demand", .onDemand), ("hugetlb", .hugeTLB), ("relaxed-ordering", .relaxedOrdering),
  ]

  /// Parses a comma-separated list such as `local-write,remote-read`; `none` or
  /// an empty string is the empty set. Returns nil for an unknown name.
  public init?(parsing list: String) {
    self = []
    for item in list.split(separator: ",").map({ $0.trimmingSpaces() }) where !item.isEmpty {
      if item == "none" { continue }
      guard let match = MemoryAccess.named.first(where: { $0.name == item }) else { return nil }
      insert(match.access)
    }
  }

  /// Whether registering needs the pages pinned writable, as the kernel decides:
  /// any of local write, remote write, remote atomic or MW bind.
  public var needsWritablePages: Bool {
    !intersection([.localWrite, .remoteWrite, .remoteAtomic, .memoryWindowBind]).isEmpty
  }

  /// The comma-separated names, or `none`.
  public var description: String {
    let names = MemoryAccess.named.filter { contains($0.access) }.map(\.name)
    var rest = self
    for entry in MemoryAccess.named { rest.remove(entry.access) }
    let all = names + (rest.isEmpty ? [] : ["0x" + String(rest.rawValue, radix: 16)])
    return all.isEmpty ? "none" : all.joined(separator: ",")
  }
}

extension Substring {
  fileprivate func trimmingSpaces() -> Substring {
    var result = self
    while result.first == " " { result.removeFirst() }
    while result.last == " " { result.removeLast() }
    return result
  }
}
