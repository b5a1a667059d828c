// Fuzz target: the pagemap decoder, fed made-up entries for a range that
// passed Umem's own checks. It must never trap, and a layout with phyrs must
// be byte-exact: the lengths add up and the first byte keeps its page offset.

import Phyr

@testable import Umem

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPagemap(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  var input = FuzzInput(data, count)
  let address = input.interestingWord()
  let length = input.interestingWord() % (64 * 4096) + 1
  guard let range = try? Umem.check(address: address, length: length, access: .localWrite) else {
    return 0
  }
  let pages = Int((range.end - range.start) / 4096)
  var decoder = PagemapDecoder(address: address, length: length)
  var entries: [UInt64] = []
  var fed = 0
  while fed < pages && !input.isAtEnd {
    // Mostly present pages with neighbouring frames, so runs form.
    let control = input.byte()
    var entry = input.interestingWord()
    if control & 1 != 0, let previous = entries.last { entry = previous &+ 1 }
    if control & 2 != 0 { entry |= 1 << 63 }
    entries.append(entry)
    fed += 1
    // Feed in batches of any size, as the reader does.
    if control & 4 != 0 || fed == pages || input.isAtEnd {
      entries.withUnsafeBufferPointer { decoder.feed($0) }
      entries.removeAll()
    }
  }
  let layout = decoder.finish()
  fuzzCheck(layout.pageCount == pages, "page count \(layout.pageCount), expected \(pages)")
  if let phyrs = layout.phyrs {
    fuzzCheck(phyrs.totalLength == length, "phyrs hold \(phyrs.totalLength) of \(length) bytes")
    fuzzCheck(
      (phyrs.firstAddress ?? 0) % 4096 == address % 4096, "first byte's page offset moved")
    fuzzCheck(layout.physicalAddressesAvailable && layout.notPresentPages.isEmpty, "complete")
  }
  return 0
}
