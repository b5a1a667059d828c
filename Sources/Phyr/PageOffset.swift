extension PhyrList {
  /// The largest page size in `pageSizes` for an HCA that describes a buffer
  /// by a page list plus an offset into the first page (mlx5 queue buffers)
  /// instead of an IOVA, or `nil`: the kernel's `ib_umem_find_best_pgoff`.
  ///
  /// `pageOffsetMask` holds the address bits the offset field can express,
  /// for example `0xfc0` for 64-byte units up to 4032. The search runs as
  /// ``bestPageSize(iova:pageSizes:)`` with the IOVA
  /// `firstAddress & pageOffsetMask`, so first-byte bits below the mask cap
  /// the size and bits above it that the page would have to hide zero it.
  /// The offset to program is then ``dmaOffset(pageSize:)``.
  ///
  /// - Complexity: O(*n*) for *n* runs; no allocation.
  public func bestPageSize(pageOffsetMask: UInt64, pageSizes: PageSizes) -> UInt64? {
    guard let first = firstAddress else { return nil }
    return bestPageSize(iova: first & pageOffsetMask, pageSizes: pageSizes)
  }
}
