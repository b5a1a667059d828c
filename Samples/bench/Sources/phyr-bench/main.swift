// phyr-bench: the Phyr module against plain C loops, in one process.
// Run through ../run-phyr-bench, which builds the C side with cc -O2.
import CPhyrRef
import Phyr

let quick = CommandLine.arguments.contains("--quick")
let repeats = quick ? 3 : 11
/// `--only best|blocks|append|memory` runs one section (for profiling).
let only: String? = CommandLine.arguments.firstIndex(of: "--only").flatMap {
  $0 + 1 < CommandLine.arguments.count ? CommandLine.arguments[$0 + 1] : nil
}
func wanted(_ section: String) -> Bool { only == nil || only == section }

/// SplitMix64, so every layout is the same from run to run.
struct SplitMix64 {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
  mutating func below(_ n: UInt64) -> UInt64 { next() % n }
}

/// The fastest of `repeats` runs of `body`, in nanoseconds; the results are
/// folded into `sink` so no run can be optimised away.
var sink: UInt64 = 0
@MainActor func fastest(_ body: () -> UInt64) -> Double {
  let clock = ContinuousClock()
  var best = Double.infinity
  for _ in 0..<repeats {
    let start = clock.now
    sink &+= body()
    let elapsed = clock.now - start
    let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
    best = min(best, ns)
  }
  return best
}

func pad(_ s: String, _ width: Int) -> String {
  s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}
func fmt(_ x: Double, _ digits: Int = 2) -> String {
  var scale = 1
  for _ in 0..<digits { scale *= 10 }
  let fixed = Int(x * Double(scale) + 0.5)
  let fraction = String(fixed % scale)
  return "\(fixed / scale)." + String(repeating: "0", count: digits - fraction.count) + fraction
}

/// Scattered runs of 1...maxPages 4 KiB pages until `pages` pages or `runs`
/// runs are laid.
func scatteredRuns(
  pages: UInt64 = .max, runs: Int = .max, maxPages: UInt64, seed: UInt64
) -> PhyrList {
  var g = SplitMix64(state: seed)
  var list = PhyrList()
  var laid: UInt64 = 0
  var frame: UInt64 = 0x10_0000
  while laid < pages && list.count < runs {
    let n = min(1 + g.below(maxPages), pages - laid)
    frame += 1 + g.below(64)  // a gap of at least one page: runs stay separate
    try! list.append(address: frame << 12, length: n << 12)
    frame += n
    laid += n
  }
  return list
}

func flat(_ list: PhyrList) -> [phyr_ref_range] {
  var out: [phyr_ref_range] = []
  out.reserveCapacity(list.count)
  for run in list { out.append(phyr_ref_range(addr: run.address, len: run.length)) }
  return out
}

var rows: [[String]] = []
@MainActor func row(_ cells: String...) { rows.append(cells) }
@MainActor func printRows(_ title: String) {
  print("\n" + title)
  let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max()! }
  for r in rows {
    print(
      zip(r, widths).enumerated().map { i, p in
        i == 0 ? p.0 + String(repeating: " ", count: p.1 - p.0.count) : pad(p.0, p.1)
      }.joined(separator: "  "))
  }
  rows = []
}

// MARK: Best page size over 1,000,000 runs

if wanted("best") {
  let list = scatteredRuns(runs: 1_000_000, maxPages: 8, seed: 1)
  let runs = flat(list)
  let iova: UInt64 = 0x7f00_0000_0000 | (list.firstAddress! & 0xfff)
  let bitmap = PageSizes.mlx5
  let n = Double(list.count)
  var swiftAnswer: UInt64 = 0
  var cAnswer: UInt64 = 0
  let allocsBefore = phyr_ref_alloc_count()
  let swiftNs = fastest {
    swiftAnswer = list.bestPageSize(iova: iova, pageSizes: bitmap) ?? 0
    return swiftAnswer
  }
  let swiftAllocs = phyr_ref_alloc_count() - allocsBefore
  let cNs = fastest {
    cAnswer = phyr_ref_best_pgsz(runs, runs.count, list.totalLength, iova, bitmap.rawValue)
    return cAnswer
  }
  precondition(swiftAnswer == cAnswer, "Swift and C disagree")
  row("best page size", "runs", "Swift ns/run", "C ns/run", "Swift/C", "allocs in loop")
  row(
    "ib_umem_find_best_pgsz", "\(list.count)", fmt(swiftNs / n), fmt(cNs / n),
    fmt(swiftNs / cNs), "\(swiftAllocs)")
  printRows("Best page size (answer \(PageSizes.describe(swiftAnswer)))")
}

// MARK: Block iteration over 2^24 blocks

if wanted("blocks") {
  row(
    "block iteration (4K)", "runs", "blocks", "Swift ns/blk", "C ns/blk", "Swift/C", "Swift ms/run",
    "allocs in loop")
  let layouts: [(String, PhyrList)] = [
    ("runs of 1..16 pages", scatteredRuns(pages: 1 << 24, maxPages: 16, seed: 2)),
    ("one 64 GiB run", try! PhyrList([Phyr(address: 1 << 40, length: 1 << 36)])),
  ]
  for (name, list) in layouts {
    let runs = flat(list)
    let blocks = try! list.blocks(pageSize: 4096, iova: list.firstAddress!)
    let count = blocks.count
    var swiftSum: UInt64 = 0
    var cSum: UInt64 = 0
    let allocsBefore = phyr_ref_alloc_count()
    let swiftNs = fastest {
      var sum: UInt64 = 0
      for b in blocks { sum &+= b }
      swiftSum = sum
      return sum
    }
    let swiftAllocs = phyr_ref_alloc_count() - allocsBefore
    let cNs = fastest {
      cSum = phyr_ref_block_sum(runs, runs.count, 4096, count)
      return cSum
    }
    precondition(swiftSum == cSum, "Swift and C disagree")
    let n = Double(count)
    row(
      name, "\(list.count)", "\(count)", fmt(swiftNs / n), fmt(cNs / n), fmt(swiftNs / cNs),
      fmt(swiftNs / 1e6, 1), "\(swiftAllocs)")
  }
  printRows("Block iteration (rdma_umem_for_each_dma_block)")
}

// MARK: Building a list from 2^20 single-page appends

if wanted("append") {
  // Realistic coalescing: the buddy allocator and THP hand out runs of
  // consecutive frames; here 90% of pages follow the previous one.
  var g = SplitMix64(state: 3)
  var frames: [UInt64] = []
  var frame: UInt64 = 0x10_0000
  for _ in 0..<(1 << 20) {
    frame = g.below(10) == 0 ? 0x10_0000 + g.below(1 << 36) : frame + 1
    frames.append(frame << 12)
  }
  var swiftRuns = 0
  var allocs: UInt64 = 0
  let swiftNs = fastest {
    let before = phyr_ref_alloc_count()
    var list = PhyrList()
    for address in frames { try! list.append(address: address, length: 4096) }
    allocs = phyr_ref_alloc_count() - before
    swiftRuns = list.count
    return UInt64(list.count)
  }
  var cRuns = 0
  let cNs = fastest {
    cRuns = phyr_ref_build(frames, frames.count, 4096)
    return UInt64(cRuns)
  }
  precondition(swiftRuns == cRuns, "Swift and C disagree")
  let n = Double(frames.count)
  row("appends", "runs", "Swift ns/append", "C ns/append", "Swift/C", "Swift allocs")
  row(
    "\(frames.count) pages", "\(swiftRuns)", fmt(swiftNs / n), fmt(cNs / n), fmt(swiftNs / cNs),
    "\(allocs)")
  printRows("Building a PhyrList (C: doubling {u64,u64} array)")
}

// MARK: Bytes per run

if wanted("memory") {
  var g = SplitMix64(state: 4)
  func layout(_ runs: Int, _ next: (inout SplitMix64) -> (UInt64, UInt64)) -> PhyrList {
    var list = PhyrList()
    var cursor: UInt64 = 1 << 32
    for _ in 0..<runs {
      let (align, length) = next(&g)
      // Skip ahead by a random gap, then align: runs never touch.
      cursor = (cursor + align + g.below(1 << 30)) & ~(align - 1)
      try! list.append(address: cursor, length: length)
      cursor += length
    }
    return list
  }
  let layouts: [(String, PhyrList)] = [
    ("all 4K pages", layout(100_000) { _ in (4096, 4096) }),
    ("all 2M pages", layout(100_000) { _ in (1 << 21, 1 << 21) }),
    ("1G pages", layout(10_000) { _ in (1 << 30, 1 << 30) }),
    (
      "mixed 4K/2M/1..64 pages",
      layout(100_000) { g in
        switch g.below(10) {
        case 0..<4: return (4096, 4096)
        case 4..<7: return (1 << 21, 1 << 21)
        default: return (4096, (2 + g.below(63)) << 12)
        }
      }
    ),
  ]
  row("layout", "runs", "plain B/run", "dense B/run", "{u64,u64}", "scatterlist", "dense words")
  for (name, list) in layouts {
    let dense = DensePhyrList(list)
    precondition(dense.phyrList == list, "dense round trip failed")
    let n = Double(list.count)
    row(
      name, "\(list.count)", fmt(Double(list.allocatedByteCount) / n),
      fmt(Double(dense.byteCount) / n), "16", "32", "\(dense.words.count)")
  }
  printRows("Memory per run (plain = PhyrList as allocated; dense = DensePhyrList payload)")
}

print(
  "\n(sink \(sink & 0xff); best of \(repeats) runs each; allocs counted by the C malloc wrapper)")
