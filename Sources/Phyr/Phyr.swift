// The Phyr module: pure Swift arithmetic for RDMA memory registration, no
// Glibc and no C. What lives where:
//   Phyr.swift, PhyrError.swift   the range type and the input errors
//   PhyrList.swift                coalescing list in chunked storage
//   DensePhyrList.swift           8-byte-per-chunk encoding of a list
//   PageSizes.swift               page_size_cap as an OptionSet
//   BestPageSize.swift            ib_umem_find_best_pgsz
//   Blocks.swift                  ib_umem_num_dma_blocks, ib_umem_dma_offset,
//                                 rdma_umem_for_each_dma_block
//   PageOffset.swift              ib_umem_find_best_pgoff
//   IOVAPlan.swift                IOVA choice (beyond the kernel)
//   DMAList.swift                 the dma_map_phyr step

/// A physical (or DMA) address range: the unit the "Phyr Starter" discussion
/// proposed in place of scatterlist entries, and what the kernel later merged
/// as `struct phys_vec { paddr, len }`.
///
/// A phyr is byte-exact: `address` is the first byte and `length` counts
/// bytes, so the first phyr of a registration starts at the physical address
/// of the memory region's first byte, not at its page.
///
/// A phyr never wraps past the top of the 64-bit address space: the library
/// rejects ranges whose last byte would lie beyond `UInt64.max`.
public struct Phyr: Sendable, Hashable {
  /// The address of the first byte.
  public var address: UInt64
  /// The number of bytes.
  public var length: UInt64

  /// Creates a range of `length` bytes starting at `address`.
  ///
  /// - Complexity: O(1).
  @inlinable
  public init(address: UInt64, length: UInt64) {
    self.address = address
    self.length = length
  }

  /// The address one past the last byte (`address + length`), wrapping on
  /// overflow: 0 for a range whose last byte is `UInt64.max`. Use
  /// ``lastAddress`` or ``isFollowed(by:)`` where that matters.
  ///
  /// - Complexity: O(1).
  @inlinable
  public var end: UInt64 { address &+ length }

  /// The address of the last byte, `address + length - 1`. Exact for every
  /// valid range, including one that ends at `UInt64.max`.
  ///
  /// - Complexity: O(1).
  @inlinable
  public var lastAddress: UInt64 { address &+ (length &- 1) }

  /// Whether `next` starts right after this range's last byte. A range that
  /// ends at `UInt64.max` is followed by nothing (its ``end`` wraps to 0).
  ///
  /// - Complexity: O(1).
  @inlinable
  public func isFollowed(by next: Phyr) -> Bool { end == next.address && end != 0 }

  /// Checks that the range is non-empty and that its last byte is at most
  /// `UInt64.max`.
  ///
  /// - Complexity: O(1).
  public func validated() throws(PhyrError) -> Phyr {
    if !isValid { throw length == 0 ? .zeroLength(self) : .rangeOverflow(self) }
    return self
  }

  /// Whether the range is non-empty and its last byte is at most `UInt64.max`.
  ///
  /// - Complexity: O(1).
  @inlinable
  public var isValid: Bool {
    length != 0 && !address.addingReportingOverflow(length - 1).overflow
  }
}

extension Phyr: CustomStringConvertible {
  /// `0xADDR:0xLEN`, the notation of the spec's vectors and of `umem plan --phyr`.
  public var description: String { "\(hex(address)):\(hex(length))" }
}

/// Formats a 64-bit value as `0x` followed by lowercase hex digits.
///
/// - Complexity: O(1).
@usableFromInline
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
