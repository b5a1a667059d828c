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
/// The application's own locks count too: pages it had locked itself
/// before a umem first held them are recorded as ``applicationLocked`` and
/// are never unlocked by the ledger, so `unpin()` leaves them as they were.
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

  /// What the ledger knows, under one lock.
  struct State {
    var segments: [Segment] = []
    /// Held ranges that were already locked by the application when first
    /// held: they are not ours to unlock. Disjoint, in address order.
    var applicationLocked: [(UInt64, UInt64)] = []
    /// How much our own `mlock` calls raised `VmLck` (hugetlbfs pages, which
    /// `mlock` neither flags nor counts, add nothing). `VmLck` above this
    /// means the application locked memory itself.
    var countedBytes: UInt64 = 0
  }

  /// What a lock step did: its errno (0 on success), the parts of the fresh
  /// ranges the application had locked already, and how much `VmLck` rose.
  struct LockOutcome {
    var code: Int32
    var applicationLocked: [(UInt64, UInt64)] = []
    var countedBytes: UInt64 = 0
  }

  private let state = Mutex<State>(State())

  /// Adds one hold on `[start, end)`. `lock` runs under the ledger's lock
  /// with the sub-ranges that had no holder (those must be locked now) and
  /// the ledger's ``State/countedBytes``; if it fails, nothing is recorded
  /// and its errno returns.
  func acquire(
    _ start: UInt64, _ end: UInt64,
    lock: (_ fresh: [(UInt64, UInt64)], _ countedBytes: UInt64) -> LockOutcome
  ) -> Int32 {
    state.withLock { state in
      let fresh = Self.gaps(in: state.segments, start, end)
      let outcome = lock(fresh, state.countedBytes)
      if outcome.code != 0 { return outcome.code }
      state.segments = Self.adding(state.segments, start, end, delta: 1)
      state.applicationLocked = Self.union(state.applicationLocked, outcome.applicationLocked)
      state.countedBytes &+= outcome.countedBytes
      return 0
    }
  }

  /// Drops one hold on `[start, end)` and calls `unlock`, under the ledger's
  /// lock, with the sub-ranges nobody holds any more, less those the
  /// application had locked itself (which it keeps). `unlock` returns its
  /// errno and how much `VmLck` fell. Returns the errno.
  func release(
    _ start: UInt64, _ end: UInt64,
    unlock: ([(UInt64, UInt64)]) -> (code: Int32, uncountedBytes: UInt64)
  ) -> Int32 {
    state.withLock { state in
      state.segments = Self.adding(state.segments, start, end, delta: -1)
      let freed = Self.gaps(in: state.segments, start, end)
      let ours = Self.subtracting(state.applicationLocked, from: freed)
      // Pages nobody holds any more are no longer the ledger's business.
      state.applicationLocked = Self.subtracting(freed, from: state.applicationLocked)
      let result = unlock(ours)
      state.countedBytes =
        state.countedBytes > result.uncountedBytes ? state.countedBytes - result.uncountedBytes : 0
      return result.code
    }
  }

  /// The parts of `ranges` that no range of `minus` covers. Both disjoint
  /// and in address order.
  ///
  /// - Complexity: O(*n* + *m*).
  static func subtracting(_ minus: [(UInt64, UInt64)], from ranges: [(UInt64, UInt64)])
    -> [(UInt64, UInt64)]
  {
    var out: [(UInt64, UInt64)] = []
    var j = 0
    for (start, end) in ranges {
      var cursor = start
      while j < minus.count && minus[j].1 <= cursor { j += 1 }
      var k = j
      while k < minus.count && minus[k].0 < end {
        if minus[k].0 > cursor { out.append((cursor, minus[k].0)) }
        cursor = Swift.max(cursor, minus[k].1)
        k += 1
      }
      if cursor < end { out.append((cursor, end)) }
    }
    return out
  }

  /// Two sets of disjoint ranges merged into one, in address order.
  static func union(_ a: [(UInt64, UInt64)], _ b: [(UInt64, UInt64)]) -> [(UInt64, UInt64)] {
    guard !b.isEmpty else { return a }
    var out: [(UInt64, UInt64)] = []
    for range in (a + b).sorted(by: { $0.0 < $1.0 }) {
      if let last = out.last, range.0 <= last.1 {
        out[out.count - 1].1 = Swift.max(last.1, range.1)
      } else {
        out.append(range)
      }
    }
    return out
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

  /// Pages held, for tests: the count of each covered part.
  func holds() -> [Segment] { state.withLock { $0.segments } }

  /// Held ranges the application had locked itself, for tests.
  func applicationLockedRanges() -> [(UInt64, UInt64)] { state.withLock { $0.applicationLocked } }
}
