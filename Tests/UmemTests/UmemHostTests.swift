import Foundation
import Phyr
import TestSupport
import Testing
import Verbs

@testable import Umem

/// Pinning, page maps and plans on this machine (root: real page frames).
@Suite(.serialized)
struct UmemHostTests {
  @Test(arguments: [(8 << 20, 0), (1 << 20, 0x123), (10_000, 0xff0), (1, 4095), (4096, 0)])
  func plainBufferIsByteExactAndContiguous(size: Int, offset: Int) throws {
    let buffer = try UmemBuffer(byteCount: size + offset)
    let umem = try Umem(pinning: buffer, offset: offset, length: size)
    let layout = try umem.resolve()
    #expect(layout.physicalAddressesAvailable)
    #expect(layout.notPresentPages.isEmpty)
    TestPagemap.check(layout)
    #expect(try umem.verify(layout).isEmpty)
    let plan = try layout.plan(pageSizes: .mlx5, iova: .keep(umem.address))
    #expect(plan.pageSize != nil)
    #expect(plan.entriesAt4K == UInt64(layout.pageCount))
    #expect(plan.tableBytesAt4K == 8 * UInt64(layout.pageCount))
  }

  @Test func transparentHugePagesGiveTwoMegabyteRunsAndPlan() throws {
    let size = 16 << 20
    let buffer = try UmemBuffer(byteCount: size, backing: .transparentHuge)
    #expect(buffer.address % (2 << 20) == 0)
    let umem = try Umem(pinning: buffer)
    let obtained = try buffer.obtained()
    try #require(
      obtained.transparentHugeBytes == UInt64(size),
      "the kernel gave \(obtained); THP mode must be madvise or always")
    let layout = try umem.resolve()
    TestPagemap.check(layout)
    let phyrs = try #require(layout.phyrs)
    for run in phyrs {
      #expect(run.length % (2 << 20) == 0 && run.address % (2 << 20) == 0, "\(run)")
    }
    let backing = try umem.backing()
    #expect(backing.locatedTransparentHugePages)
    #expect(backing.bytes(.transparentHuge) == UInt64(size), "\(backing)")
    let plan = try layout.plan(pageSizes: .mlx5, iova: .keep(umem.address))
    #expect((plan.pageSize ?? 0) >= 2 << 20, "\(plan)")
    let exact = try layout.plan(
      pageSizes: PageSizes(rawValue: 0x20_1000), iova: .keep(umem.address))
    #expect(exact.pageSize == 2 << 20)
    #expect(exact.blockCount == 8)
    #expect(exact.tableBytes == 64)
    #expect(exact.tableBytesAt4K == 4096 * 8)
  }

  @Test func hugetlbTwoMegabytePages() throws {
    try requireOrSkip(try HugetlbCases.twoMegabytePages(), "hugetlb 2M")
  }

  @Test func hugetlbOneGigabytePage() throws {
    try requireOrSkip(try HugetlbCases.oneGigabytePage(), "hugetlb 1G")
  }

  @Test func noReservedHugePagesIsAClearError() throws {
    let pool = HugetlbPool(pageSize: 2 << 20)
    guard pool.free == 0 else { return }
    expectNoLeaks("hugetlb refusal") {
      let error = expectUmemError(.hugePagesUnavailable, errno: ENOMEM) {
        _ = try UmemBuffer(byteCount: 4 << 20, backing: .hugetlb2M)
      }
      #expect(error?.message.contains("nr_hugepages") == true, "\(String(describing: error))")
      #expect(error?.message.contains("0 free") == true, "\(String(describing: error))")
    }
  }

  // MARK: - Bad input: typed errors, VmPin and VmLck unchanged

  @Test func badInputsAreTypedErrorsAndLeaveNothingLocked() throws {
    let buffer = try UmemBuffer(byteCount: 64 << 10)
    // Low addresses hold nothing in a PIE process: 16 KiB mapped at 1 MiB,
    // with unmapped space below it.
    let area = mmap(
      UnsafeMutableRawPointer(bitPattern: 0x10_0000), 16 << 10, PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)!
    try #require(area != MAP_FAILED && UInt(bitPattern: area) == 0x10_0000)
    defer { munmap(area, 16 << 10) }
    let readOnly = mmap(nil, 16 << 10, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
    defer { munmap(readOnly, 16 << 10) }
    let readOnlyAddress = UInt64(UInt(bitPattern: readOnly))
    try expectNoLeaks("bad inputs") {
      expectUmemError(.invalidArgument, errno: EINVAL) { _ = try Umem(pinning: buffer, length: 0) }
      expectUmemError(.invalidArgument, errno: EINVAL) {
        _ = try Umem(unsafeAddress: UInt64.max - 4095, length: 8192)
      }
      expectUmemError(.invalidArgument, errno: EINVAL) {
        _ = try Umem(unsafeAddress: UInt64.max - 100, length: 50)  // aligned end overflows
      }
      let huge = expectUmemError(.invalidArgument, errno: EINVAL) {
        _ = try Umem(unsafeAddress: 0x1000, length: (UInt64(UInt32.max) + 1) * 4096)
      }
      #expect(huge?.message.contains("pages") == true)
      expectUmemError(.invalidArgument, errno: EINVAL) {
        _ = try Umem(pinning: buffer, access: [.remoteWrite])
      }
      expectUmemError(.invalidArgument, errno: EINVAL) {
        _ = try Umem(pinning: buffer, access: [.localWrite, .onDemand])
      }
      expectUmemError(.invalidArgument, errno: EINVAL) {
        _ = try Umem(pinning: buffer, offset: 4096, length: 64 << 10)
      }
      let unmapped = expectUmemError(.notMapped, errno: ENOMEM) {
        _ = try Umem(unsafeAddress: 0x10_0000 - (16 << 10), length: 16 << 10)
      }
      #expect(unmapped?.operation == "mlock")
      // Half mapped: the mapped half must not stay locked.
      expectUmemError(.notMapped, errno: ENOMEM) {
        _ = try Umem(unsafeAddress: 0x10_0000 - 100, length: 12 << 10)
      }
      // Read-only memory cannot be pinned for writing, but can for reading.
      let readOnlyError = expectUmemError(.permissionDenied, errno: EINVAL) {
        _ = try Umem(unsafeAddress: readOnlyAddress, length: 16 << 10, access: .localWrite)
      }
      #expect(readOnlyError?.message.contains("read-only") == true)
      let reader = try Umem(unsafeAddress: readOnlyAddress, length: 16 << 10, access: [.remoteRead])
      try reader.unpin()
      expectUmemError(.invalidArgument, errno: EINVAL) { _ = try UmemBuffer(byteCount: 0) }
    }
    #expect(PinLedger.shared.holds().isEmpty)
  }

  @Test func pinAndUnpinMoveVmLckExactlyOnce() throws {
    let buffer = try UmemBuffer(byteCount: 1 << 20)
    let before = MemoryLockStatus.current().lockedBytes
    try expectNoLeaks("pin/unpin") {
      let umem = try Umem(pinning: buffer)
      #expect(MemoryLockStatus.current().lockedBytes == before + (1 << 20))
      // An overlapping umem must not unlock the first one's pages.
      do {
        let inner = try Umem(pinning: buffer, offset: 4096 * 3 + 5, length: 10_000)
        #expect(MemoryLockStatus.current().lockedBytes == before + (1 << 20))
        try inner.unpin()
      }
      #expect(MemoryLockStatus.current().lockedBytes == before + (1 << 20))
      try umem.unpin()
      #expect(MemoryLockStatus.current().lockedBytes == before)
      // Dropping unpins too.
      do { _ = try Umem(pinning: buffer, access: []) }
      #expect(MemoryLockStatus.current().lockedBytes == before)
    }
  }

  @Test func ledgerCountsOverlaps() {
    var s: [PinLedger.Segment] = []
    s = PinLedger.adding(s, 0x1000, 0x5000, delta: 1)
    s = PinLedger.adding(s, 0x3000, 0x8000, delta: 1)
    #expect(
      s.map { [$0.start, $0.end, UInt64($0.count)] } == [
        [0x1000, 0x3000, 1], [0x3000, 0x5000, 2], [0x5000, 0x8000, 1],
      ])
    #expect(
      PinLedger.gaps(in: s, 0x0, 0x9000).map { [$0.0, $0.1] } == [[0, 0x1000], [0x8000, 0x9000]])
    s = PinLedger.adding(s, 0x1000, 0x5000, delta: -1)
    #expect(s.map { [$0.start, $0.end, UInt64($0.count)] } == [[0x3000, 0x8000, 1]])
    s = PinLedger.adding(s, 0x3000, 0x8000, delta: -1)
    #expect(s.isEmpty)
  }

  /// ENOMEM and EPERM from the memlock limit, in children without CAP_IPC_LOCK.
  @Test func memlockLimitSaysWhatToDo() throws {
    let umem = TestTools.executable("umem")
    let over = TestTools.run([
      "bash", "-c",
      "ulimit -l 64 && exec setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock \(umem) inspect --size 1M",
    ])
    #expect(over.status == 1, "\(over)")
    #expect(over.stderr.contains("ENOMEM"), "\(over.stderr)")
    #expect(over.stderr.contains("64 KiB allowed"), "\(over.stderr)")
    #expect(over.stderr.contains("KiB locked"), "\(over.stderr)")
    #expect(over.stderr.contains("ulimit -l"), "\(over.stderr)")
    #expect(over.stderr.contains("CAP_IPC_LOCK"), "\(over.stderr)")
    let zero = TestTools.run([
      "bash", "-c",
      "ulimit -l 0 && exec setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock \(umem) inspect --size 64K",
    ])
    #expect(zero.status == 1, "\(zero)")
    #expect(zero.stderr.contains("EPERM"), "\(zero.stderr)")
  }

  // MARK: - Page map decoding with made-up entries

  @Test func decoderReportsNotPresentPagesAndZeroFrames() {
    let present: UInt64 = 1 << 63
    var decoder = PagemapDecoder(address: 0x7000_0000_0800, length: 3 * 4096)
    [present | 0x100, 0, present | 0x102, present | 0x103].withUnsafeBufferPointer {
      decoder.feed($0)
    }
    let layout = decoder.finish()
    #expect(layout.phyrs == nil)
    #expect(layout.physicalAddressesAvailable)
    #expect(layout.notPresentPages == [0x7000_0000_1000])
    #expect(throws: UmemError.self) { _ = try layout.plan(pageSizes: .mlx5, iova: .any) }

    var full = PagemapDecoder(address: 0x7000_0000_0800, length: 3 * 4096)
    [present | 0x100, present | 0x101, present | 0x200, present | 0x201].withUnsafeBufferPointer {
      full.feed($0)
    }
    #expect(
      Array(full.finish().phyrs!) == [
        Phyr(address: 0x100800, length: 0x1800), Phyr(address: 0x200000, length: 0x1800),
      ])

    var hidden = PagemapDecoder(address: 0x7000_0000_0000, length: 2 * 4096)
    [present, present].withUnsafeBufferPointer { hidden.feed($0) }
    let unavailable = hidden.finish()
    #expect(!unavailable.physicalAddressesAvailable)
    #expect(unavailable.phyrs == nil)
    #expect(unavailable.unavailableReason != nil)
  }

  @Test func verifyReportsMovedPages() throws {
    let buffer = try UmemBuffer(byteCount: 64 << 10)
    let umem = try Umem(pinning: buffer)
    var layout = try umem.resolve()
    #expect(try umem.verify(layout).isEmpty)
    // Pretend the second run was somewhere else.
    var phyrs = PhyrList()
    for (i, run) in layout.phyrs!.enumerated() {
      try phyrs.append(i == 0 ? Phyr(address: run.address ^ (1 << 40), length: run.length) : run)
    }
    layout.phyrs = phyrs
    let moves = try umem.verify(layout)
    #expect(moves.count == Int(layout.phyrs![0].length / 4096), "\(moves)")
    #expect(moves.first?.virtualAddress == umem.address)
  }

  // MARK: - Without CAP_SYS_ADMIN, and through the command line

  @Test func withoutSysAdminThePhysicalLayoutIsUnavailableButUseful() {
    let (status, report, output) = inspectJSON(
      ["inspect", "--size", "4M", "--backing", "thp", "--json"],
      prefix: ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin"])
    #expect(status == 0, "\(output)")
    #expect(report["physicalAddressesAvailable"] as? Bool == false, "\(output)")
    #expect(report["phyrs"] is NSNull)
    #expect(
      (report["unavailableReason"] as? String)?.contains("CAP_SYS_ADMIN") == true, "\(output)")
    #expect((report["backing"] as? [Any])?.isEmpty == false)
    #expect(report["pages"] as? Int == 1024)
    let obtained = report["obtained"] as? [String: Any]
    #expect(obtained?["transparentHugeBytes"] as? Int == 4 << 20, "\(output)")
  }

  @Test(arguments: [
    ["--size", "1M", "--offset", "0x234"], ["--size", "8M", "--backing", "thp"],
    ["--size", "8M", "--backing", "thp", "--iova", "va", "--page-sizes", "0x40201000"],
    ["--size", "300K", "--offset", "0x1800", "--iova", "zero"],
  ])
  func inspectJSONReplansToTheSameAnswer(_ arguments: [String]) throws {
    let (status, report, output) = inspectJSON(["inspect", "--json"] + arguments)
    #expect(status == 0, "\(output)")
    let phyrs = try #require(report["phyrs"] as? [[String]], "\(output)")
    let total = phyrs.reduce(UInt64(0)) { $0 + UInt64($1[1].dropFirst(2), radix: 16)! }
    #expect("0x" + String(total, radix: 16) == report["length"] as? String)
    let again = try #require(replan(report))
    #expect(
      planFields(again) == planFields(report),
      "inspect \(planFields(report)), plan \(planFields(again))")
  }

  @Test func forkSharesLockedPagesCopyOnWrite() throws {
    let (status, report, output) = inspectJSON([
      "inspect", "--size", "1M", "--fork-check", "--json",
    ])
    #expect(status == 0, "\(output)")
    let fork = try #require(report["fork"] as? [String: Any], "\(output)")
    // mlock is not a DMA pin: the child shares every page, is not locked
    // itself, and the parent's writes while it lives move the parent's pages.
    #expect(fork["childSharedPages"] as? Int == 256, "\(fork)")
    #expect(fork["childLockedBytes"] as? Int == 0, "\(fork)")
    #expect(fork["parentMovedPagesAfterWrite"] as? Int == 256, "\(fork)")
  }
}
