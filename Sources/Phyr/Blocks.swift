/// Checks that `size` is a power of two and returns `size - 1`.
@inlinable
func pageMask(_ size: UInt64) throws(PhyrError) -> UInt64 {
  guard size != 0, size & (size - 1) == 0 else { throw .invalidPageSize(size) }
  return size - 1
}

extension PhyrList {
  /// How many HCA pages of `pageSize` bytes the memory region spans when its
  /// first byte sits at `iova`: the kernel's `ib_umem_num_dma_blocks`,
  /// `(ALIGN_UP(iova + length, P) - ALIGN_DOWN(iova, P)) / P`.
  ///
  /// Computed from the last byte (`iova + length - 1`), so it is exact up to
  /// the top of the address space; 0 for an empty list.
  ///
  /// - Throws: ``PhyrError/invalidPageSize(_:)``, ``PhyrError/iovaOverflow(iova:length:)``.
  /// - Complexity: O(1).
  public func blockCount(pageSize: UInt64, iova: UInt64) throws(PhyrError) -> UInt64 {
    _ = try pageMask(pageSize)
    if totalLength == 0 { return 0 }
    let (last, overflow) = iova.addingReportingOverflow(totalLength - 1)
    if overflow { throw .iovaOverflow(iova: iova, length: totalLength) }
    let shift = UInt64(pageSize.trailingZeroBitCount)
    return (last >> shift) - (iova >> shift) + 1
  }

  /// The offset of the memory region's first byte inside its first HCA page,
  /// `firstAddress mod pageSize`: the kernel's `ib_umem_dma_offset`. For a
  /// page size chosen by ``bestPageSize(iova:pageSizes:)`` it equals
  /// `iova mod pageSize`.
  ///
  /// - Throws: ``PhyrError/invalidPageSize(_:)``, ``PhyrError/emptyList``.
  /// - Complexity: O(1).
  public func dmaOffset(pageSize: UInt64) throws(PhyrError) -> UInt64 {
    let mask = try pageMask(pageSize)
    guard let first = firstAddress else { throw .emptyList }
    return first & mask
  }

  /// The HCA pages (DMA blocks) of `pageSize` bytes that map this list at
  /// `iova`, in order: the kernel's `rdma_umem_for_each_dma_block`.
  ///
  /// The first block is the first byte's address aligned down to the page
  /// size; each next one starts where the previous page ended, following the
  /// runs; iteration stops after ``blockCount(pageSize:iova:)`` blocks.
  /// Offsets are 64-bit throughout, so blocks of 4 GiB and more are right
  /// (the kernel truncated them until 2026).
  ///
  /// - Throws: ``PhyrError/invalidPageSize(_:)``, ``PhyrError/iovaOverflow(iova:length:)``.
  /// - Complexity: O(1) to create; iterating is O(blocks + runs), with no
  ///   allocation.
  public func blocks(pageSize: UInt64, iova: UInt64) throws(PhyrError) -> DMABlocks {
    let count = try blockCount(pageSize: pageSize, iova: iova)
    return DMABlocks(list: self, pageMask: pageSize - 1, count: count, iova: iova)
  }
}

/// The DMA block addresses of a phyr list for one HCA page size: the
/// sequence the kernel walks with `rdma_umem_for_each_dma_block` and
/// `rdma_block_iter_dma_address`.
///
/// Create it with ``PhyrList/blocks(pageSize:iova:)``.
public struct DMABlocks: Sequence, Sendable {
  @usableFromInline let list: PhyrList
  /// The page size minus one.
  @usableFromInline let pageMask: UInt64
  /// The number of blocks the sequence yields (fewer only when the runs end
  /// first, which happens only for a page size the layout does not allow).
  public let count: UInt64
  /// The IOVA of the first byte.
  public let iova: UInt64

  @inlinable
  init(list: PhyrList, pageMask: UInt64, count: UInt64, iova: UInt64) {
    self.list = list
    self.pageMask = pageMask
    self.count = count
    self.iova = iova
  }

  /// The HCA page size.
  @inlinable public var pageSize: UInt64 { pageMask + 1 }

  /// The last block address without walking the blocks, or `nil` when there
  /// are none: the first memory-region byte of the last HCA page, aligned
  /// down. It equals the last element of the sequence whenever the page
  /// size is one the layout allows (for example one returned by
  /// ``PhyrList/bestPageSize(iova:pageSizes:)``).
  ///
  /// - Complexity: O(*n*) for *n* runs, instead of O(blocks).
  public var last: UInt64? {
    guard count != 0, let first = list.firstAddress else { return nil }
    if count == 1 { return first & ~pageMask }
    // MR offset of the last page's first byte: the IOVA distance from the
    // first byte to the last page boundary.
    let offset = (count - 1) * (pageMask + 1) - (iova & pageMask)
    var base: UInt64 = 0
    for run in list {
      if offset - base < run.length { return (run.address + (offset - base)) & ~pageMask }
      base += run.length
    }
    return nil
  }

  /// ``count``, clamped to `Int`.
  @inlinable public var underestimatedCount: Int { Int(clamping: count) }

  /// Returns an iterator over the block addresses.
  ///
  /// - Complexity: O(1).
  @inlinable
  public func makeIterator() -> Iterator {
    Iterator(runs: list.makeIterator(), pageMask: pageMask, count: count)
  }

  /// The state machine of the kernel's `__rdma_block_iter_next`, over
  /// coalesced runs and with 64-bit deltas.
  public struct Iterator: IteratorProtocol {
    @usableFromInline var runs: PhyrList.Iterator
    @usableFromInline let pageMask: UInt64
    @usableFromInline var remaining: UInt64
    /// The current position: where the next block's page begins or is cut.
    @usableFromInline var position: UInt64 = 0
    /// Bytes left in the current run after `position`.
    @usableFromInline var left: UInt64 = 0

    @inlinable
    init(runs: PhyrList.Iterator, pageMask: UInt64, count: UInt64) {
      self.runs = runs
      self.pageMask = pageMask
      self.remaining = count
      if let first = self.runs.next() {
        position = first.address
        left = first.length
      } else {
        remaining = 0
      }
    }

    /// The next block address, or `nil` after the last block.
    ///
    /// - Complexity: O(1) amortised over the runs crossed.
    @inlinable
    public mutating func next() -> UInt64? {
      guard remaining != 0 else { return nil }
      remaining &-= 1
      let block = position & ~pageMask
      // Where this HCA page ends. It wraps to 0 for the top page of the
      // address space, and `next - position` is still the right distance
      // (at most 2^63).
      let next = (position | pageMask) &+ 1
      var delta = next &- position
      if left > delta {
        position = next
        left &-= delta
        return block
      }
      // The run ends at or before the page end: consume it whole and take
      // the rest from the following runs.
      repeat {
        delta &-= left
        guard let run = runs.next() else {
          remaining = 0
          return block
        }
        position = run.address
        left = run.length
      } while left <= delta
      // delta < left, so neither wraps: the position stays inside the run.
      position &+= delta
      left &-= delta
      return block
    }
  }
}
