import Phyr

/// What an HCA would build for a umem: the IOVA, the page size and block
/// count the kernel's `ib_umem_find_best_pgsz` picks, and what its
/// translation table costs, at 4 KiB pages and at the chosen size.
public struct RegistrationPlan: Sendable, Hashable, CustomStringConvertible {
  /// The page sizes the plan was made for (the device's `page_size_cap`).
  public var pageSizes: PageSizes
  /// The planner's answer: IOVA, page size, blocks, DMA offset, the limit.
  public var iovaPlan: IOVAPlan
  /// The first and last HCA block addresses, `nil` without a page size.
  public var firstBlock: UInt64?
  public var lastBlock: UInt64?
  /// Translation entries at 4 KiB pages for the same IOVA.
  public var entriesAt4K: UInt64
  /// The planned memory: its first byte, length and CPU pages, as the
  /// layout had them. Registration checks them against the umem it is given.
  public var address: UInt64 = 0
  public var length: UInt64 = 0
  public var pageCount: Int = 0

  /// Bytes per translation-table entry (one 64-bit address, as mlx5's MTT).
  public static let entryBytes: UInt64 = 8

  /// The IOVA of the first byte.
  public var iova: UInt64 { iovaPlan.iova }
  /// The chosen HCA page size, `nil` when none fits.
  public var pageSize: UInt64? { iovaPlan.pageSize }
  /// HCA pages (translation entries) at the chosen size.
  public var blockCount: UInt64 { iovaPlan.blockCount }
  /// The first byte's offset in its HCA page.
  public var dmaOffset: UInt64 { iovaPlan.dmaOffset }
  /// Table bytes at the chosen size; `UInt64.max` when that does not fit
  /// in 64 bits (pages of a few bytes over most of the address space).
  public var tableBytes: UInt64 { Self.tableBytes(entries: blockCount) }
  /// Table bytes at 4 KiB pages (below 2^55: at most 2^52 entries).
  public var tableBytesAt4K: UInt64 { Self.tableBytes(entries: entriesAt4K) }

  static func tableBytes(entries: UInt64) -> UInt64 {
    let (bytes, overflow) = entries.multipliedReportingOverflow(by: entryBytes)
    return overflow ? .max : bytes
  }

  /// One line: page size, blocks and table bytes against 4 KiB.
  public var description: String {
    let size = pageSize.map(PageSizes.describe) ?? "none"
    return "iova 0x\(String(iova, radix: 16)), page size \(size), \(blockCount) blocks, "
      + "table \(tableBytes) B (\(entriesAt4K) entries, \(tableBytesAt4K) B at 4K)"
  }
}

extension UmemLayout {
  /// Plans a registration of this layout for `pageSizes` under `iova`
  /// (`.keep(address)` is what `ibv_reg_mr` does), following `rules` (by
  /// default the running kernel's) on a device whose scatter-list entries
  /// hold at most `maxSegmentSize` bytes (by default `UINT_MAX`, as for rxe;
  /// see ``Phyr/PhyrList/planIOVA(_:pageSizes:rules:maxSegmentSize:)``).
  ///
  /// - Throws: ``UmemError`` when the layout has no phyrs.
  /// - Complexity: O(runs) for the page size; O(1) for the blocks.
  public func plan(
    pageSizes: PageSizes, iova policy: IOVAPolicy, rules: KernelRules = .current,
    maxSegmentSize: UInt64 = 0xffff_ffff
  ) throws(UmemError) -> RegistrationPlan {
    let phyrs = try requirePhyrs(for: "plan")
    let plan = phyrs.planIOVA(
      policy, pageSizes: pageSizes, rules: rules, maxSegmentSize: maxSegmentSize)
    var first: UInt64? = nil
    var last: UInt64? = nil
    if let size = plan.pageSize, let walk = try? phyrs.blocks(pageSize: size, iova: plan.iova) {
      var iterator = walk.makeIterator()
      first = iterator.next()
      last = walk.last
    }
    let at4K = (try? phyrs.blockCount(pageSize: 4096, iova: plan.iova)) ?? 0
    return RegistrationPlan(
      pageSizes: pageSizes, iovaPlan: plan, firstBlock: first, lastBlock: last, entriesAt4K: at4K,
      address: address, length: length, pageCount: pageCount)
  }
}
