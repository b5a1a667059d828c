/// Non-overlapping address ranges sorted by start, each with a value: the
/// cache's index of cached registrations.
///
/// Storage: the starts and ends live in their own contiguous arrays, so the
/// binary search of a hit touches one cache line per step of 8-byte keys
/// (about 14 steps at 10,000 ranges) and never the values. Insertions and
/// removals shift the arrays (a `memmove` of at most 16 bytes per range),
/// which is microseconds at 100,000 ranges: misses pay it, beside a
/// registration that costs tens of microseconds. Keeping the ranges
/// disjoint is what makes a hit one search: the only range that can cover
/// `[start, end)` is the last one starting at or below `start`.
struct RegionIndex<Value> {
  private(set) var starts: [UInt64] = []
  private(set) var ends: [UInt64] = []
  private(set) var values: [Value] = []

  init() {}

  var count: Int { starts.count }
  var isEmpty: Bool { starts.isEmpty }

  /// The position of the last range starting at or below `address`.
  ///
  /// - Complexity: O(log n).
  func lastStarting(atOrBelow address: UInt64) -> Int? {
    starts.withUnsafeBufferPointer { keys in
      // Branch-free halving (the compare becomes a conditional move): a
      // hit at random addresses then pays cache misses, not mispredicted
      // branches, about 14 times at 10,000 ranges.
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
    starts.insert(start, at: position)
    ends.insert(end, at: position)
    values.insert(value, at: position)
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
    return removed
  }

  /// Removes every range and returns the values.
  mutating func removeAll() -> [Value] {
    defer {
      starts.removeAll()
      ends.removeAll()
      values.removeAll()
    }
    return values
  }

  /// Checks that the ranges are non-empty, sorted and disjoint; for tests.
  func checkInvariants() {
    precondition(starts.count == ends.count && ends.count == values.count)
    for position in starts.indices {
      precondition(starts[position] < ends[position], "empty range at \(position)")
      if position > 0 {
        precondition(ends[position - 1] <= starts[position], "overlap at \(position)")
      }
    }
  }
}
