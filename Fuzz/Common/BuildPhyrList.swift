import Phyr

/// A phyr list from the input: each record is a control byte and two
/// values. The control byte makes the range continue the previous one
/// (coalescing), start on a page, keep to small lengths, or take the raw
/// words, so both ordinary layouts and the top of the address space come up.
/// Invalid ranges are thrown and skipped, as a caller would.
func buildPhyrList(_ input: inout FuzzInput, limit: Int = 256) -> PhyrList {
  var list = PhyrList()
  var previousEnd: UInt64 = 0
  var n = 0
  while !input.isAtEnd && n < limit {
    n += 1
    let control = input.byte()
    var address = input.interestingWord()
    var length = input.interestingWord()
    if control & 1 != 0 { address = previousEnd }
    if control & 2 != 0 { address &= ~0xfff }
    if control & 4 != 0 { length = (length & 0xf_ffff) + 1 }
    if control & 8 != 0 { length = (length & 0xff) << 12 }
    let phyr = Phyr(address: address, length: length)
    let before = list
    do {
      try list.append(phyr)
      previousEnd = phyr.end
    } catch {
      fuzzCheck(list == before, "a failed append changed the list")
      fuzzCheck(!phyr.isValid || error == .totalLengthOverflow, "\(phyr) refused: \(error)")
    }
  }
  return list
}
