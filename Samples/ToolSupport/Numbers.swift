// The number and size syntax every tool of the project accepts, parsed in one
// place so `umem --size 1G`, `rdma-perf --sizes 1G` and `rping -S 4K` agree.
//
//   number  decimal (4096) or hex (0x1000), `_` between digits allowed
//           (0x7f00_0000_0000); no sign, no spaces, below 2^64
//   size    a number with an optional binary suffix, any case:
//           K or KiB (2^10), M or MiB (2^20), G or GiB (2^30), T or TiB (2^40)

/// Parses a number: decimal, or hex after `0x`, with `_` allowed between
/// digits. Returns `nil` for anything else, including values of 2^64 or more.
///
/// - Complexity: O(*n*) for *n* characters.
public func parseNumber(_ text: some StringProtocol) -> UInt64? {
  var bytes = Substring(text).utf8[...]
  var radix: UInt64 = 10
  if bytes.count > 2, bytes.first == UInt8(ascii: "0"),
    bytes.dropFirst().first == UInt8(ascii: "x") || bytes.dropFirst().first == UInt8(ascii: "X")
  {
    radix = 16
    bytes = bytes.dropFirst(2)
  }
  var value: UInt64 = 0
  var digits = 0
  for byte in bytes {
    if byte == UInt8(ascii: "_") { continue }
    guard let digit = digitValue(byte), digit < radix else { return nil }
    let (shifted, o1) = value.multipliedReportingOverflow(by: radix)
    let (sum, o2) = shifted.addingReportingOverflow(digit)
    if o1 || o2 { return nil }
    value = sum
    digits += 1
  }
  return digits == 0 ? nil : value
}

/// Parses a byte count: a ``parseNumber(_:)`` number with an optional K, M,
/// G or T suffix (or KiB, MiB, GiB, TiB), in any case: `64K`, `2MiB`, `0x10m`.
/// Returns `nil` for anything else, or when the product is 2^64 or more.
///
/// - Complexity: O(*n*) for *n* characters.
public func parseSize(_ text: some StringProtocol) -> UInt64? {
  var body = Substring(text)
  if body.suffix(2).lowercased() == "ib" { body = body.dropLast(2) }
  var shift: UInt64 = 0
  switch body.last {
  case "k", "K": shift = 10
  case "m", "M": shift = 20
  case "g", "G": shift = 30
  case "t", "T": shift = 40
  default:
    // "ib" alone is no suffix: "4ib" is not a size.
    if body.count != text.count { return nil }
  }
  if shift != 0 { body = body.dropLast() }
  guard let value = parseNumber(body) else { return nil }
  let (product, overflow) = value.multipliedReportingOverflow(by: 1 << shift)
  return overflow ? nil : product
}

/// The value of an ASCII digit or letter of base-16 (or lower) numbers.
private func digitValue(_ byte: UInt8) -> UInt64? {
  switch byte {
  case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt64(byte - UInt8(ascii: "0"))
  case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt64(byte - UInt8(ascii: "a") + 10)
  case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt64(byte - UInt8(ascii: "A") + 10)
  default: nil
  }
}

/// `0x` and lower-case hex digits.
public func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// A byte count made readable: `64 KiB`, `2 MiB`, `4097 B`.
public func humanBytes(_ value: UInt64) -> String {
  for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)]
  where value >= 1 << shift && value % (1 << shift) == 0 {
    return "\(value >> shift) \(unit)"
  }
  return "\(value) B"
}
