import Phyr

/// Brute-force models written from the definition, sharing no code
/// with the library: try every supported size, check each rule directly.
public enum Reference {
  /// Merges physically contiguous neighbours (unless `merging` is false, the
  /// rule before Linux 6.15); returns (address, length, offset in the MR)
  /// per run.
  public static func runs(_ phyrs: [Phyr], merging: Bool = true) -> [(
    pa: UInt64, len: UInt64, off: UInt64
  )] {
    var out: [(pa: UInt64, len: UInt64, off: UInt64)] = []
    var off: UInt64 = 0
    for p in phyrs {
      if merging, let last = out.last, last.pa + last.len == p.address {
        out[out.count - 1].len += p.length
      } else {
        out.append((p.address, p.length, off))
      }
      off += p.length
    }
    return out
  }

  /// Whether pages of `size` can map the layout at `iova`: first byte's
  /// address and IOVA agree modulo the size; every later run starts on a
  /// size boundary both physically and in IOVA space.
  public static func valid(
    _ runs: [(pa: UInt64, len: UInt64, off: UInt64)], iova: UInt64, size: UInt64
  )
    -> Bool
  {
    if runs[0].pa % size != iova % size { return false }
    for r in runs.dropFirst() {
      if r.pa % size != 0 { return false }
      if (iova &+ r.off) % size != 0 { return false }
    }
    return true
  }

  /// The best page size, 0 for none.
  public static func bestPageSize(
    _ phyrs: [Phyr], iova: UInt64, bitmap: UInt64, merging: Bool = true
  )
    -> UInt64
  {
    let runs = runs(phyrs, merging: merging)
    let length = phyrs.reduce(0) { $0 + $1.length }
    if iova > UInt64.max - (length - 1) { return 0 }
    let lastByte = iova + (length - 1)
    // Smallest aligned window holding [iova, lastByte]; the kernel's
    // bits_per(0) == 1 means it is never smaller than 2 bytes.
    var windowShift = 1
    while windowShift < 64 && (iova >> UInt64(windowShift)) != (lastByte >> UInt64(windowShift)) {
      windowShift += 1
    }
    var cap: UInt64? = nil
    if windowShift < 64 {
      for k in windowShift..<64 where bitmap & (1 << UInt64(k)) != 0 {
        cap = 1 << UInt64(k)
        break
      }
    }
    var best: UInt64 = 0
    for k in 0..<64 where bitmap & (1 << UInt64(k)) != 0 {
      let size: UInt64 = 1 << UInt64(k)
      if let cap, size > cap { continue }
      if valid(runs, iova: iova, size: size) { best = size }
    }
    return best
  }

  /// Physical address of MR byte `offset`.
  public static func physical(_ phyrs: [Phyr], offset: UInt64) -> UInt64 {
    var base: UInt64 = 0
    for p in phyrs {
      if offset < base + p.length { return p.address + (offset - base) }
      base += p.length
    }
    fatalError("offset beyond the layout")
  }

  /// Number of size-aligned IOVA windows the MR touches.
  public static func blockCount(length: UInt64, iova: UInt64, size: UInt64) -> UInt64 {
    (iova % size + (length - 1)) / size + 1
  }

  /// Block `j`: the aligned-down physical address of the first MR byte in
  /// the `j`-th IOVA window.
  public static func block(_ phyrs: [Phyr], iova: UInt64, size: UInt64, index j: UInt64) -> UInt64 {
    let windowStart = (iova / size + j) * size
    let firstByte = j == 0 ? 0 : windowStart - iova
    return physical(phyrs, offset: firstByte) / size * size
  }
}
