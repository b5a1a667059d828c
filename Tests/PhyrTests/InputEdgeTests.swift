import Testing

@testable import Phyr

/// Issue 10: inputs at the edges, each test named for the cause it pins.
@Suite("Input edges (issue 10)")
struct InputEdgeTests {
  @Test("cause 4: an empty page-size bitmap is named as the limit")
  func cause4EmptyBitmap() throws {
    let list = try PhyrList([Phyr(address: 0x1_0000_0000, length: 0x20_0000)])
    for policy in [IOVAPolicy.any, .zeroBased, .keep(0x7f00_0000_0000)] {
      let plan = list.planIOVA(policy, pageSizes: [])
      #expect(plan.pageSize == nil && plan.blockCount == 0)
      #expect(plan.limit == .noPageSizes)
      #expect(plan.description.contains("empty"), "\(plan)")
    }
    #expect(list.bestPageSize(iova: 0, pageSizes: []) == nil)
  }

  @Test("cause 5: with --iova auto the limit is the one of the IOVA chosen")
  func cause5ChosenIOVAsLimit() throws {
    // The layout: two 4 MiB runs at 0xc00000 and 0x1400000.
    let list = try PhyrList([
      Phyr(address: 0xc0_0000, length: 0x40_0000), Phyr(address: 0x140_0000, length: 0x40_0000),
    ])
    let plan = list.planIOVA(.any, pageSizes: .mlx5)
    #expect(plan.pageSize == 0x40_0000 && plan.blockCount == 2)
    #expect(plan.limit == .runBoundary(run: 1, alignment: 0x40_0000), "\(plan)")
    // Where the length is the limit, the planner's own page offset is not named.
    let short = try PhyrList([Phyr(address: 0x5000, length: 0x3000)])
    let shortPlan = short.planIOVA(.any, pageSizes: .mlx5)
    #expect(shortPlan.pageSize == 0x4000 && shortPlan.blockCount == 1)
    #expect(shortPlan.limit == .lengthCap(window: 0x4000), "\(shortPlan)")
    // A kept IOVA still names the offset when it is the (tied) limit.
    let kept = list.planIOVA(.keep(0), pageSizes: .mlx5)
    #expect(kept.limit == .pageOffset(alignment: 0x40_0000), "\(kept)")
  }

  @Test("cause 6: a phyr whose last byte is 2^64-1 is valid")
  func cause6TopOfAddressSpace() throws {
    let top = Phyr(address: 0xffff_ffff_ffff_f000, length: 0x1000)
    #expect(try top.validated() == top)
    #expect(top.lastAddress == UInt64.max && top.end == 0)
    #expect(try Phyr(address: UInt64.max, length: 1).validated().lastAddress == UInt64.max)
    #expect(throws: PhyrError.rangeOverflow(Phyr(address: UInt64.max, length: 2))) {
      try Phyr(address: UInt64.max, length: 2).validated()
    }
    #expect(throws: PhyrError.rangeOverflow(Phyr(address: 2, length: UInt64.max))) {
      try Phyr(address: 2, length: UInt64.max).validated()
    }
    #expect(try Phyr(address: 1, length: UInt64.max).validated().lastAddress == UInt64.max)
    var list = PhyrList()
    try list.append(top)
    // A range at 0 does not continue one that ends at the top: two runs.
    try list.append(address: 0, length: 0x1000)
    #expect(list.count == 2 && list.totalLength == 0x2000 && list._checkInvariants())
    #expect(!top.isFollowed(by: Phyr(address: 0, length: 1)))
    // The kernel rules see two runs too.
    #expect(PageSizes.mlx5.contains(PageSizes(rawValue: 0x2000)))
    #expect(list.bestPageSize(iova: 0x1000, pageSizes: .mlx5) == 0x2000)
    #expect(try PageSizes.mlx5.bestPageSize(for: Array(list), iova: 0x1000) == 0x2000)
    #expect(Array(try list.blocks(pageSize: 0x2000, iova: 0x1000)) == [0xffff_ffff_ffff_e000, 0])
    // The dense encoding round-trips it.
    let dense = DensePhyrList(list)
    #expect(dense.phyrList == list, "\(Array(dense))")
    let single = try PhyrList([top])
    #expect(DensePhyrList(single).phyrList == single)
    #expect(single.planIOVA(.keep(0x1000), pageSizes: .mlx5).pageSize == 0x1000)
  }
}
