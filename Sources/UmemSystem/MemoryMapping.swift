/// One line of `/proc/self/maps`: a mapping of the process's address space.
package struct MemoryMapping: Sendable, Hashable, CustomStringConvertible {
  /// First byte.
  package var start: UInt64
  /// One past the last byte.
  package var end: UInt64
  /// `r`, `w`, `x` and `s` (shared) or `p` (private), as the kernel prints them.
  package var permissions: String
  /// The file or pseudo-file (`[heap]`), empty for anonymous memory.
  package var path: String

  package var isReadable: Bool { permissions.hasPrefix("r") }
  package var isWritable: Bool { permissions.dropFirst().first == "w" }
  package var isShared: Bool { permissions.dropFirst(3).first == "s" }

  package var description: String {
    "0x\(String(start, radix: 16))-0x\(String(end, radix: 16)) \(permissions)"
      + (path.isEmpty ? " anonymous" : " \(path)")
  }

  /// Parses one line: `start-end perms offset dev inode path`.
  package static func parse(_ line: Substring) -> MemoryMapping? {
    let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
    guard fields.count >= 5 else { return nil }
    let bounds = fields[0].split(separator: "-")
    guard bounds.count == 2, let start = UInt64(bounds[0], radix: 16),
      let end = UInt64(bounds[1], radix: 16), start < end
    else { return nil }
    let path = fields.count > 5 ? String(fields[5].drop(while: { $0 == " " })) : ""
    return MemoryMapping(start: start, end: end, permissions: String(fields[1]), path: path)
  }

  /// The mappings of this process that overlap `[address, address + length)`.
  package static func overlapping(_ address: UInt64, length: UInt64) -> [MemoryMapping] {
    guard case .success(let text) = TextFile.read("/proc/self/maps") else { return [] }
    // Saturating: a range that would run past 2^64 is cut at the top.
    let (sum, overflow) = address.addingReportingOverflow(length)
    let end = overflow ? UInt64.max : sum
    return text.split(separator: "\n").compactMap(parse).filter {
      $0.start < end && address < $0.end
    }
  }

  /// The first mapping in the range that is shared and not writable, if any.
  package static func readOnlyShared(in address: UInt64, length: UInt64) -> MemoryMapping? {
    overlapping(address, length: length).first { $0.isShared && !$0.isWritable }
  }
}
