/// How a stretch of a umem is backed: base pages, a transparent huge page,
/// or hugetlbfs pages.
public struct BackingRange: Sendable, Hashable {
  /// The kind of page.
  public enum Kind: String, Sendable, Hashable {
    /// Ordinary 4 KiB pages.
    case base
    /// Transparent huge pages (2 MiB, mapped by one PMD).
    case transparentHuge
    /// hugetlbfs pages (`MAP_HUGETLB` or a hugetlbfs file).
    case hugetlb
  }

  /// The first virtual address (page-aligned).
  public var address: UInt64
  /// The length in bytes.
  public var length: UInt64
  /// The size of each page in the range.
  public var pageSize: UInt64
  /// The kind of page.
  public var kind: Kind
}

/// The page sizes backing a umem, as the kernel reports them.
///
/// hugetlbfs mappings come from `KernelPageSize` in `/proc/self/smaps` (exact,
/// for everyone). Transparent huge pages are located page by page from
/// `/proc/kpageflags` (`KPF_THP` on a compound head whose 512 frames are the
/// ones mapped): exact, but it needs root, as do the frames themselves. Without
/// it the report keeps base pages there and gives `AnonHugePages` from smaps,
/// which counts THP bytes per mapping but not where they are.
public struct BackingReport: Sendable, Hashable {
  /// Consecutive ranges of one kind and page size, in address order.
  public var ranges: [BackingRange]
  /// Whether transparent huge pages were located through `/proc/kpageflags`.
  public var locatedTransparentHugePages: Bool
  /// `AnonHugePages` summed over the mappings the umem touches (whole
  /// mappings, not only the umem's part).
  public var mappingTransparentHugeBytes: UInt64

  /// Every distinct page size, as a bitmap.
  public var pageSizes: UInt64 { ranges.reduce(0) { $0 | $1.pageSize } }

  /// Bytes of the umem's pages backed by `kind`.
  public func bytes(_ kind: BackingRange.Kind) -> UInt64 {
    ranges.filter { $0.kind == kind }.reduce(0) { $0 + $1.length }
  }
}

/// One mapping of `/proc/self/smaps`.
struct SmapsMapping {
  var start: UInt64
  var end: UInt64
  var kernelPageSize: UInt64 = 4096
  var anonHugeBytes: UInt64 = 0
  var thpEligible: Bool = false
  /// `lo` in `VmFlags`: the mapping is locked (`mlock`, `mlockall`).
  var locked: Bool = false

  /// The mappings that overlap `[start, end)`.
  static func read(overlapping start: UInt64, _ end: UInt64) throws(UmemError) -> [SmapsMapping] {
    let text: String
    switch readTextFile("/proc/self/smaps") {
    case .success(let value): text = value
    case .failure(let failure):
      let code = failure.code
      throw UmemError(
        .procReadFailed, operation: "open(/proc/self/smaps)", errno: code,
        message: "the memory map cannot be read; is /proc mounted?")
    }
    var out: [SmapsMapping] = []
    var current: SmapsMapping? = nil
    for line in text.split(separator: "\n") {
      if let dash = line.firstIndex(of: "-"), let space = line.firstIndex(of: " "), dash < space,
        let lo = UInt64(line[..<dash], radix: 16),
        let hi = UInt64(line[line.index(after: dash)..<space], radix: 16)
      {
        if let mapping = current { out.append(mapping) }
        current = lo < end && hi > start ? SmapsMapping(start: lo, end: hi) : nil
        continue
      }
      guard current != nil else { continue }
      let fields = line.split(separator: " ", omittingEmptySubsequences: true)
      if fields.first == "VmFlags:" {
        current!.locked = fields.dropFirst().contains("lo")
        continue
      }
      guard fields.count >= 2, let kib = UInt64(fields[1]) else { continue }
      // Sizes are in KiB; a value too large for bytes is clamped, not trapped on.
      let value = kib.multipliedReportingOverflow(by: 1024).overflow ? UInt64.max : kib * 1024
      switch fields[0] {
      case "KernelPageSize:": current!.kernelPageSize = value
      case "AnonHugePages:": current!.anonHugeBytes = value
      case "THPeligible:": current!.thpEligible = kib == 1
      default: break
      }
    }
    if let mapping = current { out.append(mapping) }
    return out
  }
}

/// `/proc/kpageflags`: 8 bytes of flags per page frame (root only).
enum KernelPageFlags {
  static let compoundHead: UInt64 = 1 << 15
  static let huge: UInt64 = 1 << 17
  static let transparentHuge: UInt64 = 1 << 22
}

extension Umem {
  /// The page sizes backing this umem, from the kernel: `/proc/self/smaps`
  /// for hugetlbfs, `/proc/kpageflags` (root) for transparent huge pages.
  ///
  /// - Complexity: O(pages + mappings).
  public func backing() throws(UmemError) -> BackingReport {
    let mappings = try SmapsMapping.read(overlapping: lockStart, lockEnd)
    let huge: UInt64 = 2 << 20
    // Frames of the 2 MiB-aligned windows that lie inside the locked range.
    var kpageflags: Int32? = nil
    if case .success(let fd) = system_openReadOnly("/proc/kpageflags") { kpageflags = fd }
    defer { if let fd = kpageflags { system_close(fd) } }
    var windowHeads: Set<UInt64> = []
    var sawFrames = false
    if let flagsFD = kpageflags {
      let reader = try PagemapReader()
      var page: UInt64 = lockStart >> cpuPageShift
      var runStartPage: UInt64 = 0
      var runStartFrame: UInt64 = 0
      var runLength: UInt64 = 0
      try reader.forEachBatch(firstPage: page, count: pageCount) { entries in
        for entry in entries {
          defer { page += 1 }
          let frame = entry & PagemapEntry.frameMask
          guard entry & PagemapEntry.present != 0, frame != 0 else {
            runLength = 0
            continue
          }
          sawFrames = true
          if page % 512 == 0 || runLength == 0 || frame != runStartFrame + runLength {
            runStartPage = page
            runStartFrame = frame
            runLength = 0
          }
          runLength += 1
          if runLength == 512 && runStartPage % 512 == 0 && runStartFrame % 512 == 0 {
            var flags: UInt64 = 0
            let ok = withUnsafeMutableBytes(of: &flags) {
              system_pread(flagsFD, $0.baseAddress!, 8, runStartFrame * 8)
            }
            if case .success(8) = ok, flags & KernelPageFlags.transparentHuge != 0,
              flags & KernelPageFlags.compoundHead != 0
            {
              windowHeads.insert(runStartPage << cpuPageShift)
            }
          }
        }
      }
    }
    var ranges: [BackingRange] = []
    func add(_ address: UInt64, _ length: UInt64, _ size: UInt64, _ kind: BackingRange.Kind) {
      if var last = ranges.last, last.kind == kind, last.pageSize == size,
        last.address + last.length == address
      {
        last.length += length
        ranges[ranges.count - 1] = last
      } else {
        ranges.append(BackingRange(address: address, length: length, pageSize: size, kind: kind))
      }
    }
    var cursor = lockStart
    var thpBytes: UInt64 = 0
    for mapping in mappings {
      thpBytes =
        thpBytes.addingReportingOverflow(mapping.anonHugeBytes).overflow
        ? .max : thpBytes + mapping.anonHugeBytes
      let lo = Swift.max(mapping.start, lockStart)
      let hi = Swift.min(mapping.end, lockEnd)
      if lo > cursor { add(cursor, lo - cursor, cpuPageSize, .base) }
      if mapping.kernelPageSize > cpuPageSize {
        add(lo, hi - lo, mapping.kernelPageSize, .hugetlb)
      } else {
        var at = lo
        while at < hi {
          // Distances, not sums, so the top 2 MiB of the address space is no special case.
          let toWindowEnd = huge - at % huge
          if toWindowEnd == huge, hi - at >= huge, windowHeads.contains(at) {
            add(at, huge, huge, .transparentHuge)
            at += huge
          } else {
            let next = hi - at <= toWindowEnd ? hi : at + toWindowEnd
            add(at, next - at, cpuPageSize, .base)
            at = next
          }
        }
      }
      cursor = hi
    }
    if cursor < lockEnd { add(cursor, lockEnd - cursor, cpuPageSize, .base) }
    return BackingReport(
      ranges: ranges, locatedTransparentHugePages: kpageflags != nil && sawFrames,
      mappingTransparentHugeBytes: thpBytes)
  }
}
