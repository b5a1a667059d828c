internal import UmemSystem
import Verbs

#if canImport(Glibc)
  import Glibc
#endif

/// Memory for RDMA with a chosen backing, owned by exactly one value and
/// released with `munmap` when dropped.
///
/// The backings are the ways a user gets pages larger than 4 KiB:
/// - ``Backing/pages``: anonymous memory, page-aligned.
/// - ``Backing/transparentHuge``: aligned to 2 MiB and advised with
///   `MADV_HUGEPAGE`, so the kernel can back it with transparent huge pages
///   when it faults (the machine's THP mode must be `madvise` or `always`).
/// - ``Backing/hugetlb2M``, ``Backing/hugetlb1G``: `MAP_HUGETLB` pages from
///   the reserved hugetlbfs pool; none reserved is a clear error.
///
/// What the kernel actually gave is in ``obtained()``, read after the pages
/// are faulted in (pinning does that).
public struct UmemBuffer: ~Copyable {
  /// How the memory should be backed.
  public enum Backing: String, Sendable, Hashable, CaseIterable {
    /// 4 KiB pages, page-aligned.
    case pages = "plain"
    /// 2 MiB-aligned, `MADV_HUGEPAGE`.
    case transparentHuge = "thp"
    /// hugetlbfs 2 MiB pages.
    case hugetlb2M = "hugetlb-2m"
    /// hugetlbfs 1 GiB pages.
    case hugetlb1G = "hugetlb-1g"

    /// The alignment of the allocation.
    public var alignment: Int {
      switch self {
      case .pages: 4096
      case .transparentHuge, .hugetlb2M: 2 << 20
      case .hugetlb1G: 1 << 30
      }
    }
  }

  /// The first byte (aligned to ``Backing/alignment``).
  public let baseAddress: UnsafeMutableRawPointer
  /// The usable length in bytes.
  public let byteCount: Int
  let mappedLength: Int
  let backingRaw: UInt8

  /// Maps `byteCount` zeroed bytes with `backing`. The C functions are
  /// `mmap` and `madvise`.
  ///
  /// - Throws: ``UmemError/Code/invalidArgument`` for a zero size or one
  ///   that overflows when rounded up to the backing's pages (`EOVERFLOW`),
  ///   ``UmemError/Code/hugePagesUnavailable`` when hugetlbfs has too few
  ///   free pages of the size (the message gives the pool's counts and how
  ///   to reserve more).
  public init(byteCount: Int, backing: Backing = .pages) throws(UmemError) {
    let mapping = try Self.map(byteCount: byteCount, backing: backing)
    self.baseAddress = mapping.base
    self.mappedLength = mapping.length
    self.byteCount = byteCount
    self.backingRaw = UInt8(Backing.allCases.firstIndex(of: backing)!)
  }

  /// All fallible setup, before any stored property is assigned.
  static func map(byteCount: Int, backing: Backing) throws(UmemError)
    -> (base: UnsafeMutableRawPointer, length: Int)
  {
    guard byteCount > 0 else {
      throw UmemError(
        .invalidArgument, operation: "mmap", errno: EINVAL,
        message: "a buffer needs at least one byte", checkedBeforeCall: true)
    }
    let alignment = backing.alignment
    // THP mappings are over-allocated by one alignment so the start can be
    // aligned: both the rounding and that slack must fit.
    let slack = backing == .transparentHuge ? alignment : 0
    let (padded, o1) = byteCount.addingReportingOverflow(alignment - 1)
    let (_, o2) = (padded & ~(alignment - 1)).addingReportingOverflow(slack)
    guard !o1 && !o2 else {
      throw UmemError(
        .invalidArgument, operation: "mmap", errno: EOVERFLOW,
        message: "\(byteCount) bytes, rounded up to a multiple of \(alignment) for "
          + "\(backing.rawValue) pages, do not fit in the address space; allocate less",
        checkedBeforeCall: true)
    }
    let rounded = padded & ~(alignment - 1)
    // The system layer's one aligned-mmap helper: hugetlb mappings come
    // aligned from the kernel; plain and THP ones are over-mapped by one
    // alignment and trimmed (the slack was checked above).
    let hugetlb = backing == .hugetlb2M || backing == .hugetlb1G
    let flags: Int32 =
      hugetlb
      ? MAP_HUGETLB | HugeMapFlag.flag(pageShift: backing == .hugetlb2M ? 21 : 30) : 0
    let base: UnsafeMutableRawPointer
    switch AnonymousMemory.map(
      length: rounded, alignment: hugetlb ? 4096 : alignment, extraFlags: flags)
    {
    case .success(let value): base = value
    case .failure(let failure) where hugetlb:
      throw Self.hugetlbFailure(failure.code, backing: backing, bytes: rounded)
    case .failure(let failure):
      throw UmemError(
        .other, operation: "mmap", errno: failure.code,
        message: "could not map \(rounded + slack) bytes of anonymous memory")
    }
    if backing == .transparentHuge {
      let code = system_madvise(UInt64(UInt(bitPattern: base)), UInt64(rounded), Advice.hugePage)
      if code != 0 {
        AnonymousMemory.unmap(base, length: rounded)
        throw UmemError(
          .notSupported, operation: "madvise(MADV_HUGEPAGE)", errno: code,
          message: "transparent huge pages are not available (THP mode: "
            + "\(TransparentHugePages.mode ?? "unknown")); use plain or hugetlbfs pages")
      }
    }
    return (base, rounded)
  }

  deinit { AnonymousMemory.unmap(baseAddress, length: mappedLength) }

  /// The backing that was asked for.
  public var backing: Backing { Backing.allCases[Int(backingRaw)] }

  /// The address as an integer.
  public var address: UInt64 { UInt64(UInt(bitPattern: baseAddress)) }

  /// Calls `body` with the bytes.
  public func withUnsafeMutableBytes<R, E: Error>(
    _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
  ) throws(E) -> R {
    try body(UnsafeMutableRawBufferPointer(start: baseAddress, count: byteCount))
  }

  /// What the kernel gave this mapping: its page size (`KernelPageSize`) and
  /// how much of it is transparent huge pages (`AnonHugePages`), from
  /// `/proc/self/smaps`. Faulted-in pages only: pin first.
  public func obtained() throws(UmemError) -> Obtained {
    // The mapping exists, so its end is a valid address.
    let mappings = try SmapsMapping.read(overlapping: address, address + UInt64(mappedLength))
    return Obtained(
      requested: backing,
      kernelPageSize: mappings.map(\.kernelPageSize).max() ?? 4096,
      transparentHugeBytes: mappings.reduce(0) { $0 + $1.anonHugeBytes },
      transparentHugeMode: TransparentHugePages.mode)
  }

  /// What an allocation got.
  public struct Obtained: Sendable, Hashable, CustomStringConvertible {
    /// The backing asked for.
    public var requested: Backing
    /// The mapping's page size: 4 KiB, or the hugetlbfs size.
    public var kernelPageSize: UInt64
    /// Bytes of transparent huge pages in the mapping.
    public var transparentHugeBytes: UInt64
    /// The system's THP mode (`always`, `madvise`, `never`), when readable.
    public var transparentHugeMode: String?

    /// One line: requested, page size, THP bytes and mode.
    public var description: String {
      "requested \(requested.rawValue): kernel page size \(kernelPageSize >> 10) KiB, "
        + "\(transparentHugeBytes >> 10) KiB transparent huge pages (THP mode \(transparentHugeMode ?? "unknown"))"
    }
  }

  static func hugetlbFailure(_ code: Int32, backing: Backing, bytes: Int) -> UmemError {
    let pool = HugetlbPool(pageSize: backing == .hugetlb2M ? 2 << 20 : 1 << 30)
    let needed = bytes / pool.pageSize
    let sysctl =
      pool.pageSize == 2 << 20 ? "/proc/sys/vm/nr_hugepages" : pool.path + "/nr_hugepages"
    return UmemError(
      code == ENOMEM || code == EINVAL ? .hugePagesUnavailable : .other,
      operation: "mmap(MAP_HUGETLB)", errno: code,
      message: "\(needed) hugetlbfs page(s) of \(pool.pageSize >> 20) MiB needed, but the pool has "
        + "\(pool.total.map(String.init) ?? "no") reserved and \(pool.free.map(String.init) ?? "no") free. "
        + "Reserve more as root (echo N > \(sysctl)), or use --backing thp")
  }
}

/// The hugetlbfs pool of one page size
/// (`/sys/kernel/mm/hugepages/hugepages-<size>kB`).
public struct HugetlbPool: Sendable, Hashable {
  /// The page size in bytes.
  public var pageSize: Int
  /// `nr_hugepages`, or `nil` when the size is not supported.
  public var total: Int?
  /// `free_hugepages`.
  public var free: Int?

  /// The folder of this size in sysfs.
  public var path: String { "/sys/kernel/mm/hugepages/hugepages-\(pageSize >> 10)kB" }

  /// Reads the pool's counts.
  public init(pageSize: Int) {
    self.pageSize = pageSize
    func number(_ name: String) -> Int? {
      guard
        case .success(let text) = readTextFile(
          "/sys/kernel/mm/hugepages/hugepages-\(pageSize >> 10)kB/\(name)")
      else { return nil }
      return Int(text.split(separator: "\n").first ?? "")
    }
    total = number("nr_hugepages")
    free = number("free_hugepages")
  }
}

/// The system's transparent huge page settings.
public enum TransparentHugePages {
  /// The selected mode of `/sys/kernel/mm/transparent_hugepage/enabled`.
  public static var mode: String? {
    guard case .success(let text) = readTextFile("/sys/kernel/mm/transparent_hugepage/enabled"),
      let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]")
    else { return nil }
    return String(text[text.index(after: open)..<close])
  }
}
