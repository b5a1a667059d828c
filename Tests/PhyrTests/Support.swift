import PlannerReference

@testable import Phyr

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator, so every
/// property-test failure reproduces from its seed.
struct SplitMix64: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
  mutating func below(_ n: UInt64) -> UInt64 { n == 0 ? 0 : next() % n }
  mutating func chance(_ percent: UInt64) -> Bool { below(100) < percent }
  mutating func pick<T>(_ xs: [T]) -> T { xs[Int(below(UInt64(xs.count)))] }
}

/// Random layouts: scattered pages, huge-page runs, byte-granular runs, and
/// a few giant runs (up to 2^50 bytes).
struct Layout: CustomStringConvertible {
  var phyrs: [Phyr]
  var iova: UInt64
  var bitmap: UInt64
  var length: UInt64 { phyrs.reduce(0) { $0 + $1.length } }
  var description: String {
    "phyrs \(phyrs) iova \(hex(iova)) bitmap \(hex(bitmap))"
  }

  static func random(_ g: inout SplitMix64) -> Layout {
    let style = g.below(5)
    let unitShift: UInt64
    switch style {
    case 0: unitShift = 12
    case 1: unitShift = g.pick([21, 21, 30, 16, 32, 34])
    case 2: unitShift = g.below(13)
    case 3: unitShift = g.pick([30, 34, 40])
    default: unitShift = 12 + g.below(20)
    }
    let unit: UInt64 = 1 << unitShift
    let runCount = style == 3 ? 1 + g.below(4) : 1 + g.below(24)
    let maxUnits: UInt64 = style == 3 ? (1 << (50 - unitShift)) : 16
    var phyrs: [Phyr] = []
    var address = (g.below(1 << (52 - unitShift)) + 1) * unit
    for i in 0..<runCount {
      var len = (1 + g.below(maxUnits)) * unit
      if i == 0 && g.chance(60) {
        // First run starts mid-unit (any byte, or 4K-aligned).
        let cut = g.chance(50) ? g.below(unit) : g.below(unit >> 12) << 12
        address += cut
        len = len > cut ? len - cut : 1 + g.below(unit)
      }
      if i == runCount - 1 && g.chance(60) { len = 1 + g.below(len) }
      phyrs.append(Phyr(address: address, length: len))
      // Next run: adjacent (split entry) or a random aligned jump.
      if g.chance(20) {
        address += len
      } else {
        address = (g.below(1 << (52 - unitShift)) + 1) * unit
        if style == 4 && g.chance(30) { address += g.below(unit) & ~4095 }
      }
    }
    let pa0 = phyrs[0].address
    let iova: UInt64
    switch g.below(6) {
    case 0: iova = pa0
    case 1: iova = 0
    case 2: iova = g.below(1 << 47) & ~4095 | (pa0 & 4095)  // VA-like
    case 3:
      let k = 12 + g.below(30)
      iova = (g.below(1 << 47) << k) & ((1 << 47) - 1) | (pa0 & ((1 << k) - 1))
    case 4: iova = UInt64.max - g.below(1 << 52)  // near the top, may overflow
    default: iova = g.next()
    }
    let bitmap: UInt64
    switch g.below(7) {
    case 0: bitmap = 0xffff_f000
    case 1: bitmap = 0x4020_1000
    case 2: bitmap = g.next() & g.next()
    case 3:
      let lo = g.below(48)
      let hi = Swift.min(63, lo + g.below(24))
      bitmap = (UInt64.max >> (63 - hi)) & (UInt64.max << lo)
    case 4: bitmap = 1 << g.below(64)
    case 5: bitmap = 0x4020_1000 | (1 << 32) | (1 << 34) | (1 << 40)
    default: bitmap = g.chance(10) ? 0 : g.next()
    }
    return Layout(phyrs: phyrs, iova: iova, bitmap: bitmap)
  }
}
