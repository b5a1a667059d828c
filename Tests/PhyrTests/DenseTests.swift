import Testing

@testable import Phyr

@Suite("Dense encoding")
struct DenseTests {
  @Test("runs split into aligned chunks; more than two chunks are stored wide")
  func split() throws {
    // Pages 4..11 are 4-7, 8-11: two compact words.
    let two = try PhyrList([Phyr(address: 4 << 12, length: 8 << 12)])
    let dense = DensePhyrList(two)
    #expect(dense.words.map { UInt64($0.trailingZeroBitCount) } == [2, 2])
    #expect(dense.phyrList == two)
    // Wilcox's pages 3..10 would be 3, 4-7, 8-9, 10: four words, so wide.
    let four = try PhyrList([Phyr(address: 3 << 12, length: 8 << 12)])
    let wide = DensePhyrList(four)
    #expect(wide.words == [1 << 63 | 8 << 12, 3 << 12])
    #expect(wide.phyrList == four)
  }

  @Test("byte-exact first and last runs, wide and huge entries round-trip")
  func edges() throws {
    let lists: [[Phyr]] = [
      [Phyr(address: 0x1_0000_0100, length: 0x100)],
      [Phyr(address: 0x1_0000_0800, length: 0x1800), Phyr(address: 0x2_0000_0000, length: 0x123)],
      [Phyr(address: 0x1_0000_0800, length: 0x1000), Phyr(address: 0x2_0000_0000, length: 0x1000)],
      [
        Phyr(address: 0x1000, length: 0x1000), Phyr(address: 0x5555, length: 0x10),
        Phyr(address: 0x9000, length: 0x2000),
      ],
      [Phyr(address: 0, length: 1 << 62), Phyr(address: 1 << 63, length: 0x10)],
      [Phyr(address: 0x1000, length: UInt64.max - 0x1000)],
    ]
    for phyrs in lists {
      let list = try PhyrList(phyrs)
      let dense = DensePhyrList(list)
      #expect(dense.phyrList == list, "\(phyrs)")
      #expect(Array(dense) == Array(list))
      #expect(dense.totalLength == list.totalLength && dense.runCount == list.count)
    }
  }

  @Test("random layouts round-trip exactly", arguments: [7, 8] as [UInt64])
  func roundTrip(seed: UInt64) throws {
    var g = SplitMix64(seed: 0xde45_e000 + seed)
    for _ in 0..<3_000 {
      let list = try PhyrList(Layout.random(&g).phyrs)
      let dense = DensePhyrList(list)
      #expect(dense.phyrList == list, "\(list)")
    }
  }

  @Test("8 bytes per run for aligned pages of one size")
  func bytesPerRun() throws {
    for size in [0x1000, 0x20_0000, 0x4000_0000] as [UInt64] {
      var list = PhyrList()
      for i in 0..<1000 as Range<UInt64> {
        try list.append(address: (2 * i + 1) * size, length: size)
      }
      #expect(DensePhyrList(list).byteCount == 8 * list.count)
    }
  }

  @Test("never more than 16 bytes per run (24 only past 2^62 bytes)", arguments: [9] as [UInt64])
  func bounded(seed: UInt64) throws {
    var g = SplitMix64(seed: seed)
    for _ in 0..<2_000 {
      let list = try PhyrList(Layout.random(&g).phyrs)
      #expect(DensePhyrList(list).byteCount <= 16 * list.count)
    }
  }
}
