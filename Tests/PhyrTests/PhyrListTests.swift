import Testing

@testable import Phyr

@Suite("PhyrList")
struct PhyrListTests {
  @Test("append coalesces adjacent ranges and keeps the summary")
  func coalescing() throws {
    var list = PhyrList()
    #expect(list.isEmpty && list.firstAddress == nil && list.largestRunLength == 0)
    try list.append(address: 0x1800, length: 0x800)
    try list.append(address: 0x2000, length: 0x1000)
    try list.append(address: 0x9000, length: 0x1000)
    try list.append(address: 0x5000, length: 0x3000)
    try list.append(address: 0x8000, length: 0x1000)
    #expect(
      Array(list) == [
        Phyr(address: 0x1800, length: 0x1800), Phyr(address: 0x9000, length: 0x1000),
        Phyr(address: 0x5000, length: 0x4000),
      ])
    #expect(list.count == 3)
    #expect(list.totalLength == 0x6800)
    #expect(list.firstAddress == 0x1800)
    #expect(list.largestRunLength == 0x4000)
    #expect(list[2] == Phyr(address: 0x5000, length: 0x4000))
    #expect(list._checkInvariants())
  }

  @Test("invalid ranges are thrown, and leave the list unchanged")
  func errors() throws {
    var list = try PhyrList([Phyr(address: 0x1000, length: 0x1000)])
    let before = list
    #expect(throws: PhyrError.zeroLength(Phyr(address: 0x2000, length: 0))) {
      try list.append(address: 0x2000, length: 0)
    }
    #expect(throws: PhyrError.rangeOverflow(Phyr(address: UInt64.max, length: 2))) {
      try list.append(address: UInt64.max, length: 2)
    }
    // A refused append leaves the list as it was.
    #expect(list == before)
    try list.append(address: 0, length: UInt64.max - 0x1000)
    let full = list
    #expect(throws: PhyrError.totalLengthOverflow) {
      try list.append(address: 0x10_0000, length: 0x1001)
    }
    #expect(list == full)
    #expect(list.count == 2)
    #expect(list.totalLength == UInt64.max)
  }

  @Test("millions of runs spread over chunks; indexing and iteration agree")
  func chunks() throws {
    var list = PhyrList()
    let n = 3 * PhyrList.chunkCapacity + 17
    for i in 0..<n {
      // Every other page, so nothing coalesces, plus one adjacent append.
      try list.append(address: UInt64(i) * 0x2000, length: 0x1000)
      if i == 5 { try list.append(address: 5 * 0x2000 + 0x1000, length: 0x10) }
    }
    #expect(list.count == n)
    #expect(list.chunks.count == 4 && list.chunks[3].count == 16)
    #expect(list._checkInvariants())
    var i = 0
    for run in list {
      #expect(run == list[i])
      i += 1
    }
    #expect(i == n)
    #expect(list[n - 1].address == UInt64(n - 1) * 0x2000)
    #expect(list.largestRunLength == 0x1010)
  }

  @Test("equal contents are equal lists and hash alike")
  func hashable() throws {
    let a = try PhyrList([Phyr(address: 0x1000, length: 0x1000), Phyr(address: 0x2000, length: 1)])
    let b = try PhyrList([Phyr(address: 0x1000, length: 0x1001)])
    #expect(a == b)
    #expect(a.hashValue == b.hashValue)
    #expect(a.description == "[0x1000:0x1001]")
  }
}

@Suite("PageSizes")
struct PageSizesTests {
  @Test(
    "descriptions",
    arguments: [
      (0xffff_f000, "4K..2G"), (0x4020_1000, "4K|2M|1G"), (0x1000, "4K"), (0, "none"),
      (0x3000, "4K|8K"), (0x20_0000, "2M"), (0x8000_0000_0000_0001, "1B|8E"),
      (0x1c_0000_0000_0000, "1P..4P"), (0xf000 | 0x20_0000, "4K..32K|2M"),
    ] as [(UInt64, String)])
  func describe(bits: UInt64, text: String) {
    #expect(PageSizes(pageSizeCap: bits).description == text)
  }

  @Test("set operations, extremes, single sizes")
  func operations() throws {
    let mlx5 = PageSizes.mlx5
    let huge: PageSizes = [.size4K, .size2M, .size1G]
    #expect(huge.rawValue == 0x4020_1000)
    #expect(mlx5.intersection(huge) == huge)
    #expect(mlx5.subtracting(huge).supports(0x2000))
    #expect(!mlx5.subtracting(huge).supports(0x1000))
    #expect(mlx5.smallest == 0x1000 && mlx5.largest == 0x8000_0000)
    #expect(PageSizes().smallest == nil && PageSizes().largest == nil)
    #expect(huge.atMost(0x30_0000) == [.size4K, .size2M])
    #expect(huge.sizes == [0x1000, 0x20_0000, 0x4000_0000])
    #expect(try PageSizes(size: 0x20_0000) == .size2M)
    #expect(throws: PhyrError.invalidPageSize(0x3000)) { try PageSizes(size: 0x3000) }
    #expect(PageSizes.describe(0x20_0000) == "2M" && PageSizes.describe(0x3000) == "0x3000")
    #expect(!mlx5.supports(0))
  }
}

@Suite("Page offset variant, DMA offset, DMA list")
struct OffsetAndDMATests {
  @Test("ib_umem_find_best_pgoff: offsets the field can hold pass, others cap or zero")
  func pageOffset() throws {
    // 64-byte aligned offset 0x840 inside a 2 MiB-aligned physical buffer.
    let list = try PhyrList([Phyr(address: 0x1_4000_0840, length: 0x20_0000 - 0x840)])
    #expect(list.bestPageSize(pageOffsetMask: 0xfc0, pageSizes: .mlx5) == 0x20_0000)
    // An offset the field cannot hold (not 64-byte aligned) leaves no size.
    let odd = try PhyrList([Phyr(address: 0x1_4000_0844, length: 0x1000)])
    #expect(odd.bestPageSize(pageOffsetMask: 0xfc0, pageSizes: .mlx5) == nil)
    // A set bit above the mask (bit 12) caps the page at 4K.
    let high = try PhyrList([Phyr(address: 0x1_4000_1840, length: 0x800)])
    #expect(high.bestPageSize(pageOffsetMask: 0xfc0, pageSizes: .mlx5) == 0x1000)
    #expect(try high.dmaOffset(pageSize: 0x1000) == 0x840)
    #expect(PhyrList().bestPageSize(pageOffsetMask: 0xfc0, pageSizes: .mlx5) == nil)
  }

  @Test("invalid page sizes and empty lists are errors")
  func blockErrors() throws {
    let list = try PhyrList([Phyr(address: 0x1000, length: 0x1000)])
    #expect(throws: PhyrError.invalidPageSize(0)) { try list.blocks(pageSize: 0, iova: 0) }
    #expect(throws: PhyrError.invalidPageSize(0x1800)) { try list.dmaOffset(pageSize: 0x1800) }
    #expect(throws: PhyrError.emptyList) { try PhyrList().dmaOffset(pageSize: 0x1000) }
    #expect(throws: PhyrError.emptyList) { try PageSizes.mlx5.bestPageSize(for: [], iova: 0) }
    #expect(throws: PhyrError.zeroLength(Phyr(address: 0, length: 0))) {
      try PageSizes.mlx5.bestPageSize(for: [Phyr(address: 0, length: 0)], iova: 0)
    }
    #expect(try PhyrList().blockCount(pageSize: 0x1000, iova: 0) == 0)
    #expect(Array(try PhyrList().blocks(pageSize: 0x1000, iova: 0)).isEmpty)
    #expect(PhyrList().bestPageSize(iova: 0, pageSizes: .mlx5) == nil)
    #expect(PhyrError.emptyList.description.contains("empty"))
  }

  @Test("pass-through reuses the list; a linear IOMMU mapping gives one range")
  func dmaList() throws {
    let list = try PhyrList([
      Phyr(address: 0x1_0000_0800, length: 0x800), Phyr(address: 0x2_0000_0000, length: 0x2000),
      Phyr(address: 0x3_0000_0000, length: 0x10),
    ])
    let direct = try list.dmaMapped(.passThrough)
    #expect(direct.runs == list)
    #expect(direct.runs.chunks.count == list.chunks.count)
    let mapped = try list.dmaMapped(.linear(base: 0x8000_0000))
    #expect(Array(mapped.runs) == [Phyr(address: 0x8000_0800, length: 0x2810)])
    #expect(mapped.runs.bestPageSize(iova: 0x800, pageSizes: .mlx5) == 0x4000)
    #expect(throws: DMAMappingError.badWindow(base: 0x8000_0800, granule: 0x1000)) {
      try list.dmaMapped(.linear(base: 0x8000_0800))
    }
    let ragged = try PhyrList([
      Phyr(address: 0x1000, length: 0x800), Phyr(address: 0x9000, length: 0x1000),
    ])
    #expect(throws: DMAMappingError.unalignedRun(run: 0)) {
      try ragged.dmaMapped(.linear(base: 0))
    }
    #expect(throws: DMAMappingError.empty) { try PhyrList().dmaMapped(.linear(base: 0)) }
  }

  @Test("IOVA plans explain their limit")
  func planLimits() throws {
    // Two 2M pages, second at a 2M-only boundary: zero-based and any reach 2M.
    let list = try PhyrList([
      Phyr(address: 0x1_4000_0000, length: 0x20_0000),
      Phyr(address: 0x1_8000_0000, length: 0x20_0000),
    ])
    let keep = list.planIOVA(.keep(0x7f00_0000_0000), pageSizes: .mlx5)
    #expect(keep.pageSize == 0x20_0000 && keep.blockCount == 2)
    #expect(keep.limit == .runBoundary(run: 1, alignment: 0x20_0000))
    let any = list.planIOVA(.any, pageSizes: .mlx5)
    #expect(any.pageSize == 0x20_0000 && any.blockCount == 2 && any.iova == 0)
    // A 4K-aligned VA splits the huge pages: 4K pages, 1024 blocks.
    let bad = list.planIOVA(.keep(0x7f00_0000_1000), pageSizes: .mlx5)
    #expect(bad.pageSize == 0x1000 && bad.blockCount == 1024)
    #expect(bad.limit == .pageOffset(alignment: 0x1000))
    // One run, smaller than the largest page: the length caps it.
    let one = try PhyrList([Phyr(address: 0x1_4000_0000, length: 0x3000)])
    let cap = one.planIOVA(.any, pageSizes: .mlx5)
    #expect(
      cap.pageSize == 0x4000 && cap.blockCount == 1 && cap.limit == .lengthCap(window: 0x4000))
    #expect(cap.description.contains("fits in one 16K page"))
    #expect(cap.iova == 0)
    // V10's layout: the planner finds the kernel's 16K page at IOVA 0x1000.
    let v10 = try PhyrList([Phyr(address: 0x1_4000_1000, length: 0x3000)])
    let v10Plan = v10.planIOVA(.any, pageSizes: .mlx5)
    #expect(v10Plan.iova == 0x1000 && v10Plan.pageSize == 0x4000 && v10Plan.blockCount == 1)
    let all = try PhyrList([Phyr(address: 0, length: 0x1_0000_0000)])
    #expect(all.planIOVA(.zeroBased, pageSizes: .mlx5).limit == .largestSupported)
    #expect(PhyrList().planIOVA(.any, pageSizes: .mlx5).limit == .empty)
    #expect(one.planIOVA(.keep(UInt64.max), pageSizes: .mlx5).limit == .iovaOverflow)
  }
}
