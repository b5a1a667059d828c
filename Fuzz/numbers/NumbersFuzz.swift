// Fuzz target: the number and size parsers every tool uses (ToolSupport).
// Any text must parse or be refused, never trap, and a parsed value must
// agree between the two parsers and survive printing as hex.

import ToolSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNumbers(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  var input = FuzzInput(data, count)
  let text = input.rest()
  let number = parseNumber(text)
  let size = parseSize(text)
  if let number {
    // A plain number has no suffix, so it is the same size.
    fuzzCheck(
      size == number, "parseSize('\(text)') = \(String(describing: size)), number \(number)")
    fuzzCheck(parseNumber(hex(number)) == number, "hex round trip of \(number)")
  }
  if let size { _ = humanBytes(size) }
  // Every suffix on a parsed number either scales it exactly or is refused.
  if let number {
    for (suffix, shift) in [("K", 10), ("MiB", 20), ("g", 30), ("TiB", 40)] as [(String, UInt64)] {
      let scaled = number.multipliedReportingOverflow(by: 1 << shift)
      let expected = scaled.overflow ? nil : scaled.partialValue
      fuzzCheck(parseSize(text + suffix) == expected, "'\(text + suffix)'")
    }
  }
  return 0
}
