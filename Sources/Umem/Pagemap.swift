import Phyr

#if canImport(Glibc)
  import Glibc
#endif

/// The fields of a `/proc/self/pagemap` entry (8 bytes per virtual page).
package enum PagemapEntry {
  /// Bit 63: the page is present in RAM.
  static let present: UInt64 = 1 << 63
  /// Bits 0-54: the page frame number (zero without `CAP_SYS_ADMIN`).
  package static let frameMask: UInt64 = (1 << 55) - 1
}

/// An open `/proc/self/pagemap`, read in large batches with `pread`.
package struct PagemapReader: ~Copyable {
  /// Entries per `pread`: 64 Ki entries, 512 KiB, 256 MiB of 4 KiB pages.
  static let batchEntries = 1 << 16

  let fd: Int32

  package init() throws(UmemError) {
    switch system_openReadOnly("/proc/self/pagemap") {
    case .success(let fd): self.fd = fd
    case .failure(let failure):
      let code = failure.code
      throw UmemError(
        .procReadFailed, operation: "open(/proc/self/pagemap)", errno: code,
        message: "the page map cannot be opened; is /proc mounted?")
    }
  }

  deinit { system_close(fd) }

  /// Calls `body` with consecutive batches of entries for `count` pages
  /// starting at virtual page `firstPage` (an address shifted right by 12).
  func forEachBatch(
    firstPage: UInt64, count: Int, _ body: (UnsafeBufferPointer<UInt64>) -> Void
  ) throws(UmemError) {
    let batch = Swift.min(count, Self.batchEntries)
    let buffer = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: Swift.max(batch, 1))
    defer { buffer.deallocate() }
    var done = 0
    while done < count {
      let n = Swift.min(batch, count - done)
      let offset = (firstPage + UInt64(done)) * 8
      switch system_pread(fd, UnsafeMutableRawPointer(buffer.baseAddress!), n * 8, offset) {
      case .success(let bytes) where bytes == n * 8: break
      case .success(let bytes):
        throw UmemError(
          .procReadFailed, operation: "pread(/proc/self/pagemap)", errno: EIO,
          message: "read \(bytes) of \(n * 8) bytes at offset \(offset)")
      case .failure(let failure):
        let code = failure.code
        throw UmemError(
          .procReadFailed, operation: "pread(/proc/self/pagemap)", errno: code,
          message: "reading the page map failed at offset \(offset)")
      }
      body(UnsafeBufferPointer(rebasing: buffer[0..<n]))
      done += n
    }
  }

  /// The raw entries for `count` pages from `firstPage`.
  package func entries(firstPage: UInt64, count: Int) throws(UmemError) -> [UInt64] {
    var out: [UInt64] = []
    out.reserveCapacity(count)
    try forEachBatch(firstPage: firstPage, count: count) { out.append(contentsOf: $0) }
    return out
  }
}

/// Turns pagemap entries, page by page, into a byte-exact coalesced phyr
/// list. Separate from the reader so tests can feed it made-up entries
/// (pages not present, zero frames).
struct PagemapDecoder {
  let address: UInt64
  let end: UInt64
  let lockStart: UInt64
  let lastPage: Int
  var list = PhyrList()
  var page = 0
  var presentPages = 0
  var zeroFrames = 0
  /// Frames at or above 2^52, which no 64-bit physical address has.
  var impossibleFrames = 0
  var notPresent: [UInt64] = []

  /// Decodes the pages of `[address, address + length)`. The range passed
  /// ``Umem/check(address:length:access:)`` (non-empty, its page-aligned end
  /// below 2^64), so none of this overflows.
  init(address: UInt64, length: UInt64) {
    self.address = address
    self.end = address + length
    self.lockStart = address & ~(cpuPageSize - 1)
    let alignedEnd = (end + (cpuPageSize - 1)) & ~(cpuPageSize - 1)
    self.lastPage = Int((alignedEnd - lockStart) >> cpuPageShift) - 1
  }

  /// The bytes of page `index` inside the buffer: offset in the page and length.
  @inline(__always)
  func span(ofPage index: Int) -> (offset: UInt64, length: UInt64) {
    if index != 0 && index != lastPage { return (0, cpuPageSize) }
    let pageStart = lockStart + UInt64(index) << cpuPageShift
    let lo = Swift.max(address, pageStart)
    let hi = Swift.min(end, pageStart + cpuPageSize)
    return (lo - pageStart, hi - lo)
  }

  /// The run being extended, appended to ``list`` when a page does not
  /// follow it (cheaper than appending page by page).
  var runAddress: UInt64 = 0
  var runLength: UInt64 = 0

  mutating func feed(_ entries: UnsafeBufferPointer<UInt64>) {
    var page = self.page
    var runAddress = self.runAddress
    var runLength = self.runLength
    for entry in entries {
      let frame = entry & PagemapEntry.frameMask
      if entry & PagemapEntry.present == 0 {
        notPresent.append(lockStart + UInt64(page) << cpuPageShift)
      } else if frame == 0 {
        presentPages += 1
        zeroFrames += 1
      } else if frame >= 1 << (64 - cpuPageShift) {
        presentPages += 1
        impossibleFrames += 1
      } else {
        presentPages += 1
        let (offset, length) = span(ofPage: page)
        let address = frame << cpuPageShift | offset
        if runLength != 0 && address == runAddress &+ runLength {
          runLength &+= length
        } else {
          // Cannot fail: the run lies inside the frames seen, all below
          // 2^52, so its last byte is below 2^64; the runs add up to at most
          // the umem's length.
          if runLength != 0 { try? list.append(address: runAddress, length: runLength) }
          runAddress = address
          runLength = length
        }
      }
      page &+= 1
    }
    self.page = page
    self.runAddress = runAddress
    self.runLength = runLength
  }

  mutating func finish() -> UmemLayout {
    if runLength != 0 {
      try? list.append(address: runAddress, length: runLength)
      runLength = 0
    }
    let available = zeroFrames == 0 && impossibleFrames == 0
    var reason: String? = nil
    if impossibleFrames != 0 {
      reason =
        "\(impossibleFrames) present pages read frame numbers of 2^52 or more from "
        + "/proc/self/pagemap, which no 64-bit physical address has"
    } else if !available {
      reason =
        hasCapability(Capability.sysAdmin)
        ? "\(zeroFrames) present pages read page frame 0 from /proc/self/pagemap"
        : "/proc/self/pagemap reports page frame 0 to processes without CAP_SYS_ADMIN "
          + "(Linux 4.2 and later); run as root or grant CAP_SYS_ADMIN to see physical addresses"
    }
    let complete = available && notPresent.isEmpty && list.totalLength == end - address
    return UmemLayout(
      address: address, length: end - address, pageCount: lastPage + 1,
      phyrs: complete ? list : nil, physicalAddressesAvailable: available,
      unavailableReason: reason, notPresentPages: notPresent)
  }
}
