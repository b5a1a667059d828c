// What the two sides tell each other, and the bytes they echo.

import Verbs

/// Where a side's window is: the region the peer RDMA WRITEs into, sent as
/// connect (client) or accept (server) private data, 16 bytes little-endian:
/// address, rkey, size.
struct WindowAdvert: Sendable, Equatable {
  var address: UInt64
  var rkey: UInt32
  var size: UInt32

  init(address: UInt64, rkey: UInt32, size: UInt32) {
    self.address = address
    self.rkey = rkey
    self.size = size
  }

  init(_ region: SharedMemoryRegion) {
    self.init(address: region.iova, rkey: region.rkey, size: UInt32(clamping: region.length))
  }

  /// Decodes private data; nil when it is too short (librdmacm may pad it).
  init?(_ bytes: [UInt8]) {
    guard bytes.count >= 16 else { return nil }
    func field(_ offset: Int, _ count: Int) -> UInt64 {
      (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }
    self.init(
      address: field(0, 8), rkey: UInt32(truncatingIfNeeded: field(8, 4)),
      size: UInt32(truncatingIfNeeded: field(12, 4)))
  }

  var bytes: [UInt8] {
    func little(_ value: UInt64, _ count: Int) -> [UInt8] {
      (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }
    return little(address, 8) + little(UInt64(rkey), 4) + little(UInt64(size), 4)
  }

  var remote: RemoteBuffer { RemoteBuffer(address: address, length: UInt64(size), rkey: rkey) }
}

/// The bytes client `client` sends as message `message` (`kind` 0 for the
/// SEND, 1 for the WRITE), different for every client, message and kind.
func pattern(client: Int, message: Int, kind: Int, count: Int) -> [UInt8] {
  var state = UInt32(truncatingIfNeeded: client &* 7919 &+ message &* 104_729 &+ kind &* 31 &+ 1)
  return (0..<count).map { _ in
    state = state &* 1_664_525 &+ 1_013_904_223
    return UInt8(truncatingIfNeeded: state >> 24)
  }
}

/// The largest message either side accepts.
let largestMessage = 16 << 20
