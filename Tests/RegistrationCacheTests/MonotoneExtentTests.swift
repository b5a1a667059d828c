import Testing

@testable import RegistrationCache

/// The search the cache widens watched and mapped stretches with, against
/// every answer a monotone test can have.
@Suite struct MonotoneExtentTests {
  /// For every limit up to 600 (a 2 MiB block has 512 pages) and every
  /// largest accepted extent: the right answer, no call with 0 or past the
  /// limit, one call when nothing is accepted, and otherwise at most one
  /// more than a bisection over the limit.
  @Test func findsTheLargestAcceptedExtentInFewCalls() {
    for limit in 0...600 {
      for truth in 0...limit {
        var calls: [Int] = []
        let found = largestAcceptedExtent(upTo: limit) { pages in
          calls.append(pages)
          return pages <= truth
        }
        #expect(found == truth, "limit \(limit), truth \(truth)")
        #expect(calls.allSatisfy { $0 >= 1 && $0 <= limit })
        let bisection = Int.bitWidth - limit.leadingZeroBitCount  // ceil(log2(limit + 1))
        #expect(calls.count <= bisection + 1, "limit \(limit), truth \(truth): \(calls)")
        if truth == 0 && limit > 0 { #expect(calls == [1]) }
      }
    }
  }

  @Test func nothingToSearchCallsNothing() {
    var calls = 0
    func accepts(_ pages: Int) -> Bool {
      calls += 1
      return true
    }
    #expect(largestAcceptedExtent(upTo: 0, accepts) == 0)
    #expect(largestAcceptedExtent(upTo: -5, accepts) == 0)
    #expect(calls == 0)
  }
}
