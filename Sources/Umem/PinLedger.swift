import Synchronization

/// Counts how many ``Umem`` values lock each page of the process.
///
/// `mlock` is not reference-counted: one `munlock` unlocks a page however
/// many times it was locked. Two umems over overlapping memory (the same
/// buffer registered twice, or a window inside a larger pin) would unlock each
/// other's pages. The ledger keeps disjoint page ranges with a count, so a
/// umem locks only pages nobody holds yet and unlocks only pages whose count
/// drops to zero, as the kernel's `pin_user_pages` reference counts do.
///
/// - Complexity: O(*n*) per pin or unpin for *n* disjoint ranges held; a
///   process holds few pins.
final class PinLedger: Sendable {
  static let shared = PinLedger()

  /// A page range `[start, end)` (page-aligned addresses) and how many umems hold it.
  struct Segment {
    var start: UInt64
    var end: UInt64
    var count: Int
  }

  private let segments = Mutex<[Segment]>([])

  /// Adds one hold on `[start, end)` and returns the sub-ranges that had no
  /// holder: those must be locked now. `lock` runs under the ledger's lock
  /// for those ranges; if it fails, nothing is recorded and its error returns.
  func acquire(
    _ start: UInt64, _ end: UInt64, lock: ([(UInt64, UInt64)]) -> Int32
  ) -> Int32 {
    segments.withLock { segments in
      let fresh = Self.gaps(in: segments, start, end)
      let code = lock(fresh)
      if code != 0 { return code }
      segments = Self.adding(segments, start, end, delta: 1)
      return 0
    }
  }

  /// Drops one hold on `[start, end)` and calls `unlock` with the sub-ranges
  /// nobody holds any more, under the ledger's lock. Returns its result.
  func release(_ start: UInt64, _ end: UInt64, unlock: ([(UInt64, UInt64)]) -> Int32) -> Int32 {
    segments.withLock { segments in
      segments = Self.adding(segments, start, end, delta: -1)
      var freed: [(UInt64, UInt64)] = []
      var cursor = start
      for s in segments where s.end > start && s.start < end {
        if s.start > cursor { freed.append((cursor, s.start)) }
        cursor = Swift.max(cursor, s.end)
      }
      if cursor < end { freed.append((cursor, end)) }
      return unlock(freed)
    }
  }

  /// The parts of `[start, end)` no segment covers.
  static func gaps(in segments: [Segment], _ start: UInt64, _ end: UInt64) -> [(UInt64, UInt64)] {
    var out: [(UInt64, UInt64)] = []
    var cursor = start
    for s in segments where s.end > start && s.start < end {
      if s.start > cursor { out.append((cursor, s.start)) }
      cursor = Swift.max(cursor, s.end)
    }
    if cursor < end { out.append((cursor, end)) }
    return out
  }

  /// Adds `delta` to the count of every page in `[start, end)`, splitting
  /// segments at the edges and dropping those that reach zero.
  static func adding(_ segments: [Segment], _ start: UInt64, _ end: UInt64, delta: Int)
    -> [Segment]
  {
    var out: [Segment] = []
    var cursor = start
    for s in segments {
      if s.end <= start || s.start >= end {
        if s.start >= end && cursor < end && delta > 0 {
          out.append(Segment(start: cursor, end: end, count: delta))
          cursor = end
        }
        out.append(s)
        continue
      }
      if s.start < start { out.append(Segment(start: s.start, end: start, count: s.count)) }
      if delta > 0 && cursor < s.start {
        out.append(Segment(start: cursor, end: s.start, count: delta))
      }
      let lo = Swift.max(s.start, start)
      let hi = Swift.min(s.end, end)
      out.append(Segment(start: lo, end: hi, count: s.count + delta))
      if s.end > end { out.append(Segment(start: end, end: s.end, count: s.count)) }
      cursor = hi
    }
    if delta > 0 && cursor < end { out.append(Segment(start: cursor, end: end, count: delta)) }
    var merged: [Segment] = []
    for s in out where s.count > 0 {
      if let last = merged.last, last.end == s.start, last.count == s.count {
        merged[merged.count - 1].end = s.end
      } else {
        merged.append(s)
      }
    }
    return merged
  }

  /// Pages held in `[start, end)`, for tests: the count of each covered part.
  func holds() -> [Segment] { segments.withLock { $0 } }
}
