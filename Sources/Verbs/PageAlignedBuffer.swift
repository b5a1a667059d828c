internal import UmemSystem

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
    let mapping = try AnonymousMemory.checkedMap(byteCount: byteCount, alignment: alignment)
    baseAddress = mapping.base
    count = byteCount
    mappedLength = mapping.length
  }

  deinit { AnonymousMemory.unmap(baseAddress, length: mappedLength) }

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

  /// Copies `source` into the buffer at `offset`; throws when it does not fit.
  public func copy(from source: some Collection<UInt8>, at offset: Int = 0) throws(VerbsError) {
    try BufferBytes.copy(source, into: baseAddress, count: count, at: offset)
  }

  /// The bytes in `range`, as a new array; throws for a range outside the buffer.
  public func load(_ range: Range<Int>) throws(VerbsError) -> [UInt8] {
    try BufferBytes.load(range, from: baseAddress, count: count)
  }
}

extension AnonymousMemory {
  /// Maps `byteCount` bytes rounded up to whole pages at `alignment`, or
  /// throws the typed error for `mmap`: `EINVAL` for an empty buffer or an
  /// alignment that is not a power of two of at least a page, `EOVERFLOW`
  /// when the rounded size does not fit in `Int`, the kernel's errno when
  /// it refuses.
  static func checkedMap(byteCount: Int, alignment: Int) throws(VerbsError) -> (
    base: UnsafeMutableRawPointer, length: Int
  ) {
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
    guard let rounded = AnonymousMemory.roundUp(byteCount, to: page) else {
      throw VerbsError(
        .invalidArgument, operation: "mmap", errno: EOVERFLOW,
        message: "\(byteCount) bytes rounded up to whole pages do not fit in a 64-bit size; "
          + "ask for less", checkedBeforeCall: true)
    }
    switch AnonymousMemory.map(length: rounded, alignment: alignment) {
    case .success(let base):
      return (base, rounded)
    case .failure(let failure) where failure == .overflow:
      throw VerbsError(
        .invalidArgument, operation: "mmap", errno: EOVERFLOW,
        message: "\(byteCount) bytes at \(alignment)-byte alignment do not fit in a 64-bit size; "
          + "ask for less", checkedBeforeCall: true)
    case .failure(let failure):
      throw VerbsError(
        failure == .noMemory ? .resourceExhausted : .other, operation: "mmap",
        errno: failure.rawValue,
        message: "could not map \(rounded) bytes of anonymous memory; the machine or the "
          + "process's address-space limit (ulimit -v) is short of room")
    }
  }
}
