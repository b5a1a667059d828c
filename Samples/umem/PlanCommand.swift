import ArgumentParser
import Foundation
import Phyr
import ToolSupport

/// `umem plan`: the HCA page size, DMA blocks and IOVA the kernel would use
/// for a phyr list (issue 3). Pure arithmetic: no device needed.
///
///     umem plan --address ADDR --length LEN --iova IOVA|auto --page-sizes BITMAP \
///               --phyr ADDR:LEN [--phyr ADDR:LEN ...] [--blocks] [--json]
///
/// Malformed input exits with status 2 and a message naming the argument.
struct Plan: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Plan HCA pages for a phyr list: best page size, blocks, IOVA.",
    discussion: """
      Numbers are hex (0x...) or decimal. Phyrs are byte-exact: the first starts at the \
      physical address of the memory region's first byte, and their lengths add up to \
      --length. --iova auto lets the planner choose the IOVA with the largest page size \
      and fewest blocks (beyond what the kernel does). Malformed input exits with status 2.
      """)

  @Option(help: "Virtual address of the memory region's first byte.")
  var address: String?

  @Option(help: "Length of the memory region in bytes.")
  var length: String?

  @Option(help: "IOVA the HCA sees for the first byte, or 'auto' to choose one.")
  var iova: String?

  @Option(help: "Supported HCA page sizes as a bitmap (page_size_cap), e.g. 0xfffff000.")
  var pageSizes: String?

  @Option(help: "A physical range ADDR:LEN; repeat in memory-region order.")
  var phyr: [String] = []

  @Flag(help: "List every DMA block address.")
  var blocks = false

  @Flag(help: "Print one JSON object.")
  var json = false

  /// More blocks than this are refused by --blocks (the output would be huge).
  static let blockListLimit: UInt64 = 1 << 20

  func run() throws {
    let input: Input
    do {
      input = try parse()
    } catch {
      FileHandle.standardError.write(Data("umem plan: \(error.argument): \(error.why)\n".utf8))
      throw ExitCode(2)
    }
    let plan = input.list.planIOVA(input.policy, pageSizes: input.pageSizes)
    var blockList: [UInt64]? = nil
    var firstBlock: UInt64? = nil
    var lastBlock: UInt64? = nil
    if let size = plan.pageSize {
      let walk = try input.list.blocks(pageSize: size, iova: plan.iova)
      var iterator = walk.makeIterator()
      firstBlock = iterator.next()
      lastBlock = walk.last
      if blocks {
        guard walk.count <= Self.blockListLimit else {
          FileHandle.standardError.write(
            Data(
              "umem plan: --blocks: \(walk.count) blocks is more than the \(Self.blockListLimit) it lists\n"
                .utf8))
          throw ExitCode(2)
        }
        blockList = Array(walk)
      }
    } else if blocks {
      blockList = []
    }
    if json {
      print(
        Self.json(plan: plan, firstBlock: firstBlock, lastBlock: lastBlock, blocks: blockList))
    } else {
      print(
        Self.report(
          input: input, plan: plan, firstBlock: firstBlock, lastBlock: lastBlock,
          blocks: blockList))
    }
  }

  /// Validated arguments.
  struct Input {
    var address: UInt64
    var list: PhyrList
    var policy: IOVAPolicy
    var pageSizes: PageSizes
  }

  /// A rejected argument and why.
  struct BadArgument: Error {
    var argument: String
    var why: String
  }

  /// Parses and checks every argument; throws the first problem found.
  func parse() throws(BadArgument) -> Input {
    let address = try Self.number(address, "--address")
    let length = try Self.number(length, "--length")
    let bitmap = try Self.number(pageSizes, "--page-sizes")
    guard let iovaText = iova else { throw BadArgument(argument: "--iova", why: "missing") }
    let policy: IOVAPolicy =
      iovaText.lowercased() == "auto" ? .any : .keep(try Self.number(iovaText, "--iova"))
    if length == 0 { throw BadArgument(argument: "--length", why: "must be at least 1 byte") }
    if address.addingReportingOverflow(length - 1).overflow {
      throw BadArgument(argument: "--length", why: "address + length overflows 64 bits")
    }
    guard !phyr.isEmpty else {
      throw BadArgument(argument: "--phyr", why: "give at least one ADDR:LEN range")
    }
    var phyrs: [Phyr] = []
    for text in phyr {
      let parts = text.split(separator: ":", omittingEmptySubsequences: false)
      guard parts.count == 2 else {
        throw BadArgument(argument: "--phyr \(text)", why: "expected ADDR:LEN")
      }
      let start = try Self.number(String(parts[0]), "--phyr \(text)")
      let size = try Self.number(String(parts[1]), "--phyr \(text)")
      let range = Phyr(address: start, length: size)
      do {
        phyrs.append(try range.validated())
      } catch {
        throw BadArgument(argument: "--phyr \(text)", why: error.description)
      }
    }
    // Overlap: sort by start and compare neighbours.
    let sorted = phyrs.sorted { $0.address < $1.address }
    for (a, b) in zip(sorted, sorted.dropFirst()) where b.address < a.end {
      throw BadArgument(argument: "--phyr \(b)", why: "overlaps \(a)")
    }
    var list = PhyrList()
    for range in phyrs {
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
    let first = phyrs[0].address
    guard first % 4096 == address % 4096 else {
      throw BadArgument(
        argument: "--phyr \(phyrs[0])",
        why: "starts at page offset \(hex(first % 4096)), but --address has "
          + "\(hex(address % 4096)); the first phyr must hold the first byte")
    }
    return Input(
      address: address, list: list, policy: policy, pageSizes: PageSizes(pageSizeCap: bitmap))
  }

  /// Parses hex (`0x...`) or decimal; `_` separators allowed.
  static func number(_ text: String?, _ argument: String) throws(BadArgument) -> UInt64 {
    guard let text else { throw BadArgument(argument: argument, why: "missing") }
    guard let value = parseNumber(text) else {
      throw BadArgument(
        argument: argument, why: "'\(text)' is not a number (use 0x... hex or decimal, below 2^64)")
    }
    return value
  }

  static func quoted(_ value: UInt64?) -> String { value.map { "\"\(hex($0))\"" } ?? "null" }

  /// The JSON object of the issue, keys in its order, 64-bit values as hex strings.
  static func json(plan: IOVAPlan, firstBlock: UInt64?, lastBlock: UInt64?, blocks: [UInt64]?)
    -> String
  {
    var fields = [
      "\"pageSize\":\(quoted(plan.pageSize ?? 0))",
      "\"blockCount\":\(plan.pageSize == nil ? 0 : plan.blockCount)",
      "\"firstBlock\":\(quoted(firstBlock))",
      "\"lastBlock\":\(quoted(lastBlock))",
      "\"iova\":\(quoted(plan.iova))",
      "\"dmaOffset\":\(quoted(plan.dmaOffset))",
    ]
    if let blocks {
      fields.append("\"blocks\":[" + blocks.map { quoted($0) }.joined(separator: ",") + "]")
    }
    return "{" + fields.joined(separator: ",") + "}"
  }

  /// A short human report.
  static func report(
    input: Input, plan: IOVAPlan, firstBlock: UInt64?, lastBlock: UInt64?, blocks: [UInt64]?
  ) -> String {
    let list = input.list
    var lines = [
      "memory region  \(hex(input.address)), \(hex(list.totalLength)) bytes in \(list.count) "
        + (list.count == 1 ? "run" : "runs") + ", largest run \(hex(list.largestRunLength))",
      "HCA page sizes \(input.pageSizes)",
      "iova           \(hex(plan.iova))"
        + (input.policy == .any ? " (chosen: largest page, fewest blocks)" : ""),
    ]
    if let size = plan.pageSize {
      lines.append("page size      \(PageSizes.describe(size)) (\(hex(size)))")
      lines.append(
        "blocks         \(plan.blockCount), first \(quoted(firstBlock).dropFirst().dropLast()), last \(quoted(lastBlock).dropFirst().dropLast())"
      )
      lines.append("dma offset     \(hex(plan.dmaOffset))")
    } else {
      lines.append("page size      none fits: the kernel would refuse this layout")
    }
    lines.append("limited by     \(limitText(plan.limit))")
    if plan.iova % 4096 != input.address % 4096 {
      lines.append(
        "note           iova and address differ in their 4 KiB page offset; "
          + "ibv_reg_mr_iova2 would be refused with EINVAL")
    }
    if let blocks {
      lines.append("block list")
      lines += blocks.map { "  \(hex($0))" }
    }
    return lines.joined(separator: "\n")
  }

  static func limitText(_ limit: PageSizeLimit) -> String {
    switch limit {
    case .largestSupported: return "the largest size the HCA supports"
    case .lengthCap(let window):
      return "length: the whole range fits in one \(PageSizes.describe(window)) page"
    case .pageOffset(let alignment):
      return "page offset: address and IOVA agree only modulo \(PageSizes.describe(alignment))"
    case .runBoundary(let run, let alignment):
      return "run \(run) starts on a boundary aligned only to \(PageSizes.describe(alignment))"
    case .iovaOverflow: return "iova + length overflows 64 bits"
    case .noPageSizes: return "the page-size bitmap is empty: the device offers no page size"
    case .empty: return "empty list"
    }
  }
}
