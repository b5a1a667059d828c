extension PhyrList {
  /// The scatter-list entries the kernel builds for this memory when its
  /// device limits each entry to `maxSegmentSize` bytes
  /// (`ib_dma_max_seg_size`; `sg_alloc_append_table_from_pages`): each run
  /// is cut every `maxSegmentSize` bytes, rounded down to whole 4 KiB pages,
  /// counted from the start of the run's first page. Byte-exact like the
  /// list: the first entry starts at the first byte, the last ends at the
  /// last one.
  ///
  /// Devices that use virtual DMA (rxe, siw) allow `UInt32.max`, which the
  /// kernel rounds down to `0xffff_f000`; a device that never set a limit
  /// gets 64 KiB.
  ///
  /// - Throws: ``PhyrError/invalidPageSize(_:)`` when the limit is below
  ///   4 KiB.
  /// - Complexity: O(*n* + *s*) for *n* runs and *s* entries.
  public func scatterSegments(maxSegmentSize: UInt64) throws(PhyrError) -> [Phyr] {
    let step = maxSegmentSize & ~0xfff
    guard step != 0 else { throw .invalidPageSize(maxSegmentSize) }
    var segments: [Phyr] = []
    for run in self {
      // The last byte, not the end: a run may end at the top of the space.
      let last = run.address &+ (run.length &- 1)
      var start = run.address
      // The first cut is one step past the run's first page start.
      var cut = (run.address & ~0xfff).addingReportingOverflow(step)
      while !cut.overflow && cut.partialValue <= last && cut.partialValue > start {
        segments.append(Phyr(address: start, length: cut.partialValue - start))
        start = cut.partialValue
        cut = start.addingReportingOverflow(step)
      }
      segments.append(Phyr(address: start, length: last - start + 1))
    }
    return segments
  }

  /// The page size the kernel picks under `rules` for this memory on a
  /// device whose scatter-list entries hold at most `maxSegmentSize` bytes:
  /// ``bestPageSize(iova:pageSizes:)`` over
  /// ``scatterSegments(maxSegmentSize:)``, where ``KernelRules/beforeLinux6_15``
  /// also makes each cut inside a run a boundary. `nil` when none fits.
  ///
  /// - Throws: ``PhyrError/invalidPageSize(_:)`` when the limit is below
  ///   4 KiB.
  /// - Complexity: O(*n* + *s*) for *n* runs and *s* entries.
  public func bestPageSize(
    iova: UInt64, pageSizes: PageSizes, rules: KernelRules, maxSegmentSize: UInt64
  ) throws(PhyrError) -> UInt64? {
    if rules.mergesContiguousEntries { return bestPageSize(iova: iova, pageSizes: pageSizes) }
    let segments = try scatterSegments(maxSegmentSize: maxSegmentSize)
    if segments.isEmpty { return nil }
    return try pageSizes.bestPageSize(for: segments, iova: iova, rules: rules)
  }
}
