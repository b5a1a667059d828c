internal import Umem

/// The optional stale-hit check: the physical page frames of a registration,
/// read from `/proc/self/pagemap` when it is registered and again on each
/// hit. Different frames mean the virtual range now maps other pages than
/// the HCA was given, which no monitor reported; the hit is then counted and
/// re-registered. Frames read as zero without `CAP_SYS_ADMIN`, so the check
/// is only armed when a read shows a non-zero frame.
final class FrameCheck: @unchecked Sendable {
  // @unchecked: the reader only holds a descriptor; `pread` is thread-safe.
  private let reader: PagemapReader

  /// Nil when the page map cannot be opened.
  init?() {
    do { reader = try PagemapReader() } catch { return nil }
  }

  /// The frame of each page in `[start, start + length)`, page-aligned;
  /// nil when unreadable or when every frame reads as zero (no privilege).
  func frames(start: UInt64, length: Int, pageSize: Int) -> [UInt64]? {
    let shift = UInt64(pageSize.trailingZeroBitCount)
    guard let entries = try? reader.entries(firstPage: start >> shift, count: length / pageSize)
    else { return nil }
    let frames = entries.map { $0 & PagemapEntry.frameMask }
    return frames.contains { $0 != 0 } ? frames : nil
  }
}
