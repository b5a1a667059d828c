import ArgumentParser
import Foundation
import Phyr
import ToolSupport
import Umem

/// `umem plan`: the HCA page size, DMA blocks and IOVA the kernel would use
/// for a phyr list (issue 3). Pure arithmetic: no device needed.
///
///     umem plan --address ADDR --length LEN --iova IOVA|auto --page-sizes BITMAP \
///               (--phyr ADDR:LEN [--phyr ADDR:LEN ...] | --phyrs-file FILE|-) [--blocks] [--json]
///               [--rules current|newest|6.15|before-6.15] [--max-segment-size BYTES]
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

  @Option(help: "A physical range ADDR:LEN; repeat in memory-region order (up to 1000).")
  var phyr: [String] = []

  @Option(
    help: ArgumentHelp(
      "A file of phyrs, '-' for standard input: one ADDR:LEN a line, or umem inspect --json's output.",
      discussion: "The JSON's address, length and pageSizes stand in for options not given.",
      valueName: "file"))
  var phyrsFile: String?

  @Flag(help: "List every DMA block address.")
  var blocks = false

  @Flag(help: "Print one JSON object.")
  var json = false

  @Option(help: "Kernel rule set: \(RulesChoice.names) (default: the running kernel's).")
  var rules = "current"

  @Option(
    help:
      "The device's scatter-list segment limit in bytes (default 0xffffffff, rxe's); only the rules before 6.15 use it."
  )
  var maxSegmentSize: String?

  /// More blocks than this are refused by --blocks (the output would be huge).
  static let blockListLimit: UInt64 = 1 << 20

  func run() throws {
    let input: PlanArguments.Input
    let choice: RulesChoice
    do {
      input = try arguments().validated()
      choice = try RulesChoice.parse(rules: rules, maxSegmentSize: maxSegmentSize)
    } catch {
      FileHandle.standardError.write(Data("umem plan: \(error)\n".utf8))
      throw ExitCode(2)
    }
    let plan = input.list.planIOVA(
      input.policy, pageSizes: input.pageSizes, rules: choice.rules,
      maxSegmentSize: choice.maxSegmentSize)
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
        Self.json(
          plan: plan, firstBlock: firstBlock, lastBlock: lastBlock, blocks: blockList,
          rules: choice))
    } else {
      print(
        Self.report(
          input: input, plan: plan, firstBlock: firstBlock, lastBlock: lastBlock,
          blocks: blockList, rules: choice))
    }
  }

  /// The options as text, with the phyrs file (or standard input) read.
  func arguments() throws(BadArgument) -> PlanArguments {
    var arguments = PlanArguments(
      address: address, length: length, iova: iova, pageSizes: pageSizes, phyrs: phyr)
    if let phyrsFile {
      let data: Data?
      if phyrsFile == "-" {
        data = FileHandle.standardInput.readDataToEndOfFile()
      } else {
        data = FileManager.default.contents(atPath: phyrsFile)
      }
      guard let data else {
        throw BadArgument(
          argument: "--phyrs-file \(phyrsFile)", why: "cannot be read; check the path")
      }
      arguments.phyrsFile = (phyrsFile, String(decoding: data, as: UTF8.self))
    }
    return arguments
  }

  static func quoted(_ value: UInt64?) -> String { value.map { "\"\(hex($0))\"" } ?? "null" }

  /// The JSON object of the issue, keys in its order, 64-bit values as hex
  /// strings, then the rule set (``rulesFields(_:)``, as `umem inspect`).
  static func json(
    plan: IOVAPlan, firstBlock: UInt64?, lastBlock: UInt64?, blocks: [UInt64]?,
    rules: RulesChoice
  ) -> String {
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
    fields += rulesFields(rules).map { "\"\($0.0)\":\($0.1.text)" }
    return "{" + fields.joined(separator: ",") + "}"
  }

  /// A short human report.
  static func report(
    input: PlanArguments.Input, plan: IOVAPlan, firstBlock: UInt64?, lastBlock: UInt64?,
    blocks: [UInt64]?, rules: RulesChoice
  ) -> String {
    let list = input.list
    var lines = [
      "memory region  \(hex(input.address)), \(hex(list.totalLength)) bytes in \(list.count) "
        + (list.count == 1 ? "run" : "runs") + ", largest run \(hex(list.largestRunLength))",
      "HCA page sizes \(input.pageSizes)",
      "rules          \(rules.line)",
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

  /// The rule set as JSON fields, the same in `umem plan` and `umem
  /// inspect`: `rules` (`linux 6.15+`), `runningKernel` (`uname -r`) and
  /// `maxSegmentSize`.
  static func rulesFields(_ choice: RulesChoice) -> [(String, JSON)] {
    [
      ("rules", .string(choice.rules.description)),
      ("runningKernel", .string(KernelRules.runningRelease)),
      ("maxSegmentSize", .string(hex(choice.maxSegmentSize))),
    ]
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
