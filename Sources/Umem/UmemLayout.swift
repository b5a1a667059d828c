import Phyr

/// Where a pinned umem lives physically: the byte-exact phyr list read from
/// `/proc/self/pagemap`, or why it is not available.
public struct UmemLayout: Sendable, Hashable {
  /// The virtual address of the first byte.
  public var address: UInt64
  /// The length in bytes.
  public var length: UInt64
  /// The number of 4 KiB pages the range touches.
  public var pageCount: Int
  /// The coalesced, byte-exact physical runs: the first starts at the
  /// physical address of the first byte and the lengths add up to
  /// ``length``. `nil` when physical addresses are unavailable or a page was
  /// not present.
  public var phyrs: PhyrList?
  /// False when the kernel hid the page frames (reads of zero); see
  /// ``unavailableReason``.
  public var physicalAddressesAvailable: Bool
  /// Why physical addresses are unavailable, when they are.
  public var unavailableReason: String?
  /// Virtual addresses of pages that were not present after faulting in.
  public var notPresentPages: [UInt64]

  /// Creates a layout; normally made by ``Umem/resolve()``.
  public init(
    address: UInt64, length: UInt64, pageCount: Int, phyrs: PhyrList?,
    physicalAddressesAvailable: Bool, unavailableReason: String?, notPresentPages: [UInt64]
  ) {
    self.address = address
    self.length = length
    self.pageCount = pageCount
    self.phyrs = phyrs
    self.physicalAddressesAvailable = physicalAddressesAvailable
    self.unavailableReason = unavailableReason
    self.notPresentPages = notPresentPages
  }

  /// The phyr list, or an error saying why there is none.
  public func requirePhyrs(for operation: String) throws(UmemError) -> PhyrList {
    if let phyrs { return phyrs }
    if !physicalAddressesAvailable {
      throw UmemError(
        .permissionDenied, operation: operation, errno: 1,
        message: "physical addresses are unavailable: \(unavailableReason ?? "unknown reason")")
    }
    throw UmemError(
      .notMapped, operation: operation, errno: 14,
      message: "\(notPresentPages.count) pages were not present after faulting in "
        + "(first at 0x\(String(notPresentPages.first ?? 0, radix: 16))); the layout is incomplete")
  }
}

/// A page whose frame changed between ``Umem/resolve()`` and ``Umem/verify(_:)``.
public struct PageMove: Sendable, Hashable, CustomStringConvertible {
  /// The virtual address of the page.
  public var virtualAddress: UInt64
  /// The frame the layout recorded.
  public var expectedFrame: UInt64
  /// The frame now, or `nil` when the page is no longer present.
  public var actualFrame: UInt64?

  /// `page 0x...: frame 0x... -> 0x...` (or `-> not present`).
  public var description: String {
    let now = actualFrame.map { "0x" + String($0, radix: 16) } ?? "not present"
    return
      "page 0x\(String(virtualAddress, radix: 16)): frame 0x\(String(expectedFrame, radix: 16)) -> \(now)"
  }
}

extension Umem {
  /// Reads the physical layout from `/proc/self/pagemap`: one `pread` per
  /// 64 Ki pages, coalesced into a byte-exact ``PhyrList`` as it goes.
  ///
  /// Without `CAP_SYS_ADMIN` the kernel reports frame 0 for every page; the
  /// layout then has no phyrs, ``UmemLayout/physicalAddressesAvailable`` is
  /// false and ``UmemLayout/unavailableReason`` says why. Pages that are not
  /// present (they should all be, after pinning) are listed, not skipped
  /// silently.
  ///
  /// - Complexity: O(pages); memory O(runs).
  public func resolve() throws(UmemError) -> UmemLayout {
    let reader = try PagemapReader()
    var decoder = PagemapDecoder(address: address, length: length)
    try reader.forEachBatch(firstPage: lockStart >> cpuPageShift, count: pageCount) {
      decoder.feed($0)
    }
    return decoder.finish()
  }

  /// Re-reads the page map and compares every page with `layout`, as UCX
  /// checks page frames before trusting a registration cache. Returns the
  /// pages that moved or vanished; empty when the layout still holds.
  ///
  /// - Throws: ``UmemError`` when `layout` belongs to another range or has
  ///   no phyrs, or the page map cannot be read.
  public func verify(_ layout: UmemLayout) throws(UmemError) -> [PageMove] {
    guard layout.address == address, layout.length == length else {
      throw UmemError(
        .invalidArgument, operation: "verify", errno: 22,
        message: "the layout describes 0x\(String(layout.address, radix: 16)) (+\(layout.length)), "
          + "not this umem's 0x\(String(address, radix: 16)) (+\(length))", checkedBeforeCall: true)
    }
    let phyrs = try layout.requirePhyrs(for: "verify")
    guard phyrs.totalLength == length else {
      throw UmemError(
        .invalidArgument, operation: "verify", errno: 22,
        message: "the layout's phyrs hold \(phyrs.totalLength) bytes, not this umem's \(length); "
          + "verify a layout that resolve() returned", checkedBeforeCall: true)
    }
    let expected = Self.expectedFrames(phyrs, address: address, length: length)
    let reader = try PagemapReader()
    var moves: [PageMove] = []
    var page = 0
    let start = lockStart
    try reader.forEachBatch(firstPage: lockStart >> cpuPageShift, count: pageCount) { entries in
      for entry in entries {
        // A list that adds up to the length has a frame for every page;
        // anything else reads as moved rather than trapping.
        let want = page < expected.count ? expected[page] : 0
        let present = entry & PagemapEntry.present != 0
        let frame = entry & PagemapEntry.frameMask
        if !present || frame != want {
          moves.append(
            PageMove(
              virtualAddress: start + UInt64(page) << cpuPageShift, expectedFrame: want,
              actualFrame: present ? frame : nil))
        }
        page += 1
      }
    }
    return moves
  }

  /// The frame of each page according to a byte-exact list.
  static func expectedFrames(_ phyrs: PhyrList, address: UInt64, length: UInt64) -> [UInt64] {
    let decoder = PagemapDecoder(address: address, length: length)
    var frames: [UInt64] = []
    frames.reserveCapacity(decoder.lastPage + 1)
    var runs = phyrs.makeIterator()
    var run = runs.next()
    var used: UInt64 = 0
    for page in 0...decoder.lastPage {
      guard let current = run else { break }
      frames.append((current.address + used) >> cpuPageShift)
      used += decoder.span(ofPage: page).length
      if used >= current.length {
        run = runs.next()
        used = 0
      }
    }
    return frames
  }
}
