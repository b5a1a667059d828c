#if canImport(Glibc)
  import Glibc
#endif

/// Memory that starts on a page boundary and is owned by exactly one value.
///
/// Registered memory must never move or be copied behind the HCA's back, so
/// this buffer is `~Copyable`: it cannot be duplicated, and a memory region
/// that registers it borrows it, so it cannot be freed while registered.
/// Allocated with anonymous `mmap` (zero-filled), released with `munmap`.
public struct PageAlignedBuffer: ~Copyable {
  /// The first byte.
  public let baseAddress: UnsafeMutableRawPointer
  /// The usable length in bytes.
  public let count: Int
  let mappedLength: Int

  /// The CPU page size (`sysconf(_SC_PAGESIZE)`).
  public static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

  /// Allocates `byteCount` zeroed bytes at an address aligned to `alignment`
  /// (a power of two, at least the page size). The C function is `mmap`.
  public init(byteCount: Int, alignment: Int = PageAlignedBuffer.pageSize) throws(VerbsError) {
    let page = PageAlignedBuffer.pageSize
    guard byteCount > 0 else {
      throw VerbsError(
        .invalidArgument, operation: "mmap", errno: EINVAL,
        message: "a buffer needs at least one byte", checkedBeforeCall: true)
    }
    guard alignment >= page, alignment & (alignment - 1) == 0 else {
      throw VerbsError(
        .invalidArgument, operation: "mmap", errno: EINVAL,
        message: "alignment must be a power of two of at least \(page) bytes; got \(alignment)",
        checkedBeforeCall: true)
    }
    let rounded = byteCount.roundedUp(to: page)
    let extra = alignment > page ? alignment : 0
    let (total, overflow) = rounded.addingReportingOverflow(extra)
    guard !overflow else {
      throw VerbsError(
        .invalidArgument, operation: "mmap", errno: EOVERFLOW,
        message: "\(byteCount) bytes cannot be allocated", checkedBeforeCall: true)
    }
    let raw = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    guard let raw, raw != MAP_FAILED else {
      let code = errno
      throw VerbsError(
        .resourceExhausted, operation: "mmap", errno: code,
        message: "could not map \(total) bytes of anonymous memory")
    }
    // Trim the slack before and after the aligned window.
    let start = UInt(bitPattern: raw)
    let aligned = (start + UInt(alignment - 1)) & ~UInt(alignment - 1)
    let head = Int(aligned - start)
    if head > 0 { munmap(raw, head) }
    let tail = total - head - rounded
    if tail > 0 { munmap(raw + head + rounded, tail) }
    baseAddress = raw + head
    count = byteCount
    mappedLength = rounded
  }

  deinit { munmap(baseAddress, mappedLength) }

  /// The address as an integer, for IOVAs and remote keys.
  public var address: UInt64 { UInt64(UInt(bitPattern: baseAddress)) }

  /// Read-only view of the bytes.
  public var bytes: RawSpan {
    @_lifetime(borrow self) get {
      let span = RawSpan(_unsafeStart: UnsafeRawPointer(baseAddress), byteCount: count)
      return _overrideLifetime(span, borrowing: self)
    }
  }

  /// Calls `body` with the bytes. The memory stays shared with the HCA, which
  /// may read or write it at any time while registered.
  public func withUnsafeMutableBytes<R, E: Error>(
    _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
  ) throws(E) -> R {
    try body(UnsafeMutableRawBufferPointer(start: baseAddress, count: count))
  }

  /// Copies `source` into the buffer at `offset`.
  public func copy(from source: some Collection<UInt8>, at offset: Int = 0) {
    precondition(offset >= 0 && offset + source.count <= count, "copy past the end of the buffer")
    let target = UnsafeMutableRawBufferPointer(start: baseAddress + offset, count: source.count)
    target.copyBytes(from: source)
  }

  /// The bytes in `range`, as a new array.
  public func load(_ range: Range<Int>) -> [UInt8] {
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "range outside the buffer")
    return Array(UnsafeRawBufferPointer(start: baseAddress + range.lowerBound, count: range.count))
  }
}

extension Int {
  func roundedUp(to alignment: Int) -> Int { (self + alignment - 1) & ~(alignment - 1) }
}
