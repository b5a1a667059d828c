/// The cache's entries: disjoint page-aligned ranges in address order
/// (``RegionIndex``), and beside them a ``FirstPageTable`` from each
/// entry's first page to the entry. A lookup that starts in an entry's
/// first page is answered by the table in one probe; any other by the
/// ordered search, as is one the table left out (it could not grow). Every
/// change goes through here, so the table never holds an entry the index
/// does not.
struct EntryIndex {
  private(set) var ordered: RegionIndex<CacheEntry>
  private let firstPages: FirstPageTable<CacheEntry>
  /// The page size entries are aligned to.
  private let pageMask: UInt64

  /// `pageSize` is a power of two; `expectedCount` sizes the table (the
  /// cache's entry limit).
  init(pageSize: Int, expectedCount: Int = 0) {
    pageMask = UInt64(pageSize) - 1
    ordered = RegionIndex(reservingCapacity: expectedCount)
    firstPages = FirstPageTable(expectedCount: expectedCount)
  }

  /// Changes so far (insertions and removals): a lookup that found
  /// nothing can tell, under the write lock, whether the index is still
  /// the one it searched.
  private(set) var generation = 0

  var count: Int { ordered.count }
  var values: [CacheEntry] { ordered.values }

  /// The entry that contains all of `[start, end)`, unretained (the index
  /// keeps it alive while it is cached).
  ///
  /// The entries are page-aligned and disjoint, so the only one that can
  /// contain `start` is one starting on `start`'s page, if there is one,
  /// and otherwise the last one starting below it.
  ///
  /// - Complexity: O(1) for a lookup in an entry's first page (expected,
  ///   the table being at most half full); O(log n) otherwise.
  @inline(__always)
  func covering(start: UInt64, end: UInt64) -> Unmanaged<CacheEntry>? {
    if let entry = firstPages.value(forPage: start & ~pageMask) {
      return entry._withUnsafeGuaranteedRef { $0.end >= end } ? entry : nil
    }
    guard let position = ordered.covering(start: start, end: end) else { return nil }
    return ordered.values.withUnsafeBufferPointer { Unmanaged.passUnretained($0[position]) }
  }

  /// Positions of the entries sharing a byte with `[start, end)`.
  func overlapping(start: UInt64, end: UInt64) -> Range<Int> {
    ordered.overlapping(start: start, end: end)
  }

  /// The position of the last entry starting at or below `address`.
  func lastStarting(atOrBelow address: UInt64) -> Int? {
    ordered.lastStarting(atOrBelow: address)
  }

  /// Adds `entry`, which overlaps no entry in the index, at `position`
  /// where it belongs there (a hint, checked; see ``RegionIndex``).
  mutating func insert(_ entry: CacheEntry, at position: Int) {
    ordered.insert(start: entry.start, end: entry.end, value: entry, at: position)
    firstPages.set(entry, forPage: entry.start)
    generation &+= 1
  }

  /// Removes the entries at `positions` and returns them.
  @discardableResult
  mutating func remove(_ positions: Range<Int>) -> [CacheEntry] {
    let removed = ordered.remove(positions)
    for entry in removed { firstPages.remove(page: entry.start, ifItIs: entry) }
    if !removed.isEmpty { generation &+= 1 }
    return removed
  }

  /// Removes every entry and returns them.
  mutating func removeAll() -> [CacheEntry] {
    firstPages.removeAll()
    generation &+= 1
    return ordered.removeAll()
  }

  /// Checks the ordered index's invariants and that the table holds
  /// exactly each entry's first page; for tests.
  func checkInvariants() {
    ordered.checkInvariants()
    let table = firstPages.contents.sorted { $0.page < $1.page }
    // Page 0 is never in the table (0 marks its empty slots).
    let entries = ordered.values.filter { $0.start != 0 }
    precondition(table.count == entries.count, "the first-page table lost or kept an entry")
    for (row, entry) in zip(table, entries) {
      precondition(row.page == entry.start && row.value === entry, "first-page table mismatch")
    }
  }
}
