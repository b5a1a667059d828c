import Foundation
import Phyr
import TestSupport
import Testing
import UmemSystem
import Verbs

@testable import Umem

#if canImport(Glibc)
  import Glibc
#endif

/// Issue 10, cause 11: memory the application locked itself stays locked
/// after a umem over it is unpinned. In the serialized suite: it reads VmLck.
extension UmemHostTests {
  func lockedBytes() -> UInt64 { ProcessStatus.current().lockedBytes }

  @Test func cause11UnpinLeavesTheApplicationsOwnLocks() throws {
    let buffer = try UmemBuffer(byteCount: 128 << 10)
    let base = lockedBytes()
    // The application locks the middle 64 KiB itself.
    let middle = buffer.baseAddress + (32 << 10)
    try #require(mlock(middle, 64 << 10) == 0, "mlock: \(errno)")
    defer { munlock(middle, 64 << 10) }
    #expect(lockedBytes() == base + (64 << 10))
    let umem = try Umem(pinning: buffer)
    #expect(lockedBytes() == base + (128 << 10))
    let middleAddress = UInt64(UInt(bitPattern: middle))
    #expect(
      PinLedger.shared.applicationLockedRanges().map { [$0.0, $0.1] } == [
        [middleAddress, middleAddress + (64 << 10)]
      ])
    try umem.unpin()
    // Was 0 before: unpin() unlocked the application's pages too.
    #expect(lockedBytes() == base + (64 << 10))
    let mappings = try SmapsMapping.read(overlapping: middleAddress, middleAddress + (64 << 10))
    let allLocked = !mappings.isEmpty && mappings.allSatisfy { $0.locked }
    #expect(allLocked, "\(mappings)")
    #expect(PinLedger.shared.applicationLockedRanges().isEmpty)
    #expect(PinLedger.shared.holds().isEmpty)
  }

  @Test func cause11OverlappingUmemsOverAnApplicationLock() throws {
    let buffer = try UmemBuffer(byteCount: 64 << 10)
    let base = lockedBytes()
    try #require(mlock(buffer.baseAddress, 64 << 10) == 0, "mlock: \(errno)")
    defer { munlock(buffer.baseAddress, 64 << 10) }
    do {
      let whole = try Umem(pinning: buffer)
      let window = try Umem(pinning: buffer, offset: 8192, length: 8192)
      try whole.unpin()
      try window.unpin()
    }
    #expect(lockedBytes() == base + (64 << 10))
    // Once the application unlocks, a new umem locks and unlocks as usual.
    munlock(buffer.baseAddress, 64 << 10)
    let umem = try Umem(pinning: buffer)
    #expect(lockedBytes() == base + (64 << 10))
    try umem.unpin()
    #expect(lockedBytes() == base)
  }

  @Test func ledgerRangeArithmetic() {
    let ranges: [(UInt64, UInt64)] = [(0x1000, 0x5000), (0x8000, 0x9000)]
    let minus: [(UInt64, UInt64)] = [(0x0, 0x2000), (0x3000, 0x4000), (0x8800, 0xa000)]
    #expect(
      PinLedger.subtracting(minus, from: ranges).map { [$0.0, $0.1] } == [
        [0x2000, 0x3000], [0x4000, 0x5000], [0x8000, 0x8800],
      ])
    #expect(
      PinLedger.subtracting([], from: ranges).map { [$0.0, $0.1] } == [
        [0x1000, 0x5000], [0x8000, 0x9000],
      ])
    #expect(
      PinLedger.union([(0x1000, 0x2000)], [(0x2000, 0x3000), (0x5000, 0x6000)]).map {
        [$0.0, $0.1]
      } == [[0x1000, 0x3000], [0x5000, 0x6000]])
  }
}
