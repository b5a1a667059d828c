/// The page sizes an HCA can map, as a bitmap: bit *k* set means pages of
/// 2^*k* bytes are supported. This is `ibv_device_attr.page_size_cap` in user
/// space and the `pgsz_bitmap` argument of the kernel's
/// `ib_umem_find_best_pgsz`.
///
/// It is an `OptionSet`, so union, intersection and subtraction work as for
/// any set; each page size is one element.
///
/// ```swift
/// let mlx5 = PageSizes(pageSizeCap: 0xffff_f000)   // 4K..2G
/// let hugePages: PageSizes = [.size4K, .size2M, .size1G]
/// mlx5.intersection(hugePages).description         // "4K|2M|1G"
/// ```
public struct PageSizes: OptionSet, Sendable, Hashable {
  /// The bitmap.
  public var rawValue: UInt64

  /// Wraps a bitmap.
  @inlinable
  public init(rawValue: UInt64) { self.rawValue = rawValue }

  /// Wraps a device's `page_size_cap`.
  @inlinable
  public init(pageSizeCap: UInt64) { self.rawValue = pageSizeCap }

  /// The set holding exactly one page size.
  ///
  /// - Throws: ``PhyrError/invalidPageSize(_:)`` unless `size` is a power of two.
  public init(size: UInt64) throws(PhyrError) {
    guard size != 0, size & (size - 1) == 0 else { throw .invalidPageSize(size) }
    self.rawValue = size
  }

  /// 4 KiB pages.
  public static let size4K = PageSizes(rawValue: 1 << 12)
  /// 64 KiB pages.
  public static let size64K = PageSizes(rawValue: 1 << 16)
  /// 2 MiB pages.
  public static let size2M = PageSizes(rawValue: 1 << 21)
  /// 1 GiB pages.
  public static let size1G = PageSizes(rawValue: 1 << 30)
  /// Every power of two from 4 KiB to 2 GiB: what mlx5 and rxe report
  /// (`0xfffff000`).
  public static let mlx5 = PageSizes(rawValue: 0xffff_f000)

  /// Whether pages of `size` bytes are supported.
  ///
  /// - Complexity: O(1).
  @inlinable
  public func supports(_ size: UInt64) -> Bool {
    size != 0 && size & (size - 1) == 0 && rawValue & size != 0
  }

  /// The smallest supported size, or `nil` when none is.
  ///
  /// - Complexity: O(1).
  @inlinable
  public var smallest: UInt64? { rawValue == 0 ? nil : rawValue & (0 &- rawValue) }

  /// The largest supported size, or `nil` when none is.
  ///
  /// - Complexity: O(1).
  @inlinable
  public var largest: UInt64? {
    rawValue == 0 ? nil : 1 << UInt64(63 - rawValue.leadingZeroBitCount)
  }

  /// The supported sizes no larger than `size`.
  ///
  /// - Complexity: O(1).
  @inlinable
  public func atMost(_ size: UInt64) -> PageSizes {
    guard size != 0 else { return [] }
    let top = 63 - size.leadingZeroBitCount
    return PageSizes(rawValue: rawValue & (UInt64.max >> UInt64(63 - top)))
  }

  /// The supported sizes, smallest first.
  ///
  /// - Complexity: O(number of sizes).
  public var sizes: [UInt64] {
    var out: [UInt64] = []
    var bits = rawValue
    while bits != 0 {
      out.append(bits & (0 &- bits))
      bits &= bits - 1
    }
    return out
  }
}

extension PageSizes: CustomStringConvertible {
  /// The sizes in binary units, runs of three or more consecutive sizes
  /// written as a range: `4K|2M|1G`, `4K..2G`, `none` for the empty set.
  ///
  /// - Complexity: O(64).
  public var description: String {
    if rawValue == 0 { return "none" }
    var parts: [String] = []
    var bit = 0
    while bit < 64 {
      guard rawValue & (1 << UInt64(bit)) != 0 else {
        bit += 1
        continue
      }
      var top = bit
      while top < 63 && rawValue & (1 << UInt64(top + 1)) != 0 { top += 1 }
      switch top - bit {
      case 0: parts.append(formatSize(shift: bit))
      case 1: parts.append(formatSize(shift: bit) + "|" + formatSize(shift: top))
      default: parts.append(formatSize(shift: bit) + ".." + formatSize(shift: top))
      }
      bit = top + 1
    }
    return parts.joined(separator: "|")
  }
}

/// `2^shift` bytes in binary units: `512B`, `4K`, `2M`, `1G`, `8E`.
func formatSize(shift: Int) -> String {
  let units = ["B", "K", "M", "G", "T", "P", "E"]
  return "\(1 << (shift % 10))\(units[shift / 10])"
}

extension PageSizes {
  /// A byte count in binary units when it is a power of two (`2M`), else in
  /// hex; the notation of ``description``.
  ///
  /// - Complexity: O(1).
  public static func describe(_ size: UInt64) -> String {
    guard size != 0, size & (size - 1) == 0 else { return hex(size) }
    return formatSize(shift: size.trailingZeroBitCount)
  }
}
