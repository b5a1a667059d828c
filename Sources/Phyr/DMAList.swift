/// How device (DMA) addresses relate to physical ones.
public enum DMAMapping: Sendable, Hashable {
  /// No IOMMU translation: DMA address == physical address.
  case passThrough
  /// An IOMMU maps the pages back to back into one IOVA window starting at
  /// `base`, which must be aligned to `granule` (the IOMMU page size).
  case linear(base: UInt64, granule: UInt64 = 4096)
}

/// A phyr list in DMA address space: what an HCA is programmed with. The
/// step the "Phyr Starter" discussion called `dma_map_phyr`, and the kernel
/// later built from `dma_iova_try_alloc` / `dma_iova_link` and
/// `dma_map_phys`.
public struct DMAList: Sendable, Hashable {
  /// The mapping that produced the list.
  public let mapping: DMAMapping
  /// The DMA ranges. For ``DMAMapping/passThrough`` this shares the CPU
  /// list's storage (copy-on-write, no copy); for ``DMAMapping/linear(base:granule:)``
  /// it is one range.
  public let runs: PhyrList
}

/// Errors of the DMA mapping step.
public enum DMAMappingError: Error, Sendable, Hashable {
  /// The granule is not a power of two, or the base is not aligned to it.
  case badWindow(base: UInt64, granule: UInt64)
  /// Run `run` has an interior edge that is not on a granule boundary, so
  /// the pages cannot be laid back to back (an IOMMU maps whole pages).
  case unalignedRun(run: Int)
  /// The window would run past the top of the IOVA space.
  case windowOverflow
  /// There is nothing to map.
  case empty
}

extension PhyrList {
  /// Maps the list into DMA address space, in the spirit of the proposed
  /// `dma_map_phyr`.
  ///
  /// Pass-through returns the same runs without copying them. A linear
  /// mapping returns one range of ``totalLength`` bytes that starts at
  /// `base` plus the first byte's offset in its granule; it requires every
  /// interior run edge to be granule-aligned.
  ///
  /// - Throws: ``DMAMappingError``.
  /// - Complexity: O(1) for pass-through; O(*n*) for a linear mapping (the
  ///   alignment check).
  public func dmaMapped(_ mapping: DMAMapping) throws(DMAMappingError) -> DMAList {
    switch mapping {
    case .passThrough:
      return DMAList(mapping: mapping, runs: self)
    case .linear(let base, let granule):
      guard granule != 0, granule & (granule - 1) == 0, base & (granule - 1) == 0 else {
        throw .badWindow(base: base, granule: granule)
      }
      guard let first = firstAddress else { throw .empty }
      let mask = granule - 1
      for (i, run) in enumerated() {
        let startOK = i == 0 || run.address & mask == 0
        let endOK = i == count - 1 || run.end & mask == 0
        if !(startOK && endOK) { throw .unalignedRun(run: i) }
      }
      let start = base | (first & mask)
      var single = PhyrList()
      do {
        try single.append(address: start, length: totalLength)
      } catch {
        throw .windowOverflow
      }
      return DMAList(mapping: mapping, runs: single)
    }
  }
}
