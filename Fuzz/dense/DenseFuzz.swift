// Fuzz target: the dense encoding's round trip. Any list built from the
// input must decode to itself, in no more than 24 bytes a run.

import Phyr

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDense(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  var input = FuzzInput(data, count)
  let list = buildPhyrList(&input)
  let dense = DensePhyrList(list)
  fuzzCheck(dense.phyrList == list, "round trip of \(list) gave \(dense.phyrList)")
  fuzzCheck(dense.totalLength == list.totalLength, "total length")
  fuzzCheck(dense.byteCount <= 24 * list.count, "\(dense.byteCount) bytes for \(list.count) runs")
  fuzzCheck(Array(dense) == Array(list), "iteration")
  return 0
}
