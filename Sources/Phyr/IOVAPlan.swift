/// Which IOVA the HCA should see for the memory region's first byte.
public enum IOVAPolicy: Sendable, Hashable {
  /// Use this IOVA, normally the buffer's virtual address (plain
  /// `ibv_reg_mr`; `ibv_reg_mr_iova2` with an explicit IOVA).
  case keep(UInt64)
  /// IOVA 0 (`IBV_ACCESS_ZERO_BASED`).
  case zeroBased
  /// Any IOVA: the planner picks one (beyond the kernel).
  case any
}

/// What limited the page size a plan got.
public enum PageSizeLimit: Sendable, Hashable {
  /// Nothing below the largest supported size: the bitmap is the limit.
  case largestSupported
  /// The whole IOVA range fits in one page of `window` bytes, so the kernel
  /// takes no larger page (it could not save a block).
  case lengthCap(window: UInt64)
  /// The first byte's physical address and the IOVA agree only modulo
  /// `alignment` (the page offset must pass through unchanged).
  case pageOffset(alignment: UInt64)
  /// Run `run` (counted from 0) starts at a physical or IOVA address aligned
  /// only to `alignment`; every discontinuity must be a page boundary.
  case runBoundary(run: Int, alignment: UInt64)
  /// `iova + length - 1` overflows 64 bits.
  case iovaOverflow
  /// The bitmap is empty: the device offers no page size at all.
  case noPageSizes
  /// The list is empty.
  case empty
}

/// The outcome of IOVA planning: the IOVA chosen, what the kernel's
/// `ib_umem_find_best_pgsz` will pick for it, and why.
public struct IOVAPlan: Sendable, Hashable {
  /// The policy the plan was made for.
  public var policy: IOVAPolicy
  /// The IOVA of the memory region's first byte.
  public var iova: UInt64
  /// The page size the kernel will choose, or `nil` when none fits.
  public var pageSize: UInt64?
  /// The number of HCA pages (`ib_umem_num_dma_blocks`), 0 without a size.
  public var blockCount: UInt64
  /// The first byte's offset in its HCA page (`ib_umem_dma_offset`), 0
  /// without a size.
  public var dmaOffset: UInt64
  /// The constraint that bounded ``pageSize``.
  public var limit: PageSizeLimit
}

extension IOVAPlan: CustomStringConvertible {
  /// One sentence: the IOVA, the size and blocks, and the limiting rule.
  public var description: String {
    let size = pageSize.map(PageSizes.describe) ?? "none"
    let why: String
    switch limit {
    case .largestSupported: why = "the largest supported size"
    case .lengthCap(let w):
      why = "the whole range fits in one \(PageSizes.describe(w)) page"
    case .pageOffset(let a):
      why = "the physical address and IOVA agree only modulo \(PageSizes.describe(a))"
    case .runBoundary(let run, let a):
      why = "run \(run) starts on a boundary aligned only to \(PageSizes.describe(a))"
    case .iovaOverflow: why = "IOVA + length overflows 64 bits"
    case .noPageSizes: why = "the page-size bitmap, which is empty"
    case .empty: why = "the list is empty"
    }
    return "iova \(hex(iova)): page size \(size), \(blockCount) blocks; limited by \(why)"
  }
}

extension PhyrList {
  /// Chooses an IOVA under `policy` and predicts the kernel's page size for
  /// it, explaining which rule limited the size.
  ///
  /// This goes beyond the kernel, which only evaluates the IOVA it is given
  /// (`ib_umem_find_best_pgsz`). With ``IOVAPolicy/any`` the planner picks
  /// the IOVA with the largest page size and the fewest blocks. For a size
  /// *P* to work, the IOVA must agree with the first byte modulo *P*, and
  /// each later run must start on a *P* boundary both physically and in IOVA
  /// space, which forces `firstAddress + offset` of that run to be a multiple
  /// of *P*: so the best *P* does not depend on the IOVA, and any IOVA
  /// congruent to the first byte modulo it reaches it. The planner takes the
  /// IOVA `firstAddress mod max(P, 4096)`; the block count
  /// for a given size depends only on the IOVA modulo that size, so no IOVA
  /// needs fewer blocks. When the whole range then fits in one smaller page,
  /// the kernel's length rule picks that smaller page (still one block), and
  /// the plan reports it. Finally the planner drops the IOVA bits above the
  /// chosen size, which changes nothing the kernel computes, so the IOVA is
  /// below `max(pageSize, 4096)`. The result keeps `iova mod 4096 == address
  /// mod 4096`, which the kernel's uverbs layer requires.
  ///
  /// ``IOVAPolicy/keep(_:)`` and ``IOVAPolicy/zeroBased`` only evaluate and
  /// explain the given IOVA, as the kernel would.
  ///
  /// Under ``KernelRules/beforeLinux6_15`` every cut the device's segment
  /// limit makes inside a run (see ``scatterSegments(maxSegmentSize:)``) is
  /// a boundary too, and ``PageSizeLimit/runBoundary(run:alignment:)``
  /// counts scatter-list entries; under the default ``KernelRules/newest``
  /// the limit changes nothing.
  ///
  /// - Complexity: O(*n*) for *n* runs; no allocation under
  ///   ``KernelRules/linux6_15``, O(*s*) for *s* entries otherwise.
  public func planIOVA(
    _ policy: IOVAPolicy, pageSizes: PageSizes, rules: KernelRules = .newest,
    maxSegmentSize: UInt64 = 0xffff_ffff
  ) -> IOVAPlan {
    // Before 6.15 each entry of the kernel's scatter list bounds a page.
    var entries: [Phyr]? = nil
    if !rules.mergesContiguousEntries,
      let segments = try? scatterSegments(maxSegmentSize: maxSegmentSize),
      segments.count > count
    {
      entries = segments
    }
    let iova: UInt64
    switch policy {
    case .keep(let value): iova = value
    case .zeroBased: iova = 0
    case .any:
      guard let first = firstAddress else {
        return IOVAPlan(
          policy: policy, iova: 0, pageSize: nil, blockCount: 0, dmaOffset: 0, limit: .empty)
      }
      // Alignment every later run start allows when IOVA ≡ first address.
      func alignmentBits(_ runs: some Sequence<Phyr>) -> Int {
        var bits = 64
        var offset: UInt64? = nil
        for run in runs {
          if let at = offset {
            bits = Swift.min(bits, (run.address | (first &+ at)).trailingZeroBitCount)
          }
          offset = (offset ?? 0) &+ run.length
        }
        return bits
      }
      let bits = entries.map(alignmentBits) ?? alignmentBits(self)
      let allowed = pageSizes.atMost(bits >= 64 ? 1 << 63 : 1 << UInt64(bits))
      // Keep the 4 KiB page offset too: uverbs requires it.
      let granule = Swift.max(allowed.largest ?? 4096, 4096)
      let plan = evaluate(
        iova: first & (granule - 1), policy: policy, pageSizes: pageSizes, entries: entries)
      // Only the IOVA modulo the chosen size matters (for the constraints,
      // the block count and, inside one page, the length rule), so drop the
      // higher bits: V10's layout gets IOVA 0x1000 rather than 0x40001000.
      let chosen = Swift.max(plan.pageSize ?? 4096, 4096)
      iova = first & (chosen - 1)
      if iova == plan.iova { return plan }
    }
    return evaluate(iova: iova, policy: policy, pageSizes: pageSizes, entries: entries)
  }

  /// The kernel's answer for `iova`, with the limiting rule; `entries` are
  /// the scatter-list entries when each one bounds a page (before 6.15).
  func evaluate(iova: UInt64, policy: IOVAPolicy, pageSizes: PageSizes, entries: [Phyr]?)
    -> IOVAPlan
  {
    var plan = IOVAPlan(
      policy: policy, iova: iova, pageSize: nil, blockCount: 0, dmaOffset: 0, limit: .empty)
    guard !isEmpty else { return plan }
    let bitmap = pageSizes.rawValue
    guard bitmap != 0 else {
      plan.limit = .noPageSizes
      return plan
    }
    let c =
      entries.map { RunConstraints($0, iova: iova, explain: true, merging: false) }
      ?? RunConstraints(self, iova: iova, explain: true)
    guard let cap = RunConstraints.capMask(iova: iova, length: totalLength, bitmap: bitmap) else {
      plan.limit = .iovaOverflow
      return plan
    }
    let size = RunConstraints.choose(mask: cap | c.offsetMask | c.boundaryMask, bitmap: bitmap)
    plan.pageSize = size
    if let size {
      plan.blockCount = (try? blockCount(pageSize: size, iova: iova)) ?? 0
      plan.dmaOffset = (firstAddress ?? 0) & (size - 1)
    }
    // The rule with the fewest trailing zeros bounds the size; structural
    // rules win ties, as they hold whatever the length. When the planner
    // chose the IOVA, it made the page offset agree up to the size that the
    // other rules allow, so the offset only ever ties with the real limit:
    // then that limit is named, not the offset.
    let offsetBits = c.offsetMask == 0 ? 64 : c.offsetMask.trailingZeroBitCount
    let boundaryBits = c.weakestBoundary?.bits ?? 64
    let capBits = cap == 0 ? 64 : cap.trailingZeroBitCount
    let weakest = Swift.min(offsetBits, boundaryBits, capBits)
    let top = pageSizes.largest.map { $0.trailingZeroBitCount } ?? -1
    let offsetFirst = policy != .any || Swift.min(boundaryBits, capBits) > weakest
    if weakest >= 64 || (size != nil && weakest >= top) {
      plan.limit = .largestSupported
    } else if offsetFirst && offsetBits == weakest {
      plan.limit = .pageOffset(alignment: 1 << UInt64(offsetBits))
    } else if boundaryBits == weakest, let b = c.weakestBoundary {
      plan.limit = .runBoundary(run: b.run, alignment: 1 << UInt64(b.bits))
    } else {
      plan.limit = .lengthCap(window: 1 << UInt64(capBits))
    }
    return plan
  }
}
