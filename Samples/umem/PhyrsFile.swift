import Foundation
import Phyr
import ToolSupport

/// The phyrs of `umem plan --phyrs-file`: either text, one `ADDR:LEN` a line
/// (blank lines and `#` comments skipped), or the JSON object that
/// `umem inspect --json` prints, whose `phyrs` are `[ADDR, LEN]` string pairs
/// and whose `address`, `length` and `pageSizes` can stand in for the options.
///
/// - Complexity: O(*n*) for *n* bytes of text.
struct PhyrsFile {
  var phyrs: [Phyr] = []
  /// From the JSON form only.
  var address: UInt64? = nil
  var length: UInt64? = nil
  var pageSizes: UInt64? = nil

  /// Parses `text`, read from the file (or standard input) named `name`.
  static func parse(_ text: String, name: String) throws(BadArgument) -> PhyrsFile {
    let argument = "--phyrs-file \(name)"
    if text.utf8.first(where: { !isSpace($0) }) == UInt8(ascii: "{") {
      return try parse(json: text, argument: argument)
    }
    var file = PhyrsFile()
    var number = 0
    for line in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
      number += 1
      let content = line.prefix { $0 != "#" }.trimmingCharacters(in: .whitespaces)
      if content.isEmpty { continue }
      file.phyrs.append(try phyr(content, argument: "\(argument): line \(number)"))
    }
    guard !file.phyrs.isEmpty else {
      throw BadArgument(argument: argument, why: "holds no ADDR:LEN line")
    }
    return file
  }

  /// What `umem inspect --json` writes, the fields this needs.
  private struct InspectReport: Decodable {
    var address: String?
    var length: String?
    var pageSizes: String?
    var phyrs: [[String]]?
    var unavailableReason: String?
  }

  private static func parse(json text: String, argument: String) throws(BadArgument) -> PhyrsFile {
    let report: InspectReport
    do {
      report = try JSONDecoder().decode(InspectReport.self, from: Data(text.utf8))
    } catch {
      throw BadArgument(
        argument: argument, why: "is not the JSON that umem inspect --json writes (\(error))")
    }
    guard let pairs = report.phyrs else {
      throw BadArgument(
        argument: argument,
        why: "has no phyrs: "
          + (report.unavailableReason ?? "the inspect run could not read physical addresses"))
    }
    guard !pairs.isEmpty else {
      throw BadArgument(argument: argument, why: "has an empty phyrs list")
    }
    var file = PhyrsFile()
    file.phyrs.reserveCapacity(pairs.count)
    for (index, pair) in pairs.enumerated() {
      let place = "\(argument): phyrs[\(index)]"
      guard pair.count == 2 else {
        throw BadArgument(argument: place, why: "expected [\"ADDR\", \"LEN\"]")
      }
      file.phyrs.append(try phyr(address: pair[0], length: pair[1], argument: place))
    }
    if let text = report.address { file.address = try number(text, "\(argument): address") }
    if let text = report.length { file.length = try number(text, "\(argument): length") }
    if let text = report.pageSizes { file.pageSizes = try number(text, "\(argument): pageSizes") }
    return file
  }

  /// `ADDR:LEN`, checked: a number each, at least one byte, last byte below 2^64.
  static func phyr(_ text: some StringProtocol, argument: String) throws(BadArgument) -> Phyr {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2 else {
      throw BadArgument(argument: argument, why: "'\(text)' is not ADDR:LEN")
    }
    return try phyr(address: parts[0], length: parts[1], argument: argument)
  }

  static func phyr(address: some StringProtocol, length: some StringProtocol, argument: String)
    throws(BadArgument) -> Phyr
  {
    let range = Phyr(
      address: try number(address, argument), length: try number(length, argument))
    do {
      return try range.validated()
    } catch {
      throw BadArgument(argument: argument, why: error.description)
    }
  }

  /// Hex (`0x...`) or decimal; `_` separators allowed.
  static func number(_ text: some StringProtocol, _ argument: String) throws(BadArgument) -> UInt64
  {
    guard let value = parseNumber(text) else {
      throw BadArgument(
        argument: argument, why: "'\(text)' is not a number (use 0x... hex or decimal, below 2^64)")
    }
    return value
  }

  private static func isSpace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x09 || byte == 0x0a || byte == 0x0d
  }
}

/// A rejected argument of `umem plan` and why; the tool exits with status 2.
struct BadArgument: Error, CustomStringConvertible {
  var argument: String
  var why: String

  var description: String { "\(argument): \(why)" }
}
