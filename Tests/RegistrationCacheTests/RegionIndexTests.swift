import Testing

@testable import RegistrationCache

/// The index against a brute-force list of ranges: random inserts (after
/// removing overlaps, as the cache does), removals and queries.
@Suite struct RegionIndexTests {
  struct Reference {
    var ranges: [(start: UInt64, end: UInt64)] = []
    func covering(_ s: UInt64, _ e: UInt64) -> (UInt64, UInt64)? {
      ranges.first { $0.start <= s && e <= $0.end }.map { ($0.start, $0.end) }
    }
    func overlapping(_ s: UInt64, _ e: UInt64) -> [UInt64] {
      ranges.filter { $0.start < e && s < $0.end }.map(\.start).sorted()
    }
  }

  @Test func matchesBruteForce() {
    var rng = SystemRandomNumberGenerator()
    for _ in 0..<20 {
      var index = RegionIndex<Int>()
      var reference = Reference()
      for step in 0..<400 {
        let s = UInt64.random(in: 0..<200, using: &rng) * 16
        let e = s + UInt64.random(in: 1..<40, using: &rng) * 16
        let overlaps = index.overlapping(start: s, end: e)
        #expect(overlaps.map { index.range(at: $0).start } == reference.overlapping(s, e))
        if let position = index.covering(start: s + 3, end: e - 3) {
          let found = index.range(at: position)
          #expect(reference.covering(s + 3, e - 3).map { $0 == found } == true)
        } else {
          #expect(reference.covering(s + 3, e - 3) == nil)
        }
        if step % 3 == 2 {
          index.remove(overlaps)
          reference.ranges.removeAll { $0.start < e && s < $0.end }
        } else {
          index.remove(overlaps)
          reference.ranges.removeAll { $0.start < e && s < $0.end }
          index.insert(start: s, end: e, value: step)
          reference.ranges.append((s, e))
        }
        index.checkInvariants()
        #expect(index.count == reference.ranges.count)
      }
    }
  }

  /// Insertion with a position hint: right hints are taken, wrong ones
  /// (anywhere, including out of bounds) fall back to the search, and the
  /// index ends up the same as without hints.
  @Test func positionHintsAreCheckedNotTrusted() {
    var rng = SystemRandomNumberGenerator()
    var hinted = RegionIndex<Int>()
    var plain = RegionIndex<Int>()
    for step in 0..<2000 {
      let s = UInt64.random(in: 0..<4000, using: &rng) * 16
      let e = s + UInt64.random(in: 1..<8, using: &rng) * 16
      let overlaps = plain.overlapping(start: s, end: e)
      guard overlaps.isEmpty else { continue }
      let right = overlaps.lowerBound
      let hint = step % 3 == 0 ? right : Int.random(in: -2...(plain.count + 2), using: &rng)
      hinted.insert(start: s, end: e, value: step, at: hint)
      plain.insert(start: s, end: e, value: step)
      hinted.checkInvariants()
    }
    #expect(hinted.starts == plain.starts && hinted.ends == plain.ends)
    #expect(hinted.values == plain.values && hinted.count > 500)
  }

  @Test func adjacentRangesDoNotOverlap() {
    var index = RegionIndex<Int>()
    index.insert(start: 0x1000, end: 0x2000, value: 1)
    index.insert(start: 0x2000, end: 0x3000, value: 2)
    #expect(index.overlapping(start: 0x2000, end: 0x3000) == 1..<2)
    #expect(index.overlapping(start: 0x1000, end: 0x2000) == 0..<1)
    #expect(index.overlapping(start: 0x1fff, end: 0x2001) == 0..<2)
    #expect(index.covering(start: 0x1800, end: 0x2800) == nil)
    #expect(index.covering(start: 0x2000, end: 0x3000) == 1)
    #expect(index.overlapping(start: 0x3000, end: 0x4000).isEmpty)
  }
}
