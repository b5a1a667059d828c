// Fuzz target: PhyrList building and planning. Any list, IOVA and bitmap
// must give an answer or a thrown error, never a trap; the kernel rule's two
// implementations must agree; the planner's blocks must match its counts.

@testable import Phyr

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPhyrList(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  var input = FuzzInput(data, count)
  let iova = input.interestingWord()
  let sizes = PageSizes(rawValue: input.interestingWord() | (input.byte() & 1 == 0 ? 0x1000 : 0))
  let offsetMask = input.interestingWord()
  let list = buildPhyrList(&input)
  fuzzCheck(list._checkInvariants(), "invariants of \(list)")
  _ = list.description
  _ = sizes.description

  // The kernel rule, over the coalesced list and over any phyr sequence.
  let best = list.bestPageSize(iova: iova, pageSizes: sizes)
  if list.isEmpty {
    fuzzCheck(best == nil, "an empty list has no page size")
  } else {
    let generic = try? sizes.bestPageSize(for: Array(list), iova: iova)
    fuzzCheck(
      generic == best, "bestPageSize \(String(describing: best)) vs \(String(describing: generic))")
  }
  _ = list.bestPageSize(pageOffsetMask: offsetMask, pageSizes: sizes)

  for policy in [IOVAPolicy.keep(iova), .zeroBased, .any] {
    let plan = list.planIOVA(policy, pageSizes: sizes)
    _ = plan.description
    guard let size = plan.pageSize else { continue }
    fuzzCheck(sizes.supports(size), "plan chose \(size), not in \(sizes)")
    if case .keep = policy {
      fuzzCheck(size == best, "the kept IOVA's plan differs from bestPageSize")
    }
    guard let walk = try? list.blocks(pageSize: size, iova: plan.iova) else {
      fuzzCheck(false, "no blocks for the plan's own size \(size) at \(plan.iova)")
      continue
    }
    fuzzCheck(walk.count == plan.blockCount, "block count")
    // Walk a bounded number of blocks; the last must match when all are walked.
    var walked: UInt64 = 0
    var last: UInt64? = nil
    for block in walk {
      fuzzCheck(block & (size - 1) == 0, "block \(block) not aligned to \(size)")
      last = block
      walked += 1
      if walked == 4096 { break }
    }
    if walk.count <= 4096 {
      fuzzCheck(walked == walk.count, "walked \(walked) of \(walk.count) blocks")
      fuzzCheck(
        last == walk.last,
        "last block \(String(describing: last)) vs \(String(describing: walk.last))")
    }
    _ = try? list.dmaOffset(pageSize: size)
  }
  _ = try? list.blockCount(pageSize: offsetMask, iova: iova)
  _ = try? list.dmaMapped(.linear(base: iova & ~0xfff, granule: 0x1000))
  _ = try? list.dmaMapped(.linear(base: iova, granule: offsetMask))
  _ = try? list.dmaMapped(.passThrough)
  return 0
}
