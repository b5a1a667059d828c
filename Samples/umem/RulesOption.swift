import Phyr
import ToolSupport
import Umem

/// `--rules` and `--max-segment-size`, shared by `umem plan` and `umem
/// inspect`: which kernel rule set the plan follows (by default the running
/// kernel's) and the device's scatter-list segment limit, which only the
/// rules before Linux 6.15 look at.
struct RulesChoice {
  /// The rule set.
  var rules: KernelRules
  /// What the user wrote, `current` by default.
  var name: String
  /// The segment limit in bytes.
  var maxSegmentSize: UInt64

  /// The values `--rules` takes.
  static let names = "current, newest, 6.15 or before-6.15"

  /// rxe and siw use virtual DMA: `ib_dma_max_seg_size` is `UINT_MAX`.
  static let virtualDMASegmentSize: UInt64 = 0xffff_ffff

  /// Parses the two options.
  static func parse(rules text: String, maxSegmentSize: String?) throws(BadArgument) -> RulesChoice
  {
    let rules: KernelRules
    switch text {
    case "current": rules = .current
    case "newest": rules = .newest
    case "6.15": rules = .linux6_15
    case "before-6.15": rules = .beforeLinux6_15
    default: throw BadArgument(argument: "--rules \(text)", why: "must be one of \(names)")
    }
    var limit = virtualDMASegmentSize
    if let maxSegmentSize {
      guard let value = parseSize(maxSegmentSize), value >= 4096 else {
        throw BadArgument(
          argument: "--max-segment-size \(maxSegmentSize)",
          why: "must be a size of at least 4096 bytes, such as 0x10000, 64K or 2G")
      }
      limit = value
    }
    return RulesChoice(rules: rules, name: text, maxSegmentSize: limit)
  }

  /// `linux 6.15+ (running kernel 6.1.0-57-amd64)`, with `--rules NAME; `
  /// inside the brackets when the user chose another set.
  var line: String {
    let kernel = "running kernel \(KernelRules.runningRelease)"
    return "\(rules) (" + (name == "current" ? kernel : "--rules \(name); \(kernel)") + ")"
  }
}
