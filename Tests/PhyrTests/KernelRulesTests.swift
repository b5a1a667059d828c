import PlannerReference
import Testing

@testable import Phyr

/// The two rule sets of `ib_umem_find_best_pgsz` (before and since Linux
/// 6.15), which kernel follows which, and the layouts where they differ: a
/// run longer than the device's scatter-list segment limit, or phyrs that
/// are cut inside a physically contiguous range.
@Suite("Kernel rule sets")
struct KernelRulesTests {
  @Test("a kernel's release and version pick its rule set")
  func releases() {
    let cases: [(String, String, KernelRules)] = [
      // Debian 12's 6.1: the release hides the stable level, uname -v has it.
      ("6.1.0-57-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-20)", .linux6_15),
      ("6.1.0-57-amd64", "", .beforeLinux6_15),
      ("6.1.0-31-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.128-1 (2025-02-07)", .beforeLinux6_15),
      ("6.1.141", "", .linux6_15),
      ("6.12.117+deb12-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1", .linux6_15),
      ("6.12.30", "", .beforeLinux6_15),
      ("6.12.31", "", .linux6_15),
      ("6.14.11-300.fc42.x86_64", "", .beforeLinux6_15),
      ("6.15.0-rc1", "", .linux6_15),
      ("7.3.4+deb13-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 7.3.4-1~bpo13+1", .linux6_15),
      ("5.15.0-100-generic", "", .beforeLinux6_15),
      // A version string about another series does not count.
      ("6.1.0-57-amd64", "Debian 6.12.117-1", .beforeLinux6_15),
      ("", "", .beforeLinux6_15),
      ("not a version", "Debian", .beforeLinux6_15),
      ("99999999999999999999999.1", "", .beforeLinux6_15),
    ]
    for (release, version, rules) in cases {
      #expect(KernelRules(release: release, version: version) == rules, "\(release) \(version)")
    }
    #expect(KernelRules.newest == .linux6_15)
    #expect(KernelRules.all == [.beforeLinux6_15, .linux6_15])
    #expect("\(KernelRules.linux6_15)" == "linux 6.15+")
    #expect("\(KernelRules.beforeLinux6_15)" == "linux before 6.15")
  }

  @Test("the segment limit cuts runs from their first page, in whole pages")
  func segments() throws {
    let list = try PhyrList([
      Phyr(address: 0x1800, length: 0x3000), Phyr(address: 0x20_0000, length: 0x50_0000),
    ])
    let cut = try list.scatterSegments(maxSegmentSize: 0x20_0fff)
    #expect(
      cut == [
        Phyr(address: 0x1800, length: 0x3000),
        Phyr(address: 0x20_0000, length: 0x20_0000), Phyr(address: 0x40_0000, length: 0x20_0000),
        Phyr(address: 0x60_0000, length: 0x10_0000),
      ])
    // The first run starts mid-page; the cut is a step past its page start.
    let small = try list.scatterSegments(maxSegmentSize: 0x2000)
    #expect(
      small.prefix(2) == [
        Phyr(address: 0x1800, length: 0x1800), Phyr(address: 0x3000, length: 0x1800),
      ])
    #expect(small.reduce(0) { $0 + $1.length } == list.totalLength)
    #expect(try list.scatterSegments(maxSegmentSize: 0xffff_f000).count == 2)
    #expect(throws: PhyrError.invalidPageSize(0xfff)) {
      try list.scatterSegments(maxSegmentSize: 0xfff)
    }
    #expect(try PhyrList().scatterSegments(maxSegmentSize: 0x1000).isEmpty)
    // A run at the top of the address space: the cut arithmetic must not wrap.
    let top = try PhyrList([Phyr(address: UInt64.max - 0x2fff, length: 0x3000)])
    #expect(try top.scatterSegments(maxSegmentSize: 0x1000).count == 3)
    #expect(try top.scatterSegments(maxSegmentSize: 0xffff_f000).count == 1)
  }

  @Test("a run longer than the segment limit: 64 KiB pages before 6.15, 4 MiB since")
  func segmentLimit() throws {
    // A 4 MiB THP-like run, IOVA equal to the address, a device that never
    // set a DMA segment limit (64 KiB).
    let list = try PhyrList([Phyr(address: 0x1_0040_0000, length: 0x40_0000)])
    let iova: UInt64 = 0x7f00_0040_0000
    #expect(
      try list.bestPageSize(
        iova: iova, pageSizes: .mlx5, rules: .linux6_15, maxSegmentSize: 0x1_0000) == 0x40_0000)
    #expect(
      try list.bestPageSize(
        iova: iova, pageSizes: .mlx5, rules: .beforeLinux6_15, maxSegmentSize: 0x1_0000)
        == 0x1_0000)
    // rxe's limit (UINT_MAX) does not cut 4 MiB: both rules agree.
    #expect(
      try list.bestPageSize(
        iova: iova, pageSizes: .mlx5, rules: .beforeLinux6_15, maxSegmentSize: 0xffff_ffff)
        == 0x40_0000)
    let plan = list.planIOVA(
      .keep(iova), pageSizes: .mlx5, rules: .beforeLinux6_15, maxSegmentSize: 0x1_0000)
    #expect(plan.pageSize == 0x1_0000 && plan.blockCount == 64)
    #expect(plan.limit == .runBoundary(run: 1, alignment: 0x1_0000), "\(plan)")
    #expect(
      list.planIOVA(.keep(iova), pageSizes: .mlx5, maxSegmentSize: 0x1_0000).pageSize == 0x40_0000)
    // The IOVA planner cannot do better than the cuts allow either.
    #expect(
      list.planIOVA(.any, pageSizes: .mlx5, rules: .beforeLinux6_15, maxSegmentSize: 0x1_0000)
        .pageSize == 0x1_0000)
  }

  @Test("five contiguous 1 GiB pages: rxe's 4 GiB - 4 KiB entries force 4 KiB pages before 6.15")
  func gigantic() throws {
    let list = try PhyrList([Phyr(address: 0x1_0000_0000, length: 5 << 30)])
    let iova: UInt64 = 0x7f80_0000_0000
    let rxe: UInt64 = 0xffff_ffff
    #expect(
      try list.bestPageSize(iova: iova, pageSizes: .mlx5, rules: .linux6_15, maxSegmentSize: rxe)
        == 0x8000_0000)
    #expect(
      try list.bestPageSize(
        iova: iova, pageSizes: .mlx5, rules: .beforeLinux6_15, maxSegmentSize: rxe) == 0x1000)
    // mlx5's 2 GiB entries are cut on 2 GiB boundaries: no loss.
    #expect(
      try list.bestPageSize(
        iova: iova, pageSizes: .mlx5, rules: .beforeLinux6_15, maxSegmentSize: 0x8000_0000)
        == 0x8000_0000)
  }

  @Test("uncut phyrs of one contiguous range count once since 6.15, each before")
  func uncoalescedPhyrs() throws {
    let phyrs = [
      Phyr(address: 0x20_0000, length: 0x1000), Phyr(address: 0x20_1000, length: 0x1f_f000),
    ]
    #expect(try PageSizes.mlx5.bestPageSize(for: phyrs, iova: 0x20_0000) == 0x20_0000)
    #expect(
      try PageSizes.mlx5.bestPageSize(for: phyrs, iova: 0x20_0000, rules: .beforeLinux6_15)
        == 0x1000)
    // Real discontinuities constrain both the same way.
    let apart = [
      Phyr(address: 0x20_0000, length: 0x1000), Phyr(address: 0x80_0000, length: 0x1000),
    ]
    for rules in KernelRules.all {
      #expect(try PageSizes.mlx5.bestPageSize(for: apart, iova: 0, rules: rules) == 0x1000)
    }
  }

  @Test("random layouts: each rule set agrees with the reference", arguments: [1, 2] as [UInt64])
  func randomLayouts(seed: UInt64) throws {
    var g = SplitMix64(seed: 0x6_15_0000 + seed)
    var differ = 0
    for _ in 0..<10_000 {
      let layout = Layout.random(&g)
      let sizes = PageSizes(rawValue: layout.bitmap)
      let list = try PhyrList(layout.phyrs)
      let newest = try sizes.bestPageSize(for: layout.phyrs, iova: layout.iova)
      let older = try sizes.bestPageSize(
        for: layout.phyrs, iova: layout.iova, rules: .beforeLinux6_15)
      #expect(
        (newest ?? 0)
          == Reference.bestPageSize(layout.phyrs, iova: layout.iova, bitmap: layout.bitmap))
      #expect(
        (older ?? 0)
          == Reference.bestPageSize(
            layout.phyrs, iova: layout.iova, bitmap: layout.bitmap, merging: false), "\(layout)")
      if older != newest { differ += 1 }
      // A coalesced list has maximal runs: without a segment limit the rule
      // sets agree, and the planner's keep-IOVA plan says the same.
      for rules in KernelRules.all {
        let got = try list.bestPageSize(
          iova: layout.iova, pageSizes: sizes, rules: rules, maxSegmentSize: UInt64.max)
        #expect(got == newest)
        #expect(
          list.planIOVA(
            .keep(layout.iova), pageSizes: sizes, rules: rules, maxSegmentSize: UInt64.max
          ).pageSize == newest)
      }
    }
    // Not vacuous: adjacent phyrs (a fifth of the layouts) make them differ.
    #expect(differ > 20, "\(differ)")
  }
}
