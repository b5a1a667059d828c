import COracle
import Foundation
import Phyr
import TestSupport
import Testing
import Umem
import UmemSystem
import Verbs

/// The planner against the kernel itself. The `umem_oracle` module
/// (ci/oracle, loaded by the device stage) pins a range of this process with
/// the running kernel's `ib_umem_get` and answers with
/// `ib_umem_find_best_pgsz`, `ib_umem_num_dma_blocks` and every block of
/// `rdma_umem_for_each_dma_block`. The same range's pagemap phyrs, moved by
/// the device's DMA offset (rxe's DMA addresses are kernel virtual addresses,
/// the direct map being physical plus one offset), go through our planner.
/// Page size, block count and every block must agree.
///
/// Our side follows the running kernel's rule set (``KernelRules/current``)
/// over the scatter list rxe gets (virtual DMA: entries of up to
/// `UINT_MAX` bytes), and the kernel's entry count must match ours too.
///
/// Prints `oracle RELEASE: N cases, N agree, D differ` for ci/test's summary.
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
final class KernelOracleOnDevice {
  /// The page size of the kernel's last answer, for the tally.
  var lastKernelPageSize: UInt64 = 0
  /// The rule set our side follows: the running kernel's.
  let rules = KernelRules.current
  /// Cases where the other rule set would have answered differently.
  var ruleSensitive = 0
  /// rxe uses virtual DMA, so `ib_dma_max_seg_size` is `UINT_MAX`.
  static let maxSegmentSize: UInt64 = 0xffff_ffff

  static let bitmaps: [UInt64] = [
    0xffff_f000,  // rxe and mlx5: 4 KiB to 2 GiB
    0x1000,  // 4 KiB only
    0x1000 | 0x20_0000 | 0x4000_0000,  // 4K, 2M, 1G
    0x1000 | 0x1_0000 | 0x20_0000,  // 4K, 64K, 2M
    0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10_0000,  // small sizes and 1M
    0x3f_f000,  // every size from 4 KiB to 2 MiB
  ]

  struct Tally {
    var cases = 0
    var agree = 0
    var differences: [String] = []
    var unavailable: [String] = []
    /// How many cases the kernel answered with each page size (0: none fits).
    var bySize: [UInt64: Int] = [:]
    /// Control cases: a deliberately wrong input that the comparison caught.
    var controlsCaught = 0
    var controls = 0
  }

  @Test func plannerAgreesWithTheKernel() throws {
    let fd = umem_oracle_open()
    guard fd >= 0 else {
      if DeviceLab.required {
        let why =
          "/dev/umem_oracle is missing (errno \(-fd)): the device stage loads "
          + "ci/out/oracle/RELEASE/umem_oracle.ko built by ci/oracle/build"
        Issue.record("\(why)")
      }
      return
    }
    defer { umem_oracle_close(fd) }
    let device = try DeviceLab.deviceName ?? Device.list().first?.name ?? "rxe0"
    var tally = Tally()
    let reserved = reserveHugePages()
    defer { restoreHugePages(reserved) }
    let buffers: [(UmemBuffer.Backing, Int)] = [
      (.pages, 6 << 20), (.transparentHuge, 8 << 20), (.hugetlb2M, 8 << 20), (.hugetlb1G, 1 << 30),
    ]
    for (backing, size) in buffers {
      do {
        let buffer = try UmemBuffer(byteCount: size, backing: backing)
        try check(buffer, backing: backing, fd: fd, device: device, tally: &tally)
      } catch {
        tally.unavailable.append("\(backing.rawValue): \(error)")
      }
    }
    let release = KernelVersion.release
    print(
      "oracle \(release): \(tally.cases) cases, \(tally.agree) agree, "
        + "\(tally.differences.count) differ")
    print(
      "oracle \(release) rules: \(rules) (\(KernelVersion.version)); cases where the other "
        + "rule set answers differently: \(ruleSensitive)")
    let sizes = tally.bySize.sorted { $0.key < $1.key }.map { size, count in
      "\(size == 0 ? "none" : PageSizes.describe(size)) x\(count)"
    }
    print("oracle \(release) page sizes chosen: \(sizes.joined(separator: ", "))")
    print(
      "oracle \(release) controls: \(tally.controlsCaught) of \(tally.controls) wrong inputs "
        + "caught")
    for note in tally.unavailable { print("oracle \(release): not run: \(note)") }
    for difference in tally.differences.prefix(20) { print("oracle differs: \(difference)") }
    #expect(tally.differences.isEmpty)
    #expect(tally.cases >= 1000, "too few cases: \(tally.cases)")
    // Not vacuous: the kernel chose pages above 4 KiB in many cases, and a
    // wrong input (the DMA list moved by 4 KiB) makes the comparison fail.
    #expect(tally.bySize.filter { $0.key > 0x1000 }.values.reduce(0, +) >= 100, "\(sizes)")
    #expect(tally.controls > 0 && tally.controlsCaught == tally.controls)
    // Plain, THP and 2 MiB hugetlb buffers must run; a 1 GiB page may be
    // impossible to reserve in a fragmented VM, and is reported above.
    #expect(
      tally.unavailable.allSatisfy { $0.hasPrefix("hugetlb-1g") }, "\(tally.unavailable)")
  }

  /// Every sub-range, IOVA and bitmap of one buffer.
  func check(
    _ buffer: borrowing UmemBuffer, backing: UmemBuffer.Backing, fd: Int32, device: String,
    tally: inout Tally
  ) throws {
    let umem = try Umem(pinning: buffer, access: .localWrite)
    let layout = try umem.resolve()
    let phyrs = try #require(layout.phyrs, "no physical addresses (not root?)")
    let size = Int(umem.length)
    let offsets = [0, 0x10, 0xfff, 0x1000, 0x1234, 0x1f_f000, 0x1f_fff0, 0x20_0800, 0x30_0000]
      .filter { $0 < size }
    let lengths = [1, 0x800, 0x1000, 0x1001, 0x3000, 0x1f_ffff, 0x20_0000, 0x20_0001, 0x40_0000]
    var dmaOffset: UInt64? = nil
    for offset in offsets {
      // The rest of the buffer too, but not 1 GiB at every offset: pinning
      // that much per query is slow under emulation.
      let rest = size <= 8 << 20 || offset == 0 ? [size - offset] : []
      for length in lengths + rest where length > 0 && length <= size - offset {
        let address = umem.address + UInt64(offset)
        let range = try slice(
          phyrs, from: umem.address, offset: UInt64(offset), length: UInt64(length))
        // The first query of a buffer tells the DMA offset; it must stay fixed.
        let probe = try query(fd, device, address, UInt64(length), iova: address, bitmap: 0x1000)
        guard probe.failed_step == 0 else {
          tally.differences.append(
            "\(backing.rawValue) +0x\(hex(offset)) len 0x\(hex(length)): "
              + "kernel step \(probe.failed_step) failed, errno \(probe.kernel_errno)")
          continue
        }
        if let known = dmaOffset, known != probe.dma_offset {
          tally.differences.append(
            "DMA offset moved: 0x\(hex(known)) then 0x\(hex(probe.dma_offset))")
        }
        dmaOffset = probe.dma_offset
        let dma = try PhyrList(
          range.map { Phyr(address: $0.address &+ probe.dma_offset, length: $0.length) })
        for bitmap in Self.bitmaps {
          let sizes = PageSizes(pageSizeCap: bitmap)
          let planned = dma.planIOVA(.any, pageSizes: sizes).iova
          let iovas = [address, address & 0xfff, planned, 0x7f_0000_0000 | (address & 0x1f_ffff)]
          for iova in Set(iovas) {
            tally.cases += 1
            let verdict = try compare(
              dma, fd: fd, device: device, address: address, length: UInt64(length), iova: iova,
              bitmap: bitmap)
            if verdict == nil, offset == 0, bitmap == 0xffff_f000, iova == address,
              let moved = try? PhyrList(
                dma.map { Phyr(address: $0.address &+ 0x1000, length: $0.length) }),
              (dma.bestPageSize(iova: iova, pageSizes: sizes) ?? 0) > 0x1000
            {
              tally.controls += 1
              let control = try compare(
                moved, fd: fd, device: device, address: address, length: UInt64(length),
                iova: iova, bitmap: bitmap)
              if control != nil { tally.controlsCaught += 1 }
            }
            if let verdict {
              tally.differences.append(
                "\(backing.rawValue) +0x\(hex(offset)) len 0x\(hex(length)) iova 0x\(hex(iova)) "
                  + "bitmap 0x\(hex(bitmap)): \(verdict)")
            } else {
              tally.agree += 1
            }
            tally.bySize[lastKernelPageSize, default: 0] += 1
          }
        }
      }
    }
    try umem.unpin()
  }

  /// Nil when ours and the kernel's answers are the same, else what differs.
  func compare(
    _ dma: PhyrList, fd: Int32, device: String, address: UInt64, length: UInt64, iova: UInt64,
    bitmap: UInt64
  ) throws -> String? {
    var blocks = [UInt64](repeating: 0, count: 4096)
    let kernel = try blocks.withUnsafeMutableBufferPointer { out in
      try query(
        fd, device, address, length, iova: iova, bitmap: bitmap,
        blocks: out.baseAddress, capacity: out.count)
    }
    lastKernelPageSize = kernel.page_size
    guard kernel.failed_step == 0 else {
      return "kernel step \(kernel.failed_step) failed, errno \(kernel.kernel_errno)"
    }
    let sizes = PageSizes(pageSizeCap: bitmap)
    let ours =
      try dma.bestPageSize(
        iova: iova, pageSizes: sizes, rules: rules, maxSegmentSize: Self.maxSegmentSize) ?? 0
    for other in KernelRules.all where other != rules {
      let theirs = try dma.bestPageSize(
        iova: iova, pageSizes: sizes, rules: other, maxSegmentSize: Self.maxSegmentSize)
      if (theirs ?? 0) != ours { ruleSensitive += 1 }
    }
    let segments = try dma.scatterSegments(maxSegmentSize: Self.maxSegmentSize).count
    guard segments == kernel.segments else {
      return "scatter-list entries: ours \(segments), kernel \(kernel.segments)"
    }
    guard ours == kernel.page_size else {
      return "page size: ours 0x\(hex(ours)), kernel 0x\(hex(kernel.page_size))"
    }
    guard ours != 0 else { return nil }
    let count = try dma.blockCount(pageSize: ours, iova: iova)
    guard count == kernel.block_count, count == kernel.blocks_walked else {
      return "blocks: ours \(count), kernel \(kernel.block_count) (walked \(kernel.blocks_walked))"
    }
    let walked = Array(try dma.blocks(pageSize: ours, iova: iova).prefix(blocks.count))
    let theirs = Array(blocks.prefix(min(Int(count), blocks.count)))
    if walked != theirs {
      let index =
        zip(walked, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        ?? min(walked.count, theirs.count)
      return "block \(index) differs"
    }
    return nil
  }

  func query(
    _ fd: Int32, _ device: String, _ address: UInt64, _ length: UInt64, iova: UInt64,
    bitmap: UInt64, blocks: UnsafeMutablePointer<UInt64>? = nil, capacity: Int = 0
  ) throws -> umem_oracle_query {
    var q = umem_oracle_query()
    withUnsafeMutableBytes(of: &q.device) { bytes in
      for (i, byte) in device.utf8.prefix(bytes.count - 1).enumerated() { bytes[i] = byte }
    }
    q.address = address
    q.length = length
    q.iova = iova
    q.page_sizes = bitmap
    q.blocks = UInt64(UInt(bitPattern: blocks))
    q.block_capacity = UInt64(capacity)
    q.access = 1  // IB_ACCESS_LOCAL_WRITE
    let status = umem_oracle_query(fd, &q)
    guard status == 0 else {
      throw UmemError(
        .other, operation: "ioctl(UMEM_ORACLE_QUERY)", errno: status, message: "oracle query failed"
      )
    }
    return q
  }

  /// The phyrs of `[base + offset, base + offset + length)` out of the phyrs
  /// of the whole buffer starting at virtual address `base`.
  func slice(_ phyrs: PhyrList, from base: UInt64, offset: UInt64, length: UInt64) throws
    -> PhyrList
  {
    var result = PhyrList()
    var virtual: UInt64 = 0
    let end = offset + length
    for phyr in phyrs {
      let next = virtual + phyr.length
      if next > offset && virtual < end {
        let from = max(virtual, offset)
        let to = min(next, end)
        try result.append(address: phyr.address + (from - virtual), length: to - from)
      }
      virtual = next
      if virtual >= end { break }
    }
    return result
  }

  /// Asks for 2 MiB and 1 GiB huge pages, as root in the lab VM (harmless
  /// where it is not allowed); returns what was there before.
  func reserveHugePages() -> [(String, Int)] {
    var before: [(String, Int)] = []
    for (path, count) in [
      ("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", 16),
      ("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", 1),
    ] {
      let current =
        (try? String(contentsOfFile: path, encoding: .utf8))
        .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
      before.append((path, current))
      if current < count {
        try? "\(count)\n".write(toFile: path, atomically: false, encoding: .utf8)
      }
    }
    return before
  }

  /// Gives back what ``reserveHugePages()`` reserved.
  func restoreHugePages(_ before: [(String, Int)]) {
    for (path, count) in before {
      try? "\(count)\n".write(toFile: path, atomically: false, encoding: .utf8)
    }
  }

  func hex(_ value: some BinaryInteger) -> String { String(value, radix: 16) }
}
