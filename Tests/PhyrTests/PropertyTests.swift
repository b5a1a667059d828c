import PlannerReference
import Testing

@testable import Phyr

@Suite("Property tests against the brute-force reference")
struct PropertyTests {
  @Test("best page size agrees on random layouts", arguments: [1, 2, 3, 4] as [UInt64])
  func bestPageSize(seed: UInt64) throws {
    var g = SplitMix64(seed: 0x5eed_0000 + seed)
    var found = 0
    var belowTop = 0
    for _ in 0..<25_000 {
      let layout = Layout.random(&g)
      let list = try PhyrList(layout.phyrs)
      let bitmap = PageSizes(rawValue: layout.bitmap)
      let expected = Reference.bestPageSize(layout.phyrs, iova: layout.iova, bitmap: layout.bitmap)
      let fast = list.bestPageSize(iova: layout.iova, pageSizes: bitmap)
      #expect((fast ?? 0) == expected, "\(layout)")
      let generic = try bitmap.bestPageSize(for: layout.phyrs, iova: layout.iova)
      #expect(generic == fast, "\(layout)")
      let plan = list.planIOVA(.keep(layout.iova), pageSizes: bitmap)
      #expect(plan.pageSize == fast, "\(layout)")
      if fast == nil && expected != 0 { return }  // stop flooding after a failure
      if let fast {
        found += 1
        if fast < bitmap.largest! { belowTop += 1 }
      }
    }
    // The generator must reach both outcomes often, or the test proves little.
    #expect(found > 5_000 && belowTop > 2_500 && found < 22_000, "\(found) \(belowTop)")
  }

  @Test("blocks agree on random layouts", arguments: [1, 2] as [UInt64])
  func blocks(seed: UInt64) throws {
    var g = SplitMix64(seed: 0xb10c_0000 + seed)
    var checked = 0
    var big = 0
    while checked < 6_000 {
      var layout = Layout.random(&g)
      if g.chance(50) { layout.iova = layout.phyrs[0].address }  // a valid size exists more often
      let list = try PhyrList(layout.phyrs)
      guard
        let size = list.bestPageSize(iova: layout.iova, pageSizes: .init(rawValue: layout.bitmap))
      else { continue }
      checked += 1
      if size >= 1 << 32 { big += 1 }
      let count = try list.blockCount(pageSize: size, iova: layout.iova)
      #expect(count == Reference.blockCount(length: layout.length, iova: layout.iova, size: size))
      #expect(try list.dmaOffset(pageSize: size) == layout.iova % size)
      // Walk at most 256 blocks; check the head always and the whole when short.
      var j: UInt64 = 0
      for b in try list.blocks(pageSize: size, iova: layout.iova) {
        let want = Reference.block(layout.phyrs, iova: layout.iova, size: size, index: j)
        #expect(b == want, "block \(j) of \(layout) at \(hex(size))")
        if b != want { return }
        j += 1
        if j == 256 { break }
      }
      #expect(j == Swift.min(count, 256))
      let blocks = try list.blocks(pageSize: size, iova: layout.iova)
      #expect(
        blocks.last
          == Reference.block(layout.phyrs, iova: layout.iova, size: size, index: count - 1),
        "\(layout)")
      if count <= 256 { #expect(blocks.last == Array(blocks).last) }
    }
    #expect(big > 0, "some blocks of 4 GiB or more were exercised")
  }

  @Test("appending coalesces exactly like the reference merge", arguments: [5] as [UInt64])
  func coalescing(seed: UInt64) throws {
    var g = SplitMix64(seed: 0xc0a1_e500 + seed)
    for _ in 0..<3_000 {
      let phyrs = Layout.random(&g).phyrs
      let list = try PhyrList(phyrs)
      let merged = Reference.runs(phyrs)
      #expect(list.map(\.address) == merged.map(\.pa))
      #expect(list.map(\.length) == merged.map(\.len))
      #expect(list.largestRunLength == merged.map(\.len).max())
      #expect(list._checkInvariants())
    }
  }

  @Test("the page-offset variant is the plain search at firstAddress & mask")
  func pageOffsetVariant() throws {
    var g = SplitMix64(seed: 0x9a9e_0ff5)
    for _ in 0..<3_000 {
      let layout = Layout.random(&g)
      let list = try PhyrList(layout.phyrs)
      // Offset fields of 1 to 16 bits in units of 2^0 to 2^8 bytes.
      let unit = g.below(9)
      let mask: UInt64 = ((1 << (1 + g.below(16))) - 1) << unit
      let expected = Reference.bestPageSize(
        layout.phyrs, iova: layout.phyrs[0].address & mask, bitmap: layout.bitmap)
      let got = list.bestPageSize(pageOffsetMask: mask, pageSizes: .init(rawValue: layout.bitmap))
      #expect((got ?? 0) == expected, "\(layout) mask \(hex(mask))")
    }
  }

  @Test("blocks for sizes the layout does not allow follow the kernel's walk")
  func invalidSizeWalk() throws {
    // Runs end mid-page: the walk consumes across runs, as __rdma_block_iter_next.
    let list = try PhyrList([
      Phyr(address: 0x10_0000, length: 0x1800), Phyr(address: 0x20_0000, length: 0x1800),
    ])
    let blocks = Array(try list.blocks(pageSize: 0x1000, iova: 0))
    #expect(blocks == [0x10_0000, 0x10_1000, 0x20_0000])
    #expect(try list.blockCount(pageSize: 0x1000, iova: 0) == 3)
  }

  @Test("the planner's any-IOVA choice is never beaten by another IOVA")
  func planner() throws {
    var g = SplitMix64(seed: 0x1070_0001)
    for _ in 0..<5_000 {
      let layout = Layout.random(&g)
      let list = try PhyrList(layout.phyrs)
      let bitmap = PageSizes(rawValue: layout.bitmap)
      let plan = list.planIOVA(.any, pageSizes: bitmap)
      let pa0 = layout.phyrs[0].address
      #expect(plan.iova % 4096 == pa0 % 4096, "\(layout)")
      #expect(plan.iova < Swift.max(plan.pageSize ?? 0, 4096), "\(layout) \(plan)")
      #expect(
        plan.pageSize.map {
          Reference.bestPageSize(layout.phyrs, iova: plan.iova, bitmap: layout.bitmap) == $0
        } ?? true)
      // Candidates: the VA-like IOVA from the layout (with the page offset
      // fixed up), zero, the physical address, and random ones.
      var candidates = [layout.iova & ~4095 | pa0 % 4096, pa0 % 4096, pa0]
      for _ in 0..<8 { candidates.append(g.below(1 << 48) & ~4095 | pa0 % 4096) }
      for iova in candidates {
        let other = Reference.bestPageSize(layout.phyrs, iova: iova, bitmap: layout.bitmap)
        guard other != 0 else { continue }
        #expect(plan.pageSize != nil, "\(layout) iova \(hex(iova))")
        guard let size = plan.pageSize else { break }
        let otherBlocks = Reference.blockCount(length: layout.length, iova: iova, size: other)
        #expect(plan.blockCount <= otherBlocks, "\(layout) plan \(plan) vs \(hex(iova))")
        #expect(size >= other || plan.blockCount == 1, "\(layout) plan \(plan) vs \(hex(iova))")
      }
    }
  }
}

@Suite("Huge lengths and blocks of 4 GiB and more")
struct HugeTests {
  @Test("2^50-byte runs with 1 TiB pages")
  func tebibytePages() throws {
    let tib: UInt64 = 1 << 40
    let list = try PhyrList([
      Phyr(address: 7 * tib, length: 512 * tib), Phyr(address: 1024 * tib, length: 512 * tib),
    ])
    #expect(list.totalLength == 1 << 50)
    let bitmap = PageSizes(rawValue: 0x4020_1000 | tib)
    #expect(list.bestPageSize(iova: 0, pageSizes: bitmap) == tib)
    let blocks = try list.blocks(pageSize: tib, iova: 0)
    #expect(blocks.count == 1024)
    var expected: [UInt64] = (0..<512).map { (7 + $0) * tib }
    expected += (0..<512).map { (1024 + $0) * tib }
    #expect(Array(blocks) == expected)
  }

  @Test("4 GiB, 8 GiB and 16 GiB blocks advance by the full size")
  func bigBlocks() throws {
    for shift in [32, 33, 34] as [UInt64] {
      let size: UInt64 = 1 << shift
      // An unaligned start inside the first page and an unaligned end.
      let list = try PhyrList([
        Phyr(address: 3 * size + 0x1000, length: 3 * size - 0x1000),
        Phyr(address: 40 * size, length: size + 5),
      ])
      let pages = PageSizes(rawValue: size | 0x1000)
      let iova = 0x1000 + 64 * size
      #expect(list.bestPageSize(iova: iova, pageSizes: pages) == size)
      let blocks = Array(try list.blocks(pageSize: size, iova: iova))
      #expect(blocks == [3 * size, 4 * size, 5 * size, 40 * size, 41 * size])
      #expect(try list.blockCount(pageSize: size, iova: iova) == 5)
    }
  }

  @Test("block counts above 2^32 are exact")
  func manyBlocks() throws {
    let list = try PhyrList([Phyr(address: 0, length: 1 << 50)])
    #expect(try list.blockCount(pageSize: 4096, iova: 0x800) == (1 << 38) + 1)
    var it = try list.blocks(pageSize: 4096, iova: 0).makeIterator()
    #expect(it.next() == 0)
    #expect(it.next() == 4096)
  }

  @Test("a 2^63 page size")
  func topBit() throws {
    let list = try PhyrList([Phyr(address: 0, length: 1 << 62)])
    #expect(list.bestPageSize(iova: 0, pageSizes: .init(rawValue: 1 << 63)) == 1 << 63)
    #expect(Array(try list.blocks(pageSize: 1 << 63, iova: 0)) == [0])
  }
}
