import PlannerReference
import Testing

@testable import Phyr

/// Section 7 of the spec, row by row.
struct Vector: CustomTestStringConvertible, Sendable {
  let id: String
  let address: UInt64
  let length: UInt64
  let iova: UInt64
  let bitmap: UInt64
  let phyrs: [Phyr]
  let pageSize: UInt64
  let blocks: UInt64
  let firstBlock: UInt64?
  let lastBlock: UInt64?
  var testDescription: String { id }
}

private func p(_ a: UInt64, _ l: UInt64) -> Phyr { Phyr(address: a, length: l) }

let vectors: [Vector] = [
  Vector(
    id: "V01", address: 0x7f00_0000_1000, length: 0x1000, iova: 0x7f00_0000_1000,
    bitmap: 0xffff_f000, phyrs: [p(0x1_0000_0000, 0x1000)], pageSize: 0x1000, blocks: 1,
    firstBlock: 0x1_0000_0000, lastBlock: 0x1_0000_0000),
  Vector(
    id: "V02", address: 0x7f00_0000_1000, length: 0x1000, iova: 0x7f00_0000_1000,
    bitmap: 0x1000, phyrs: [p(0x1_0000_0000, 0x1000)], pageSize: 0x1000, blocks: 1,
    firstBlock: 0x1_0000_0000, lastBlock: 0x1_0000_0000),
  Vector(
    id: "V03", address: 0x7f00_0000_1100, length: 0x100, iova: 0x7f00_0000_1100,
    bitmap: 0xffff_f000, phyrs: [p(0x1_0000_0100, 0x100)], pageSize: 0x1000, blocks: 1,
    firstBlock: 0x1_0000_0000, lastBlock: 0x1_0000_0000),
  Vector(
    id: "V04", address: 0x7f00_0000_1800, length: 0x1000, iova: 0x7f00_0000_1800,
    bitmap: 0xffff_f000, phyrs: [p(0x1_0000_0800, 0x1000)], pageSize: 0x1000, blocks: 2,
    firstBlock: 0x1_0000_0000, lastBlock: 0x1_0000_1000),
  Vector(
    id: "V06", address: 0x7f00_0020_0000, length: 0x20_0000, iova: 0x7f00_0020_0000,
    bitmap: 0xffff_f000, phyrs: [p(0x1_4000_0000, 0x20_0000)], pageSize: 0x20_0000, blocks: 1,
    firstBlock: 0x1_4000_0000, lastBlock: 0x1_4000_0000),
  Vector(
    id: "V07", address: 0x7f00_0020_0000, length: 0x40_0000, iova: 0x7f00_0020_0000,
    bitmap: 0xffff_f000, phyrs: [p(0x1_4000_0000, 0x20_0000), p(0x1_8000_0000, 0x20_0000)],
    pageSize: 0x20_0000, blocks: 2, firstBlock: 0x1_4000_0000, lastBlock: 0x1_8000_0000),
  Vector(
    id: "V08", address: 0x7f00_0040_0000, length: 0x40_0000, iova: 0x7f00_0040_0000,
    bitmap: 0xffff_f000, phyrs: [p(0x1_4000_0000, 0x40_0000)], pageSize: 0x40_0000, blocks: 1,
    firstBlock: 0x1_4000_0000, lastBlock: 0x1_4000_0000),
  Vector(
    id: "V10", address: 0x7f00_0020_1000, length: 0x3000, iova: 0x1000,
    bitmap: 0xffff_f000, phyrs: [p(0x1_4000_1000, 0x3000)], pageSize: 0x4000, blocks: 1,
    firstBlock: 0x1_4000_0000, lastBlock: 0x1_4000_0000),
  Vector(
    id: "V11", address: 0x7f00_0020_0000, length: 0x20_0000, iova: 0,
    bitmap: 0xffff_f000, phyrs: [p(0x1_4000_0000, 0x20_0000)], pageSize: 0x20_0000, blocks: 1,
    firstBlock: 0x1_4000_0000, lastBlock: 0x1_4000_0000),
  Vector(
    id: "V13", address: 0x7f00_0000_0000, length: 0x4000, iova: 0x7f00_0000_0000,
    bitmap: 0xffff_f000, phyrs: [p(0x1_0000_0000, 0x2000), p(0x2_0000_0000, 0x2000)],
    pageSize: 0x2000, blocks: 2, firstBlock: 0x1_0000_0000, lastBlock: 0x2_0000_0000),
  Vector(
    id: "V14", address: 0x7f00_0000_0000, length: 0x4000, iova: 0x7f00_0000_0000,
    bitmap: 0xffff_f000, phyrs: [p(0x1_0000_0000, 0x3000), p(0x2_0000_0000, 0x1000)],
    pageSize: 0x1000, blocks: 4, firstBlock: 0x1_0000_0000, lastBlock: 0x2_0000_0000),
  Vector(
    id: "V15", address: 0x7f00_0020_0000, length: 0x20_0000, iova: 0x7f00_0020_0000,
    bitmap: 0x1000, phyrs: [p(0x1_4000_0000, 0x20_0000)], pageSize: 0x1000, blocks: 512,
    firstBlock: 0x1_4000_0000, lastBlock: 0x1_401f_f000),
  Vector(
    id: "V16", address: 0x7f00_0020_0000, length: 0x20_0000, iova: 0x7f00_0020_0000,
    bitmap: 0x20_0000, phyrs: [p(0x1_4000_0000, 0x20_0000)], pageSize: 0x20_0000, blocks: 1,
    firstBlock: 0x1_4000_0000, lastBlock: 0x1_4000_0000),
  Vector(
    id: "V17", address: 0x7f00_0000_0000, length: 0x4000, iova: 0x7f00_0000_0000,
    bitmap: 0x20_0000, phyrs: [p(0x1_0000_0000, 0x3000), p(0x2_0000_0000, 0x1000)],
    pageSize: 0, blocks: 0, firstBlock: nil, lastBlock: nil),
  Vector(
    id: "V18", address: 0x7f00_0000_0000, length: 0x2000, iova: 0x7f00_0000_0000,
    bitmap: 0xffff_f000, phyrs: [p(0x1_0000_0000, 0x1000), p(0x1_0000_1000, 0x1000)],
    pageSize: 0x2000, blocks: 1, firstBlock: 0x1_0000_0000, lastBlock: 0x1_0000_0000),
  Vector(
    id: "V23", address: 0x7f00_0000_1000, length: 0x1000, iova: 0x7f00_0000_1000,
    bitmap: 0, phyrs: [p(0x1_0000_0000, 0x1000)], pageSize: 0, blocks: 0,
    firstBlock: nil, lastBlock: nil),
  Vector(
    id: "V24", address: 0x7f00_4000_0000, length: 0x4000_0000, iova: 0x7f00_4000_0000,
    bitmap: 0x4020_1000, phyrs: [p(0x1_c000_0000, 0x4000_0000)], pageSize: 0x4000_0000,
    blocks: 1, firstBlock: 0x1_c000_0000, lastBlock: 0x1_c000_0000),
]

@Suite("Spec section 7 vectors")
struct VectorTests {
  @Test("best page size, blocks, first and last block", arguments: vectors)
  func vector(_ v: Vector) throws {
    // The vector is self-consistent: lengths add up, offsets agree.
    #expect(v.phyrs.reduce(0) { $0 + $1.length } == v.length)
    #expect(v.address % 4096 == v.phyrs[0].address % 4096)

    let list = try PhyrList(v.phyrs)
    let bitmap = PageSizes(pageSizeCap: v.bitmap)
    let size = list.bestPageSize(iova: v.iova, pageSizes: bitmap)
    #expect((size ?? 0) == v.pageSize)
    // The generic form over the uncoalesced entries agrees (V18: split run).
    #expect(try bitmap.bestPageSize(for: v.phyrs, iova: v.iova) == size)
    // So does the brute-force model.
    #expect(Reference.bestPageSize(v.phyrs, iova: v.iova, bitmap: v.bitmap) == v.pageSize)

    guard let size else {
      #expect(v.blocks == 0 && v.firstBlock == nil)
      return
    }
    #expect(try list.blockCount(pageSize: size, iova: v.iova) == v.blocks)
    let blocks = Array(try list.blocks(pageSize: size, iova: v.iova))
    #expect(UInt64(blocks.count) == v.blocks)
    #expect(blocks.first == v.firstBlock)
    #expect(blocks.last == v.lastBlock)
    for (j, b) in blocks.enumerated() {
      #expect(b == Reference.block(v.phyrs, iova: v.iova, size: size, index: UInt64(j)))
    }
    #expect(try list.dmaOffset(pageSize: size) == v.iova % size)
    #expect(try list.dmaOffset(pageSize: size) == v.phyrs[0].address % size)
  }

  @Test("the keep-VA plan reproduces every vector")
  func plansMatch() throws {
    for v in vectors {
      let plan = try PhyrList(v.phyrs).planIOVA(.keep(v.iova), pageSizes: .init(rawValue: v.bitmap))
      #expect((plan.pageSize ?? 0) == v.pageSize, "\(v.id)")
      #expect(plan.blockCount == v.blocks, "\(v.id)")
    }
  }
}

@Suite("Spec section 2 consequences")
struct ConsequenceTests {
  @Test("a page larger than the VA alignment when VA and PA share more low bits")
  func largerThanVAAlignment() throws {
    // 4 MiB at a 2 MiB-aligned VA whose PA agrees to bit 30: 8 MiB page.
    let va: UInt64 = 0x7f00_0020_0000
    let pa: UInt64 = 0x1_0000_0000 | (va & ((1 << 30) - 1))
    let list = try PhyrList([Phyr(address: pa, length: 0x40_0000)])
    #expect(list.bestPageSize(iova: va, pageSizes: .mlx5) == 0x80_0000)
    #expect(try list.blockCount(pageSize: 0x80_0000, iova: va) == 1)
  }

  @Test("a buffer inside one small window gets the smallest covering size")
  func smallWindow() throws {
    // 4 KiB at page offset 0x800 straddles two 4K pages: one 8K page covers it.
    let list = try PhyrList([Phyr(address: 0x1_0000_0800, length: 0x1000)])
    #expect(list.bestPageSize(iova: 0x7f00_0000_0800, pageSizes: .mlx5) == 0x2000)
    // At an odd 4K frame the range crosses an 8K boundary: a 16K page.
    let odd = try PhyrList([Phyr(address: 0x1_0000_1800, length: 0x1000)])
    #expect(odd.bestPageSize(iova: 0x7f00_0000_1800, pageSizes: .mlx5) == 0x4000)
  }

  @Test("an IOVA whose page offset differs gives no size with a 4K-minimum bitmap")
  func offsetMismatch() throws {
    let list = try PhyrList([Phyr(address: 0x1_0000_0800, length: 0x1000)])
    #expect(list.bestPageSize(iova: 0x7f00_0000_0000, pageSizes: .mlx5) == nil)
    let plan = list.planIOVA(.keep(0x7f00_0000_0000), pageSizes: .mlx5)
    #expect(plan.limit == .pageOffset(alignment: 0x800))
  }

  @Test("iova + length - 1 overflowing gives no size; exactly reaching the top is fine")
  func overflowRule() throws {
    let list = try PhyrList([Phyr(address: 0x4000, length: 0x2000)])
    #expect(list.bestPageSize(iova: UInt64.max - 0x1000 + 1, pageSizes: .mlx5) == nil)
    #expect(list.bestPageSize(iova: UInt64.max - 0x2000 + 1, pageSizes: .mlx5) == 0x2000)
    #expect(throws: PhyrError.iovaOverflow(iova: UInt64.max - 0xfff, length: 0x2000)) {
      try list.blockCount(pageSize: 0x1000, iova: UInt64.max - 0xfff)
    }
    #expect(try list.blockCount(pageSize: 0x1000, iova: UInt64.max - 0x1fff) == 2)
  }

  @Test("physically contiguous neighbours are one run (v6.15 rule)")
  func contiguity() throws {
    // Three entries, the first two contiguous at a 4K-only boundary.
    let phyrs = [
      Phyr(address: 0x1_0000_0000, length: 0x1000), Phyr(address: 0x1_0000_1000, length: 0x1000),
    ]
    #expect(try PageSizes.mlx5.bestPageSize(for: phyrs, iova: 0x2000) == 0x2000)
    #expect(try PhyrList(phyrs).count == 1)
  }
}
