// Reads typed values from a libFuzzer input, front to back; past the end
// every read gives zero, so any input is a complete test case.

struct FuzzInput {
  let bytes: UnsafeRawBufferPointer
  var offset = 0

  init(_ data: UnsafePointer<UInt8>?, _ count: Int) {
    bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : count)
  }

  var isAtEnd: Bool { offset >= bytes.count }

  mutating func byte() -> UInt8 {
    guard offset < bytes.count else { return 0 }
    defer { offset += 1 }
    return bytes[offset]
  }

  /// Eight bytes, little-endian; fewer at the end are padded with zeros.
  mutating func word() -> UInt64 {
    var value: UInt64 = 0
    for shift in stride(from: 0, to: 64, by: 8) { value |= UInt64(byte()) << UInt64(shift) }
    return value
  }

  /// The rest of the input as text (invalid UTF-8 is repaired).
  mutating func rest() -> String {
    defer { offset = bytes.count }
    guard offset < bytes.count else { return "" }
    return String(decoding: bytes[offset...], as: UTF8.self)
  }

  /// A value of the kinds that break arithmetic: zero, powers of two and
  /// their neighbours, the top of the range, or the raw word.
  mutating func interestingWord() -> UInt64 {
    let kind = byte()
    let shift = UInt64(byte() & 63)
    switch kind & 7 {
    case 0: return 0
    case 1: return 1 << shift
    case 2: return (1 << shift) &- 1
    case 3: return (1 << shift) &+ 1
    case 4: return UInt64.max &- UInt64(byte())
    case 5: return UInt64.max << shift
    default: return word()
    }
  }
}

/// Stops the run as a crash that libFuzzer records, with what broke.
func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String) {
  if !condition { fatalError("fuzz invariant failed: \(message())") }
}
