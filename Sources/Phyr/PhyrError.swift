/// Errors for phyr input that cannot describe a registration. They are thrown,
/// never trapped on: every one of them can come from user input.
public enum PhyrError: Error, Sendable, Hashable {
  /// A range of zero bytes. Registrations never contain one.
  case zeroLength(Phyr)
  /// A range whose last byte would lie beyond `UInt64.max`.
  case rangeOverflow(Phyr)
  /// The lengths of the list add up to more than `UInt64.max`.
  case totalLengthOverflow
  /// A page size that is zero or not a power of two.
  case invalidPageSize(UInt64)
  /// `iova + length - 1` does not fit in 64 bits; the kernel refuses such an
  /// IOVA (ib_umem_find_best_pgsz returns 0 for it).
  case iovaOverflow(iova: UInt64, length: UInt64)
  /// The operation needs at least one byte of memory.
  case emptyList
  /// A dense encoding whose words do not decode to a valid list.
  case corruptEncoding(String)
}

extension PhyrError: CustomStringConvertible {
  /// A sentence that names the problem and what to do about it.
  public var description: String {
    switch self {
    case .zeroLength(let p):
      return "phyr \(p) has length 0; every range must hold at least one byte"
    case .rangeOverflow(let p):
      return "phyr \(p) runs past the end of the 64-bit address space"
    case .totalLengthOverflow:
      return "the phyr lengths add up to more than 2^64 - 1 bytes"
    case .invalidPageSize(let size):
      return "page size \(hex(size)) is not a power of two"
    case .iovaOverflow(let iova, let length):
      return "IOVA \(hex(iova)) plus length \(hex(length)) overflows 64 bits; choose a lower IOVA"
    case .emptyList:
      return "the phyr list is empty; a registration needs at least one byte"
    case .corruptEncoding(let why):
      return "dense phyr encoding is corrupt: \(why)"
    }
  }
}
