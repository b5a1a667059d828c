/// Non-overlapping address ranges sorted by start, each with a value: the
/// cache's index of cached registrations.
///
/// Storage: the starts and ends live in their own contiguous arrays, and a
/// summary holds every 16th start. A hit searches the summary (a sixteenth
/// of the keys: 5 KB at 10,000 ranges, which stays in the L1 cache between
/// hits) and then one block of 16 starts (two cache lines), instead of 14
/// steps over 80 KB of keys; it never touches the values. Insertions and
/// removals shift the arrays (a `memmove` of at most 16 bytes per range),
/// which is microseconds at 100,000 ranges: misses pay it, beside a
/// registration that costs tens of microseconds. Keeping the ranges
/// disjoint is what makes a hit one search: the only range that can cover
/// `[start, end)` is the last one starting at or below `start`.
struct RegionIndex<Value> {
  private(set) var starts: [UInt64] = []
  private(set) var ends: [UInt64] = []
  private(set) var values: [Value] = []
  /// `starts[16 * k]` for each block k of 16 ranges.
  private var summary: [UInt64] = []
  private static var fanout: Int { 16 }

  init() {}

  /// Room for `capacity` ranges before the arrays first grow (at most
  /// 65,536 up front, as ``FirstPageTable``: an unbounded cache's limit is
  /// Int.max): a cache filling up to its entry limit then never copies
  /// them, and misses do not pay for fresh pages as they double.
  init(reservingCapacity capacity: Int) {
    let room = Swift.min(Swift.max(capacity, 0), 1 << 16)
    starts.reserveCapacity(room)
    ends.reserveCapacity(room)
    values.reserveCapacity(room)
    summary.reserveCapacity(room / Self.fanout + 1)
  }

  var count: Int { starts.count }
  var isEmpty: Bool { starts.isEmpty }

  /// The position of the last range starting at or below `address`.
  ///
  /// - Complexity: O(log n).
  func lastStarting(atOrBelow address: UInt64) -> Int? {
    // Buffers are usually mapped in address order, up or down: a new one
    // lies past either end, found without a search.
    guard let last = starts.last, address < last else { return starts.isEmpty ? nil : count - 1 }
    if address < starts[0] { return nil }
    let block = summary.withUnsafeBufferPointer { keys -> Int? in
      // Branch-free halving (the compare becomes a conditional move): a
      // hit at random addresses pays no mispredicted branches.
      var remaining = keys.count
      guard remaining > 0 else { return nil }
      var base = 0
      while remaining > 1 {
        let half = remaining >> 1
        base = keys[base + half] <= address ? base + half : base
        remaining -= half
      }
      return keys[base] <= address ? base : nil
    }
    guard let block else { return nil }
    return starts.withUnsafeBufferPointer { keys in
      // The block's first start is <= address; count the others that are
      // (sorted, so they come first): a compare and an add each, no branch.
      let first = block &* Self.fanout
      let last = Swift.min(first &+ Self.fanout, keys.count)
      var position = first
      for i in (first &+ 1)..<last { position &+= keys[i] <= address ? 1 : 0 }
      return position
    }
  }

  /// Rebuilds the summary from the block holding `position` on, after the
  /// arrays shifted there.
  private mutating func updateSummary(from position: Int) {
    let firstBlock = Swift.min(position / Self.fanout, summary.count)
    summary.removeSubrange(firstBlock...)
    for i in stride(from: firstBlock * Self.fanout, to: starts.count, by: Self.fanout) {
      summary.append(starts[i])
    }
  }

  /// The position of the range that contains all of `[start, end)`.
  ///
  /// - Complexity: O(log n).
  func covering(start: UInt64, end: UInt64) -> Int? {
    guard let position = lastStarting(atOrBelow: start), ends[position] >= end else { return nil }
    return position
  }

  /// The positions of the ranges that share at least one byte with
  /// `[start, end)`; ranges that only touch it (adjacent) are not included.
  ///
  /// - Complexity: O(log n).
  func overlapping(start: UInt64, end: UInt64) -> Range<Int> {
    var first = lastStarting(atOrBelow: start) ?? 0
    if first < count && ends[first] <= start { first += 1 }
    // `end` is exclusive: a range starting at `end` only touches.
    if first == count || end <= starts[first] { return first..<first }
    var low = first
    var high = starts.count
    while low < high {
      let middle = (low + high) >> 1
      if starts[middle] < end { low = middle + 1 } else { high = middle }
    }
    return first..<Swift.max(low, first)
  }

  /// The range at `position`.
  func range(at position: Int) -> (start: UInt64, end: UInt64) {
    (starts[position], ends[position])
  }

  /// Inserts `[start, end)`, which must not overlap any range in the index
  /// (callers remove overlaps first; a violation is a broken invariant).
  ///
  /// - Complexity: O(n) for the shift.
  mutating func insert(start: UInt64, end: UInt64, value: Value) {
    precondition(start < end && overlapping(start: start, end: end).isEmpty, "overlap in the index")
    let position = (lastStarting(atOrBelow: start) ?? -1) + 1
    insert(start: start, end: end, value: value, checkedAt: position)
  }

  /// The same, at `position` when that is where the range belongs (as a
  /// caller that has just removed the ranges overlapping it knows: the
  /// first removed position): checked in O(1) against its two neighbours,
  /// which is the whole disjointness check for sorted ranges; anywhere
  /// else, found by searching as above.
  mutating func insert(start: UInt64, end: UInt64, value: Value, at position: Int) {
    let fits =
      start < end && position >= 0 && position <= count
      && (position == 0 || ends[position - 1] <= start)
      && (position == count || end <= starts[position])
    guard fits else { return insert(start: start, end: end, value: value) }
    insert(start: start, end: end, value: value, checkedAt: position)
  }

  private mutating func insert(start: UInt64, end: UInt64, value: Value, checkedAt position: Int) {
    if position == starts.count {
      // After the last range (buffers mapped upwards): appends, and a
      // summary entry only when a block begins.
      starts.append(start)
      ends.append(end)
      values.append(value)
      if position % Self.fanout == 0 { summary.append(start) }
      return
    }
    starts.insert(start, at: position)
    ends.insert(end, at: position)
    values.insert(value, at: position)
    updateSummary(from: position)
  }

  /// Removes the ranges at `positions` and returns their values.
  ///
  /// - Complexity: O(n) for the shift.
  @discardableResult
  mutating func remove(_ positions: Range<Int>) -> [Value] {
    guard !positions.isEmpty else { return [] }
    // A copy, not a slice: a slice would share the buffer and make the
    // removals below copy the whole array.
    let removed = Array(values[positions])
    starts.removeSubrange(positions)
    ends.removeSubrange(positions)
    values.removeSubrange(positions)
    updateSummary(from: positions.lowerBound)
    return removed
  }

  /// Removes every range and returns the values.
  mutating func removeAll() -> [Value] {
    defer {
      starts.removeAll()
      ends.removeAll()
      values.removeAll()
      summary.removeAll()
    }
    return values
  }

  /// Checks that the ranges are non-empty, sorted and disjoint; for tests.
  func checkInvariants() {
    precondition(starts.count == ends.count && ends.count == values.count)
    precondition(
      summary == Array(stride(from: 0, to: starts.count, by: Self.fanout).map { starts[$0] }))
    for position in starts.indices {
      precondition(starts[position] < ends[position], "empty range at \(position)")
      if position > 0 {
        precondition(ends[position - 1] <= starts[position], "overlap at \(position)")
      }
    }
  }
}
