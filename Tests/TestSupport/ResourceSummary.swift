#if canImport(Glibc)
  import Glibc
#endif

/// The kernel RDMA resource tracker's per-device summary (what `rdma
/// resource show` prints first), asked for over netlink by this process:
/// the leak checks take two snapshots per test, and starting `rdma` costs
/// about 0.25 s each in the emulated VM.
enum ResourceSummary {
  /// Every device's count of each kind ("pd", "cq", "qp", "cm_id", "mr",
  /// ...), summed over devices; nil when the kernel did not answer.
  static func read() -> [String: Int]? {
    let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
    let fd = socket(AF_NETLINK, type, netlinkRDMA)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    // nlmsghdr: length, type, flags, sequence, port (0: the kernel fills it).
    var request = [UInt8]()
    append(&request, UInt32(16))
    append(&request, UInt16(resourceGet))
    append(&request, UInt16(1 | 0x300))  // NLM_F_REQUEST | NLM_F_DUMP
    append(&request, UInt32(1))
    append(&request, UInt32(0))
    // Unconnected, unbound: the kernel binds the socket and sends to itself.
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else {
      return nil
    }
    var counts: [String: Int] = [:]
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      guard n > 0 else { return nil }
      var offset = 0
      while offset + 16 <= n {
        let length = Int(load(UInt32.self, buffer, offset))
        let type = load(UInt16.self, buffer, offset + 4)
        guard length >= 16, offset + length <= n else { return nil }
        if type == 3 { return counts }  // NLMSG_DONE
        if type == 2 { return nil }  // NLMSG_ERROR
        if type == resourceGet {
          for (kind, value) in summaryEntries(buffer, from: offset + 16, to: offset + length) {
            counts[kind, default: 0] += value
          }
        }
        offset += (length + 3) & ~3
      }
    }
  }

  private static let netlinkRDMA: Int32 = 20  // NETLINK_RDMA
  /// RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_RES_GET)
  private static let resourceGet: UInt16 = (5 << 10) + 9
  private static let summaryAttribute: UInt16 = 15  // RDMA_NLDEV_ATTR_RES_SUMMARY
  private static let entryAttribute: UInt16 = 16  // ..._RES_SUMMARY_ENTRY
  private static let nameAttribute: UInt16 = 17  // ..._RES_SUMMARY_ENTRY_NAME
  private static let currentAttribute: UInt16 = 18  // ..._RES_SUMMARY_ENTRY_CURR

  /// The (name, current) pairs in one device's message.
  private static func summaryEntries(_ bytes: [UInt8], from start: Int, to end: Int)
    -> [(String, Int)]
  {
    var result: [(String, Int)] = []
    for (type, range) in attributes(bytes, from: start, to: end) where type == summaryAttribute {
      for (entryType, entry) in attributes(bytes, from: range.lowerBound, to: range.upperBound)
      where entryType == entryAttribute {
        var name: String?
        var current: Int?
        for (field, value) in attributes(bytes, from: entry.lowerBound, to: entry.upperBound) {
          if field == nameAttribute {
            name = String(decoding: bytes[value].prefix { $0 != 0 }, as: UTF8.self)
          } else if field == currentAttribute, value.count == 8 {
            current = Int(truncatingIfNeeded: load(UInt64.self, bytes, value.lowerBound))
          }
        }
        if let name, let current { result.append((name, current)) }
      }
    }
    return result
  }

  /// The attributes (type without the nested and byte-order flags, payload
  /// range) between `start` and `end`.
  private static func attributes(_ bytes: [UInt8], from start: Int, to end: Int)
    -> [(UInt16, Range<Int>)]
  {
    var result: [(UInt16, Range<Int>)] = []
    var offset = start
    while offset + 4 <= end {
      let length = Int(load(UInt16.self, bytes, offset))
      let type = load(UInt16.self, bytes, offset + 2) & 0x3fff
      guard length >= 4, offset + length <= end else { break }
      result.append((type, (offset + 4)..<(offset + length)))
      offset += (length + 3) & ~3
    }
    return result
  }

  private static func load<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
    bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
  }

  private static func append<T: FixedWidthInteger>(_ bytes: inout [UInt8], _ value: T) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
  }
}
