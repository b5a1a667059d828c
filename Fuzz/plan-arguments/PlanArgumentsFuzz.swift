// Fuzz target: `umem plan`'s argument layer (PlanArguments and PhyrsFile,
// compiled in from Samples/umem) and the planning its command then does.
// Input: a control byte, then fields separated by NUL bytes: --address,
// --length, --iova, --page-sizes, then either --phyr values or, when the
// control byte's bit 0 is set, the text of a --phyrs-file (lines or JSON).
// Bits 1-4 leave out --address, --length, --iova, --page-sizes.

import Phyr

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPlanArguments(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  var input = FuzzInput(data, count)
  let control = input.byte()
  let fields = input.rest().split(separator: "\0", omittingEmptySubsequences: false).map(
    String.init)
  func field(_ index: Int, bit: UInt8) -> String? {
    control & bit != 0 || index >= fields.count ? nil : fields[index]
  }
  var arguments = PlanArguments(
    address: field(0, bit: 2), length: field(1, bit: 4), iova: field(2, bit: 8),
    pageSizes: field(3, bit: 16))
  let rest = fields.count > 4 ? Array(fields[4...]) : []
  if control & 1 != 0 {
    arguments.phyrsFile = ("fuzz", rest.joined(separator: "\n"))
  } else {
    arguments.phyrs = rest
  }
  let valid: PlanArguments.Input
  do {
    valid = try arguments.validated()
  } catch {
    _ = error.description
    return 0
  }
  // What Plan.run() does with valid arguments.
  fuzzCheck(valid.list.totalLength > 0 && valid.pageSizes.rawValue != 0, "accepted empty input")
  let plan = valid.list.planIOVA(valid.policy, pageSizes: valid.pageSizes)
  _ = plan.description
  if let size = plan.pageSize {
    guard let walk = try? valid.list.blocks(pageSize: size, iova: plan.iova) else {
      fuzzCheck(false, "no blocks for the plan's own size")
      return 0
    }
    _ = walk.last
    var iterator = walk.makeIterator()
    _ = iterator.next()
  }
  return 0
}
