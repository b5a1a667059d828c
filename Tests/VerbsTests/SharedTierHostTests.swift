import Foundation
import Synchronization
import TestSupport
import Testing
import UmemSystem

@testable import Verbs

/// The owned tier's bookkeeping and the bounds checks of both tiers, on the
/// host (no device): every value their signatures accept gives a result or
/// a typed error, never a trap.
@Suite struct SharedTierHostTests {
  @Test func gateRefusesCallsAfterCloseAndReleasesOnce() throws {
    let gate = UseGate()
    let releases = Atomic<Int>(0)
    let check1 = gate.enter()
    #expect(check1)
    gate.leave()
    try gate.close("thing", children: "children", operation: "close") {
      releases.add(1, ordering: .relaxed)
    }
    let check2 = gate.isClosed
    #expect(check2)
    let check3 = !gate.enter()
    #expect(check3)
    let again = expectVerbsError(.closed, operation: "close", errno: EBADF) {
      try gate.close("thing", children: "children", operation: "close") {
        releases.add(1, ordering: .relaxed)
      }
    }
    #expect(again?.checkedBeforeCall == true)
    #expect(releases.load(ordering: .relaxed) == 1)
  }

  @Test func gateWithChildrenStaysOpen() throws {
    let gate = UseGate()
    gate.childCreated()
    gate.childCreated()
    let busy = expectVerbsError(.busy, operation: "ibv_dealloc_pd", errno: EBUSY) {
      try gate.close("protection domain", children: "regions", operation: "ibv_dealloc_pd") {
        Issue.record("released with children alive")
      }
    }
    #expect(busy?.message.contains("2 live regions") == true)
    let check4 = !gate.isClosed
    #expect(check4)
    let check5 = gate.enter()
    #expect(check5)
    gate.leave()
    gate.childReleased()
    gate.childReleased()
    try gate.close("protection domain", children: "regions", operation: "ibv_dealloc_pd") {}
  }

  @Test func gateReopensWhenReleaseFails() throws {
    let gate = UseGate()
    expectVerbsError(.other, operation: "ibv_close_device", errno: EIO) {
      try gate.close("device", children: "domains", operation: "ibv_close_device") {
        () throws(VerbsError) in
        throw VerbsError(.other, operation: "ibv_close_device", errno: EIO, message: "test")
      }
    }
    let check6 = !gate.isClosed
    #expect(check6)
    let check7 = gate.enter()
    #expect(check7)
    gate.leave()
  }

  /// Many threads enter and leave while one closes: the release runs once,
  /// after every call that got in has left, and no call gets in after it.
  @Test func gateCloseRacesWithCallers() throws {
    final class Box: Sendable {
      let gate = UseGate()
      let inside = Atomic<Int>(0)
      let released = Atomic<Bool>(false)
      let violations = Atomic<Int>(0)
      let admitted = Atomic<Int>(0)
    }
    for _ in 0..<20 {
      let box = Box()
      runOnThreads(9) { index in
        if index == 8 {
          usleep(200)
          try? box.gate.close("thing", children: "", operation: "close") {
            if box.inside.load(ordering: .acquiring) != 0 {
              box.violations.add(1, ordering: .relaxed)
            }
            box.released.store(true, ordering: .releasing)
          }
          return
        }
        for _ in 0..<2000 {
          guard box.gate.enter() else { break }
          box.admitted.add(1, ordering: .relaxed)
          box.inside.add(1, ordering: .acquiring)
          if box.released.load(ordering: .acquiring) { box.violations.add(1, ordering: .relaxed) }
          box.inside.subtract(1, ordering: .releasing)
          box.gate.leave()
        }
      }
      let check8 = box.violations.load(ordering: .relaxed) == 0
      #expect(check8)
      let check9 = box.released.load(ordering: .relaxed)
      #expect(check9)
      let check10 = !box.gate.enter()
      #expect(check10)
    }
  }

  @Test func hugeBuffersAreTypedErrorsNotTraps() {
    // Rounding Int.max up to a page overflows (it trapped before: issue 10,
    // cause 1); page-aligned sizes near it reach mmap, which refuses them.
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EOVERFLOW) {
      _ = try PageAlignedBuffer(byteCount: Int.max)
    }
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EOVERFLOW) {
      _ = try SharedBuffer(byteCount: Int.max)
    }
    for count in [Int.max - 4095, Int.max - 0x2f_ffff] {
      expectVerbsError(.resourceExhausted, operation: "mmap", errno: ENOMEM) {
        _ = try PageAlignedBuffer(byteCount: count)
      }
      expectVerbsError(.resourceExhausted, operation: "mmap", errno: ENOMEM) {
        _ = try SharedBuffer(byteCount: count)
      }
    }
    // Over-mapping for a 2 MiB alignment would pass Int.max.
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EOVERFLOW) {
      _ = try SharedBuffer(byteCount: Int.max - 4095, alignment: 1 << 21)
    }
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EOVERFLOW) {
      _ = try PageAlignedBuffer(byteCount: Int.max / 2, alignment: 1 << 62)
    }
    for count in [0, -1, Int.min] {
      expectVerbsError(.invalidArgument, operation: "mmap", errno: EINVAL) {
        _ = try SharedBuffer(byteCount: count)
      }
    }
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EINVAL) {
      _ = try SharedBuffer(byteCount: 4096, alignment: 3 << 12)
    }
  }

  @Test func bufferCopiesAndLoadsAreBoundsChecked() throws {
    let buffer = try SharedBuffer(byteCount: 100)
    try buffer.copy(from: [1, 2, 3], at: 97)
    #expect(try buffer.load(97..<100) == [1, 2, 3])
    for offset in [98, -1, Int.max, Int.min, 101] {
      expectVerbsError(.invalidArgument, operation: "copy", errno: EINVAL) {
        try buffer.copy(from: [1, 2, 3], at: offset)
      }
    }
    for range in [0..<101, -1..<2, (Int.max - 1)..<Int.max] {
      expectVerbsError(.invalidArgument, operation: "load", errno: EINVAL) {
        _ = try buffer.load(range)
      }
    }
    let paged = try PageAlignedBuffer(byteCount: 10)
    expectVerbsError(.invalidArgument, operation: "copy", errno: EINVAL) {
      try paged.copy(from: [UInt8](repeating: 1, count: 11))
    }
  }

  @Test func scatterGatherEntriesAreBoundsChecked() throws {
    func sge(_ length: Int, _ offset: Int, _ count: Int?) throws(VerbsError) -> ScatterGatherElement
    {
      try MemoryRegionCore.scatterGather(
        iova: 0x1000, length: length, lkey: 7, offset: offset, count: count)
    }
    #expect(
      try sge(8192, 4096, nil) == ScatterGatherElement(address: 0x2000, length: 4096, lkey: 7))
    #expect(try sge(8192, 8192, nil).length == 0)
    for (offset, count) in [(-1, 1), (8193, nil), (0, 8193), (4096, 4097), (1, Int.max), (0, -1)]
      as [(Int, Int?)]
    {
      expectVerbsError(.invalidArgument, operation: "ibv_sge", errno: EINVAL) {
        _ = try sge(8192, offset, count)
      }
    }
    let big = expectVerbsError(.invalidArgument, operation: "ibv_sge", errno: EINVAL) {
      _ = try sge(1 << 33, 0, nil)
    }
    #expect(big?.message.contains("4 GiB") == true)
  }

  @Test func remoteBuffersAdvanceWithinTheirLength() throws {
    let remote = RemoteBuffer(address: 0x1000, length: 100, rkey: 1)
    #expect(try remote.advanced(by: 100) == RemoteBuffer(address: 0x1064, length: 0, rkey: 1))
    expectVerbsError(.invalidArgument, operation: "ibv_send_wr", errno: EINVAL) {
      _ = try remote.advanced(by: 101)
    }
    let corrupt = RemoteBuffer(address: UInt64.max, length: UInt64.max, rkey: 1)
    expectVerbsError(.invalidArgument, operation: "ibv_send_wr", errno: EOVERFLOW) {
      _ = try corrupt.advanced(by: 2)
    }
  }

  @Test func adoptedMemoryIsReleasedOnceByItsOwner() throws {
    let released = Atomic<Int>(0)
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    do {
      let buffer = try SharedBuffer(adopting: memory) { pointer in
        released.add(1, ordering: .relaxed)
        pointer.deallocate()
      }
      #expect(buffer.baseAddress == memory.baseAddress)
      #expect(buffer.count == 64)
      #expect(released.load(ordering: .relaxed) == 0)
    }
    #expect(released.load(ordering: .relaxed) == 1)
    expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      _ = try SharedBuffer(adopting: UnsafeMutableRawBufferPointer(start: nil, count: 0))
    }
  }

  @Test func fileMappingsCheckTheirRange() throws {
    let path = NSTemporaryDirectory() + "umem-map-\(getpid())-\(UUID())"
    #expect(
      FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: 10_000)))
    defer { unlink(path) }
    let whole = try SharedBuffer(mappingFileAt: path, writable: false)
    #expect(whole.count == 10_000)
    let part = try SharedBuffer(mappingFileAt: path, offset: 4097, length: 100, writable: true)
    #expect(part.address % 4096 == 1)
    #expect(try part.load(0..<100) == [UInt8](repeating: 7, count: 100))
    try part.copy(from: [9], at: 0)
    #expect(try Data(contentsOf: URL(fileURLWithPath: path))[4097] == 9)
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EINVAL) {
      _ = try SharedBuffer(mappingFileAt: path, offset: 10_000, writable: false)
    }
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EINVAL) {
      _ = try SharedBuffer(mappingFileAt: path, offset: 9_999, length: 2, writable: false)
    }
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EINVAL) {
      _ = try SharedBuffer(mappingFileAt: path, offset: UInt64.max, writable: false)
    }
    expectVerbsError(.invalidArgument, operation: "mmap", errno: EINVAL) {
      _ = try SharedBuffer(mappingFileAt: path, length: -5, writable: false)
    }
    let missing = expectVerbsError(.notMapped, operation: "open", errno: ENOENT) {
      _ = try SharedBuffer(mappingFileAt: path + ".missing", writable: false)
    }
    #expect(missing?.message.contains(".missing") == true)
    // The read-only shared mapping is what registration's EFAULT advice names.
    let found = MemoryMapping.readOnlyShared(in: whole.address, length: 10)
    #expect(found?.path == path)
    #expect(MemoryMapping.readOnlyShared(in: part.address, length: 10) == nil)
  }

  @Test func mapsLinesParse() {
    let line = "7f0000001000-7f0000003000 r--s 00001000 00:2a 1234     /dev/shm/file name"
    let mapping = MemoryMapping.parse(Substring(line))
    #expect(mapping?.start == 0x7f00_0000_1000)
    #expect(mapping?.end == 0x7f00_0000_3000)
    #expect(mapping?.isShared == true && mapping?.isWritable == false)
    #expect(mapping?.path == "/dev/shm/file name")
    #expect(MemoryMapping.parse("garbage") == nil)
    #expect(MemoryMapping.parse("3000-1000 rw-p 0 0 0") == nil)
    #expect(MemoryMapping.parse("ffffffffffffffffff-1 rw-p 0 0 0") == nil)
  }

  @Test func errnoNamesComeFromTheCLibrary() {
    #expect(ErrnoName.of(EINVAL) == "EINVAL")
    #expect(ErrnoName.of(EHWPOISON) == "EHWPOISON")  // not in the old table
    #expect(ErrnoName.of(0) == "0")
    #expect(ErrnoName.of(99_999) == "errno 99999")
    #expect(ErrnoName.of(-3) == "errno -3")
    #expect(ErrnoName.text(ENOMEM) == "Cannot allocate memory")
  }
}
