import ArgumentParser

/// Parses sizes such as `4096`, `0x1000`, `64K`, `16M`, `1G`, `2MiB`.
func parseSize(_ text: String) -> UInt64? {
  var digits = Substring(text.lowercased())
  var scale: UInt64 = 1
  for (suffix, factor) in [
    ("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40),
    ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40),
  ]
  where digits.hasSuffix(suffix) {
    digits = digits.dropLast(suffix.count)
    scale = UInt64(factor)
    break
  }
  guard let value = parseNumber(String(digits)) else { return nil }
  let (product, overflow) = value.multipliedReportingOverflow(by: scale)
  return overflow ? nil : product
}

/// Parses `0x...` hex or decimal; `_` separators are allowed (`0x7f00_0000_0000`).
func parseNumber(_ text: String) -> UInt64? {
  let digits = text.filter { $0 != "_" }.lowercased()
  if digits.hasPrefix("0x") { return UInt64(digits.dropFirst(2), radix: 16) }
  return UInt64(digits, radix: 10)
}

/// `0x...` lower-case hex.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// A byte count made readable: `64 KiB`, `2 MiB`, `4097 B`.
func humanBytes(_ value: UInt64) -> String {
  for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)]
  where value >= 1 << shift && value % (1 << shift) == 0 {
    return "\(value >> shift) \(unit)"
  }
  return "\(value) B"
}

/// Minimal JSON writing for the tool's reports.
enum JSON {
  case string(String)
  case number(Int64)
  case unsigned(UInt64)
  case double(Double)
  case bool(Bool)
  case null
  case array([JSON])
  case object([(String, JSON)])

  var text: String {
    switch self {
    case .string(let s): return JSON.quote(s)
    case .number(let n): return String(n)
    case .unsigned(let n): return String(n)
    case .double(let d): return d.isFinite ? String(d) : "null"
    case .bool(let b): return b ? "true" : "false"
    case .null: return "null"
    case .array(let items): return "[" + items.map(\.text).joined(separator: ",") + "]"
    case .object(let pairs):
      return "{" + pairs.map { JSON.quote($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
    }
  }

  static func quote(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\t": out += "\\t"
      case let c where c.value < 0x20:
        out +=
          "\\u" + String(repeating: "0", count: 4 - String(c.value, radix: 16).count)
          + String(c.value, radix: 16)
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}

/// Prints to standard error.
func printError(_ message: String) {
  var stderr = StandardError()
  print(message, to: &stderr)
}

struct StandardError: TextOutputStream {
  mutating func write(_ string: String) {
    var bytes = Array(string.utf8)
    bytes.withUnsafeMutableBytes { raw in
      var offset = 0
      while offset < raw.count {
        let n = Glibc.write(2, raw.baseAddress! + offset, raw.count - offset)
        if n <= 0 { break }
        offset += n
      }
    }
  }
}

#if canImport(Glibc)
  import Glibc
#endif
