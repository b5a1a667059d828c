package import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// Anonymous private memory at a chosen alignment: the one mmap-and-trim
/// helper of the package.
package enum AnonymousMemory {
  /// Maps `length` bytes (a multiple of the page size) of zeroed, readable
  /// and writable anonymous memory whose first byte is a multiple of
  /// `alignment` (a power of two, at least the page size). Larger alignments
  /// over-map by `alignment` and unmap the slack on both sides. The C
  /// functions are `mmap` and `munmap`.
  ///
  /// Returns `EOVERFLOW` when `length + alignment` does not fit in `Int`.
  package static func map(length: Int, alignment: Int, extraFlags: Int32 = 0)
    -> Result<UnsafeMutableRawPointer, Errno>
  {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let extra = alignment > page ? alignment : 0
    let (total, overflow) = length.addingReportingOverflow(extra)
    guard !overflow, length > 0 else { return .failure(.overflow) }
    let raw = mmap(
      nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extraFlags, -1, 0)
    guard let raw, raw != MAP_FAILED else { return .failure(Errno(rawValue: errno)) }
    guard extra > 0 else { return .success(raw) }
    // The kernel placed `total` bytes below the top of the address space, so
    // `start + alignment - 1` and the trims below stay in range.
    let start = UInt(bitPattern: raw)
    let aligned = (start + UInt(alignment - 1)) & ~UInt(alignment - 1)
    let head = Int(aligned - start)
    if head > 0 { munmap(raw, head) }
    let tail = total - head - length
    if tail > 0 { munmap(raw + head + length, tail) }
    return .success(raw + head)
  }

  /// Unmaps memory from ``map(length:alignment:extraFlags:)`` or any other
  /// mapping. The C function is `munmap`.
  @discardableResult
  package static func unmap(_ address: UnsafeMutableRawPointer, length: Int) -> Errno? {
    munmap(address, length) == 0 ? nil : Errno(rawValue: errno)
  }

  /// `value` rounded up to a multiple of `alignment` (a power of two), or nil
  /// when that does not fit in `Int`.
  package static func roundUp(_ value: Int, to alignment: Int) -> Int? {
    let (sum, overflow) = value.addingReportingOverflow(alignment - 1)
    return overflow ? nil : sum & ~(alignment - 1)
  }
}
