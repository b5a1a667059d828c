/// The number of bits needed to write `x`, with `bitLength(0) == 1`: the
/// kernel's `bits_per`.
@inlinable
func bitLength(_ x: UInt64) -> Int { x == 0 ? 1 : 64 - x.leadingZeroBitCount }

/// The alignment constraints of a run list for one IOVA, split by cause so
/// that callers can both decide (``choose(mask:bitmap:)``) and explain (the
/// IOVA planner).
@usableFromInline
struct RunConstraints {
  /// Bits where the first byte's physical address and the IOVA differ.
  @usableFromInline var offsetMask: UInt64 = 0
  /// OR of every later run's IOVA start and its physical/IOVA difference.
  @usableFromInline var boundaryMask: UInt64 = 0
  /// The run whose boundary has the fewest trailing zeros, and that count.
  @usableFromInline var weakestBoundary: (run: Int, bits: Int)? = nil
  /// The memory region length (sum of the phyr lengths).
  @usableFromInline var length: UInt64 = 0
  /// The first invalid phyr, if any.
  @usableFromInline var error: PhyrError? = nil

  /// Scans `phyrs` in order. With `merging`, physically contiguous
  /// neighbours form one run and add no constraint (the v6.15 rule);
  /// without, every phyr after the first starts a run (the rule before
  /// v6.15, where each scatter-list entry counted). The first run may start
  /// anywhere; the end of the last run adds nothing.
  ///
  /// - Complexity: O(*n*) for *n* phyrs; no allocation.
  @inlinable
  init(_ phyrs: some Sequence<Phyr>, iova: UInt64, explain: Bool, merging: Bool = true) {
    var iovaPosition = iova
    var previous: Phyr? = nil
    var run = 0
    for phyr in phyrs {
      if !phyr.isValid {
        error = phyr.length == 0 ? .zeroLength(phyr) : .rangeOverflow(phyr)
        return
      }
      if previous == nil {
        offsetMask = phyr.address ^ iova
      } else if !merging || !previous!.isFollowed(by: phyr) {
        run += 1
        let bits = iovaPosition | (phyr.address ^ iovaPosition)
        boundaryMask |= bits
        if explain {
          let tz = bits.trailingZeroBitCount
          if weakestBoundary == nil || tz < weakestBoundary!.bits { weakestBoundary = (run, tz) }
        }
      }
      previous = phyr
      iovaPosition &+= phyr.length
      let (sum, overflow) = length.addingReportingOverflow(phyr.length)
      if overflow {
        error = .totalLengthOverflow
        return
      }
      length = sum
    }
  }

  /// The kernel's length cap: the supported sizes at least as large as the
  /// smallest aligned power-of-two window holding `[iova, iova + length)`.
  /// `nil` when `iova + length - 1` overflows (the answer is then 0).
  @inlinable
  static func capMask(iova: UInt64, length: UInt64, bitmap: UInt64) -> UInt64? {
    let (last, overflow) = iova.addingReportingOverflow(length &- 1)
    if overflow { return nil }
    let bits = bitLength(iova ^ last)
    return bits >= 64 ? 0 : bitmap & (UInt64.max << UInt64(bits))
  }

  /// Step 4 of the kernel rule: keep the bitmap bits up to the lowest set bit
  /// of `mask` and answer the highest, or `nil`.
  @inlinable
  static func choose(mask: UInt64, bitmap: UInt64) -> UInt64? {
    var sizes = bitmap
    if mask != 0 {
      let tz = mask.trailingZeroBitCount
      sizes &= tz == 63 ? UInt64.max : (UInt64(2) << UInt64(tz)) - 1
    }
    return sizes == 0 ? nil : 1 << UInt64(63 - sizes.leadingZeroBitCount)
  }
}

extension PageSizes {
  /// The largest supported page size that can map `phyrs` at `iova`, or
  /// `nil` when none can: the kernel's `ib_umem_find_best_pgsz`.
  ///
  /// `phyrs` are byte-exact and need not be coalesced: they stand for the
  /// kernel's scatter-list entries. Under ``KernelRules/linux6_15`` (the
  /// default) physically contiguous neighbours count as one run; under
  /// ``KernelRules/beforeLinux6_15`` each phyr is a run of its own. The
  /// memory region's length is the sum of their lengths. The rules, from the
  /// spec:
  /// - `nil` if `iova + length - 1` overflows 64 bits;
  /// - sizes above the smallest supported page that holds the whole IOVA
  ///   range in one page are not considered (they could not save a block);
  /// - the first byte's offset must pass through unchanged
  ///   (`address ≡ iova` modulo the size);
  /// - every physical discontinuity must fall on a page boundary in both
  ///   address spaces; the first run may start mid-page, the last may end
  ///   mid-page.
  ///
  /// Bitmap bits are taken as given, as the spec says. Kernels since about
  /// v5.10 also clear every size below `PAGE_SIZE` first (their block
  /// iterator mishandles smaller ones), which no real HCA's `page_size_cap`
  /// notices; old kernels also refused (with a warning) a bitmap without a
  /// size of 4 KiB or less, which later kernels no longer do.
  ///
  /// - Throws: ``PhyrError`` for an empty, zero-length or overflowing phyr.
  /// - Complexity: O(*n*) for *n* phyrs; no allocation.
  public func bestPageSize(
    for phyrs: some Sequence<Phyr>, iova: UInt64, rules: KernelRules = .newest
  ) throws(PhyrError) -> UInt64? {
    let c = RunConstraints(
      phyrs, iova: iova, explain: false, merging: rules.mergesContiguousEntries)
    if let error = c.error { throw error }
    if c.length == 0 { throw .emptyList }
    guard let cap = RunConstraints.capMask(iova: iova, length: c.length, bitmap: rawValue) else {
      return nil
    }
    return RunConstraints.choose(mask: cap | c.offsetMask | c.boundaryMask, bitmap: rawValue)
  }
}

extension PhyrList {
  /// The largest page size in `pageSizes` that can map this list at `iova`,
  /// or `nil` when none can: the kernel's `ib_umem_find_best_pgsz`, with the
  /// rules given at ``PageSizes/bestPageSize(for:iova:rules:)``. An empty list has
  /// no answer.
  ///
  /// - Complexity: O(*n*) for *n* runs; no allocation.
  public func bestPageSize(iova: UInt64, pageSizes: PageSizes) -> UInt64? {
    guard let first = firstAddress else { return nil }
    guard
      let cap = RunConstraints.capMask(iova: iova, length: totalLength, bitmap: pageSizes.rawValue)
    else { return nil }
    // Runs are maximal, so every run after the first is a discontinuity:
    // mask in its IOVA start and its physical/IOVA difference.
    var mask = cap | (first ^ iova)
    if runCount > 1 {
      // The first run is chunks[0][0]; the open run is the last.
      var position = iova &+ chunks[0][0].length
      for c in chunks.indices {
        for i in (c == 0 ? 1 : 0)..<chunks[c].count {
          let run = chunks[c][i]
          mask |= position | (run.address ^ position)
          position &+= run.length
        }
      }
      mask |= position | (open.address ^ position)
    }
    return RunConstraints.choose(mask: mask, bitmap: pageSizes.rawValue)
  }
}
