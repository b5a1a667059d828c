internal import UmemSystem

#if canImport(Glibc)
  import Glibc
#endif

/// Memory owned by a reference-counted, `Sendable` object, for the owned
/// tier: every ``SharedMemoryRegion`` registered over it keeps it alive, so
/// the memory is released only after the last region is deregistered.
///
/// It can own memory three ways: fresh anonymous pages
/// (``init(byteCount:alignment:)``), memory the application already has
/// (``init(adopting:)`` for `UnsafeMutableRawBufferPointer.allocate`, or
/// ``init(adopting:release:)`` for anything else), and a memory-mapped file
/// (``init(mappingFileAt:offset:length:writable:)``).
///
/// The bytes are shared with the HCA and, once the buffer is shared, with
/// every thread that holds it: like any memory handed to RDMA, who writes
/// which bytes when is the application's protocol, not the type's.
public final class SharedBuffer: @unchecked Sendable {
  /// The first byte.
  public let baseAddress: UnsafeMutableRawPointer
  /// The length in bytes.
  public let count: Int
  private let release: @Sendable () -> Void

  private init(
    baseAddress: UnsafeMutableRawPointer, count: Int, release: @escaping @Sendable () -> Void
  ) {
    self.baseAddress = baseAddress
    self.count = count
    self.release = release
  }

  deinit { release() }

  /// Allocates `byteCount` zeroed bytes at an address aligned to
  /// `alignment` (a power of two, at least the page size), with anonymous
  /// `mmap` like ``PageAlignedBuffer``. The C function is `mmap`.
  public convenience init(byteCount: Int, alignment: Int = PageAlignedBuffer.pageSize)
    throws(VerbsError)
  {
    let mapping = try AnonymousMemory.checkedMap(byteCount: byteCount, alignment: alignment)
    let base = UInt(bitPattern: mapping.base)
    let length = mapping.length
    self.init(baseAddress: mapping.base, count: byteCount) {
      AnonymousMemory.unmap(UnsafeMutableRawPointer(bitPattern: base)!, length: length)
    }
  }

  /// Takes ownership of memory allocated with
  /// `UnsafeMutableRawBufferPointer.allocate(byteCount:alignment:)`; it is
  /// deallocated when the last reference goes. Do not free it yourself.
  public convenience init(adopting memory: UnsafeMutableRawBufferPointer) throws(VerbsError) {
    try self.init(adopting: memory) { $0.deallocate() }
  }

  /// Takes ownership of memory the application allocated some other way
  /// (`posix_memalign`, a pool, a huge-page mapping); `release` runs once,
  /// when the last reference goes.
  public init(
    adopting memory: UnsafeMutableRawBufferPointer,
    release: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Void
  ) throws(VerbsError) {
    guard let base = memory.baseAddress, memory.count > 0 else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_reg_mr", errno: EINVAL,
        message: "the buffer is empty; adopt memory of at least one byte",
        checkedBeforeCall: true)
    }
    baseAddress = base
    count = memory.count
    let start = UInt(bitPattern: base)
    let length = memory.count
    self.release = {
      release(
        UnsafeMutableRawBufferPointer(
          start: UnsafeMutableRawPointer(bitPattern: start), count: length))
    }
  }

  /// Maps `length` bytes of the file at `path`, starting at byte `offset`,
  /// shared with the file (`MAP_SHARED`), and unmaps it when the last
  /// reference goes. The C functions are `open`, `fstat` and `mmap`.
  ///
  /// - Parameters:
  ///   - offset: any byte offset; the mapping starts at the page below it.
  ///   - length: bytes to map; defaults to the rest of the file.
  ///   - writable: map `PROT_READ|PROT_WRITE` (the file is opened
  ///     read-write). Registration with write access needs it; and on
  ///     kernels before 6.2 so does every registration of a shared file
  ///     mapping, whatever its access (the kernel pinned them for write).
  public convenience init(
    mappingFileAt path: String, offset: UInt64 = 0, length: Int? = nil, writable: Bool
  ) throws(VerbsError) {
    let fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
    guard fd >= 0 else {
      let code = errno
      throw VerbsError(
        code == EACCES || code == EPERM ? .permissionDenied : .notMapped, operation: "open",
        errno: code,
        message: "could not open \(path) \(writable ? "read-write" : "read-only"); "
          + "check that it exists and its permissions")
    }
    defer { close(fd) }
    try self.init(mappingFile: fd, offset: offset, length: length, writable: writable, path: path)
  }

  /// Maps part of an open file; see ``init(mappingFileAt:offset:length:writable:)``.
  /// The descriptor may be closed afterwards: the mapping keeps the file.
  public convenience init(
    mappingFile descriptor: Int32, offset: UInt64 = 0, length: Int? = nil, writable: Bool
  ) throws(VerbsError) {
    try self.init(
      mappingFile: descriptor, offset: offset, length: length, writable: writable,
      path: "descriptor \(descriptor)")
  }

  private convenience init(
    mappingFile fd: Int32, offset: UInt64, length: Int?, writable: Bool, path: String
  ) throws(VerbsError) {
    var info = stat()
    guard fstat(fd, &info) == 0 else {
      throw VerbsError(
        .invalidArgument, operation: "fstat", errno: errno,
        message: "could not read the size of \(path)")
    }
    let size = UInt64(max(0, info.st_size))
    guard offset < size else {
      throw VerbsError(
        .invalidArgument, operation: "mmap", errno: EINVAL,
        message: "offset \(offset) is at or past the end of \(path) (\(size) bytes)",
        checkedBeforeCall: true)
    }
    let available = size - offset
    let bytes = length.map { UInt64(max(0, $0)) } ?? available
    guard bytes > 0, bytes <= available, let count = Int(exactly: bytes) else {
      throw VerbsError(
        .invalidArgument, operation: "mmap", errno: EINVAL,
        message: "\(length ?? 0) bytes at offset \(offset) do not fit in \(path) (\(size) bytes); "
          + "map at least one byte and no more than the file has", checkedBeforeCall: true)
    }
    // mmap wants a page-aligned file offset: map from the page below and
    // point past the slack. `slack + count` is at most the file's size,
    // which fits in off_t, so it fits in Int.
    let page = UInt64(PageAlignedBuffer.pageSize)
    let slack = Int(offset % page)
    let mapped = slack + count
    let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
    let raw = mmap(nil, mapped, protection, MAP_SHARED, fd, off_t(offset - UInt64(slack)))
    guard let raw, raw != MAP_FAILED else {
      let code = errno
      throw VerbsError(
        code == EACCES ? .permissionDenied : .other, operation: "mmap", errno: code,
        message: "could not map \(count) bytes of \(path) at offset \(offset)"
          + (code == EACCES ? "; a writable shared mapping needs the file opened read-write" : ""))
    }
    let start = UInt(bitPattern: raw)
    self.init(baseAddress: raw + slack, count: count) {
      AnonymousMemory.unmap(UnsafeMutableRawPointer(bitPattern: start)!, length: mapped)
    }
  }

  /// The address as an integer, for IOVAs and remote keys.
  public var address: UInt64 { UInt64(UInt(bitPattern: baseAddress)) }

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

  func check(_ range: Range<Int>, operation: String) throws(VerbsError) {
    try BufferBytes.check(range, count: count, operation: operation)
  }
}

/// Bounds-checked copies in and out of a buffer, shared by
/// ``PageAlignedBuffer`` and ``SharedBuffer``.
enum BufferBytes {
  static func check(_ range: Range<Int>, count: Int, operation: String) throws(VerbsError) {
    guard range.lowerBound >= 0, range.upperBound <= count else {
      throw VerbsError(
        .invalidArgument, operation: operation, errno: EINVAL,
        message: "bytes \(range) are outside the buffer's \(count) bytes", checkedBeforeCall: true)
    }
  }

  static func copy(
    _ source: some Collection<UInt8>, into base: UnsafeMutableRawPointer, count: Int, at offset: Int
  ) throws(VerbsError) {
    // `offset <= count` first, so `count - offset` cannot overflow.
    guard offset >= 0, offset <= count, source.count <= count - offset else {
      throw VerbsError(
        .invalidArgument, operation: "copy", errno: EINVAL,
        message: "\(source.count) bytes at offset \(offset) do not fit in the buffer's "
          + "\(count) bytes", checkedBeforeCall: true)
    }
    UnsafeMutableRawBufferPointer(start: base + offset, count: source.count).copyBytes(from: source)
  }

  static func load(_ range: Range<Int>, from base: UnsafeMutableRawPointer, count: Int)
    throws(VerbsError) -> [UInt8]
  {
    try check(range, count: count, operation: "load")
    return Array(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
  }
}
