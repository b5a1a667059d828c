import Phyr
import ToolSupport

/// `umem plan`'s arguments as the user wrote them, and the one function that
/// checks them and builds the phyr list. Kept apart from ArgumentParser so
/// that tests and the fuzz target drive it directly.
struct PlanArguments {
  var address: String?
  var length: String?
  var iova: String?
  var pageSizes: String?
  /// The inline `--phyr ADDR:LEN` options, in order.
  var phyrs: [String] = []
  /// `--phyrs-file`, already read: its name (`-` for standard input) and text.
  var phyrsFile: (name: String, text: String)? = nil

  /// More inline `--phyr` options than this are refused before parsing:
  /// ArgumentParser stores each repeated option by copying the ones before
  /// it, so thousands take seconds. Larger layouts go in `--phyrs-file`.
  static let inlinePhyrLimit = 1000

  /// The refusal of `count` inline `--phyr` options, or `nil` when that many are fine.
  static func inlineRefusal(count: Int) -> BadArgument? {
    guard count > inlinePhyrLimit else { return nil }
    return BadArgument(
      argument: "--phyr",
      why: "\(count) ranges inline is more than the \(inlinePhyrLimit) this form takes; put "
        + "one ADDR:LEN a line in a file and pass --phyrs-file FILE (- for standard input)")
  }

  /// Validated arguments.
  struct Input {
    var address: UInt64
    var list: PhyrList
    var policy: IOVAPolicy
    var pageSizes: PageSizes
  }

  /// Checks every argument and builds the list; throws the first problem.
  ///
  /// - Complexity: O(*n* log *n*) for *n* phyrs (the overlap check sorts).
  func validated() throws(BadArgument) -> Input {
    if let tooMany = Self.inlineRefusal(count: phyrs.count) { throw tooMany }
    var file: PhyrsFile? = nil
    if let phyrsFile {
      guard phyrs.isEmpty else {
        throw BadArgument(argument: "--phyrs-file", why: "give --phyr or --phyrs-file, not both")
      }
      file = try PhyrsFile.parse(phyrsFile.text, name: phyrsFile.name)
    }
    let address = try Self.number(self.address, "--address", or: file?.address)
    let length = try Self.number(self.length, "--length", or: file?.length)
    let bitmap = try Self.number(pageSizes, "--page-sizes", or: file?.pageSizes)
    guard let iovaText = iova else { throw BadArgument(argument: "--iova", why: "missing") }
    let policy: IOVAPolicy =
      iovaText.lowercased() == "auto" ? .any : .keep(try Self.number(iovaText, "--iova"))
    if bitmap == 0 {
      throw BadArgument(
        argument: "--page-sizes",
        why: "0 offers no page size; give the device's page_size_cap, such as 0xfffff000")
    }
    if length == 0 { throw BadArgument(argument: "--length", why: "must be at least 1 byte") }
    // length >= 1 here, so length - 1 cannot underflow.
    if address.addingReportingOverflow(length - 1).overflow {
      throw BadArgument(argument: "--length", why: "address + length overflows 64 bits")
    }
    var ranges: [Phyr]
    if let file {
      ranges = file.phyrs
    } else {
      guard !phyrs.isEmpty else {
        throw BadArgument(
          argument: "--phyr", why: "give at least one ADDR:LEN range, or --phyrs-file FILE")
      }
      ranges = []
      ranges.reserveCapacity(phyrs.count)
      for text in phyrs {
        ranges.append(try PhyrsFile.phyr(text, argument: "--phyr \(text)"))
      }
    }
    // Overlap: sort by start and compare neighbours (by last byte, so a
    // range that ends at the top of the address space is handled).
    let sorted = ranges.sorted { $0.address < $1.address }
    for (a, b) in zip(sorted, sorted.dropFirst()) where b.address <= a.lastAddress {
      throw BadArgument(argument: "--phyr \(b)", why: "overlaps \(a)")
    }
    var list = PhyrList()
    for range in ranges {
      do {
        try list.append(range)
      } catch {
        throw BadArgument(argument: "--phyr \(range)", why: error.description)
      }
    }
    guard list.totalLength == length else {
      throw BadArgument(
        argument: "--phyr",
        why: "lengths add up to \(hex(list.totalLength)), but --length is \(hex(length))")
    }
    let first = ranges[0].address
    guard first % 4096 == address % 4096 else {
      throw BadArgument(
        argument: "--phyr \(ranges[0])",
        why: "starts at page offset \(hex(first % 4096)), but --address has "
          + "\(hex(address % 4096)); the first phyr must hold the first byte")
    }
    return Input(
      address: address, list: list, policy: policy, pageSizes: PageSizes(pageSizeCap: bitmap))
  }

  /// Parses hex (`0x...`) or decimal, `_` separators allowed; without
  /// `text`, the value the phyrs file gave, if any.
  static func number(_ text: String?, _ argument: String, or fallback: UInt64? = nil)
    throws(BadArgument) -> UInt64
  {
    guard let text else {
      guard let fallback else { throw BadArgument(argument: argument, why: "missing") }
      return fallback
    }
    return try PhyrsFile.number(text, argument)
  }
}
