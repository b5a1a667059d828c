import Testing

@testable import RegistrationCache

/// The first-page table against a dictionary, and the entry index's two
/// paths (table and search) against each other.
@Suite struct FirstPageTableTests {
  final class Box {
    let n: Int
    init(_ n: Int) { self.n = n }
  }

  /// Random sets and removals over few pages (long probe runs, many
  /// collisions, growth from 64 slots), compared after every step.
  @Test func matchesADictionary() {
    var rng = SystemRandomNumberGenerator()
    for round in 0..<10 {
      let table = FirstPageTable<Box>()
      var reference: [UInt64: Box] = [:]
      // Some rounds use pages 64 KiB apart (keys that differ only high up).
      let spacing: UInt64 = round.isMultiple(of: 2) ? 4096 : 65536
      for _ in 0..<3000 {
        let page = UInt64.random(in: 0..<600, using: &rng) * spacing
        if Bool.random(using: &rng), let old = reference[page] {
          // Removing with another value must leave the slot alone.
          table.remove(page: page, ifItIs: Box(-1))
          #expect(table.value(forPage: page)?.takeUnretainedValue() === old)
          table.remove(page: page, ifItIs: old)
          reference[page] = nil
        } else {
          let box = Box(Int(page))
          table.set(box, forPage: page)
          if page != 0 { reference[page] = box }
        }
        #expect(table.count == reference.count)
      }
      for page in stride(from: UInt64(0), to: 600 * spacing, by: Int(spacing)) {
        #expect(table.value(forPage: page)?.takeUnretainedValue() === reference[page])
      }
      #expect(Set(table.contents.map(\.page)) == Set(reference.keys))
      table.removeAll()
      #expect(table.count == 0 && table.contents.isEmpty)
    }
  }

  /// A lookup in an entry's first page (the table) and one further in
  /// (the ordered search) find the same entries, and the index's
  /// invariants hold through merges and invalidations.
  @Test func bothPathsOfTheEntryIndexAgree() throws {
    let (cache, _) = countingCache()
    let base: UInt64 = 0x5000_0000
    for i in 0..<64 {
      let start = base + UInt64(i * 5 * page)
      try cache.lookup(address: start + 100, length: (i % 4 + 1) * page - 200).release()
    }
    // Merges: a range across two entries replaces both.
    try cache.lookup(address: base + UInt64(page), length: 6 * page).release()
    cache.invalidate(address: base + UInt64(20 * page), length: 12 * page)
    let ranges = cache.cachedRangesForTesting()
    for range in ranges {
      let length = Int(range.end - range.start)
      let registrations = cache.statistics.registrations
      // First page, then the last page: each must hit the same entry.
      let first = try cache.lookup(address: range.start + 8, length: 16)
      let last = try cache.lookup(address: range.end - 16, length: 16)
      #expect(first.address == range.start && first.length == length)
      #expect(last.address == range.start && last.length == length)
      #expect(cache.statistics.registrations == registrations)
      first.release()
      last.release()
    }
    // Past an entry's end: a miss, from either path.
    let misses = cache.statistics.misses
    let head = ranges[0]
    try cache.lookup(address: head.start, length: Int(head.end - head.start) + 1).release()
    #expect(cache.statistics.misses == misses + 1)
    _ = cache.cachedRangesForTesting()
  }
}
