/// Which version of the kernel's `ib_umem_find_best_pgsz` rule a plan
/// follows.
///
/// The kernel builds a scatter list from the pinned pages (merging
/// physically contiguous pages into one entry, but never past the device's
/// segment limit, `ib_dma_max_seg_size`) and picks the page size from it.
/// Until Linux 6.15 every entry boundary had to be a page boundary, even
/// between two entries that are physically contiguous (the segment limit cut
/// them apart); since 6.15 such neighbours count as one run. The two rules
/// give the same answer whenever no run is longer than the segment limit.
/// Stable kernels received the 6.15 rule too (Debian's changelogs list it
/// in upstream 6.1.141 and 6.12.31), so the release alone does not say
/// which rule a kernel follows: ``init(release:version:)`` knows those.
public struct KernelRules: Sendable, Hashable, CustomStringConvertible {
  /// Whether physically contiguous scatter-list entries count as one run
  /// (Linux 6.15 and the stable kernels that took its fix).
  public let mergesContiguousEntries: Bool

  /// A short name: `linux 6.15+` or `linux before 6.15`.
  public let description: String

  /// Every scatter-list entry boundary must be a page boundary, contiguous
  /// or not: Linux 5.x up to 6.14 (stable: 6.1 before 6.1.141, 6.12 before
  /// 6.12.31).
  public static let beforeLinux6_15 = KernelRules(
    mergesContiguousEntries: false, description: "linux before 6.15")

  /// Only physical discontinuities must be page boundaries: Linux 6.15 and
  /// later, and the stable kernels with its fix.
  public static let linux6_15 = KernelRules(
    mergesContiguousEntries: true, description: "linux 6.15+")

  /// The newest rule set the planner models.
  public static let newest = linux6_15

  /// Every rule set, oldest first.
  public static let all: [KernelRules] = [beforeLinux6_15, linux6_15]

  init(mergesContiguousEntries: Bool, description: String) {
    self.mergesContiguousEntries = mergesContiguousEntries
    self.description = description
  }

  /// The rule set of a kernel, from its release (`uname -r`, such as
  /// `6.12.117+deb12-amd64`) and version string (`uname -v`, which on
  /// Debian's 6.1 names the upstream stable release: `... Debian
  /// 6.1.192-3 ...`, while the release says `6.1.0-57-amd64`).
  ///
  /// 6.15 and later, 6.12.31 and later in 6.12, and 6.1.141 and later in
  /// 6.1 merge contiguous entries; other releases, and ones that do not
  /// parse, do not.
  public init(release: String, version: String = "") {
    var numbers = Self.versionNumbers(release)
    // Debian's "6.1.0-57" hides the stable level; "Debian 6.1.192-3" has it.
    let words = version.split(separator: " ")
    if let at = words.firstIndex(of: "Debian"), at + 1 < words.count {
      let stable = Self.versionNumbers(String(words[at + 1]))
      if stable.count >= 3, stable[0] == numbers.first, stable[1] == numbers.dropFirst().first {
        numbers = stable
      }
    }
    let major = numbers.first ?? 0
    let minor = numbers.count > 1 ? numbers[1] : 0
    let patch = numbers.count > 2 ? numbers[2] : 0
    let merges =
      (major, minor) >= (6, 15) || (major == 6 && minor == 12 && patch >= 31)
      || (major == 6 && minor == 1 && patch >= 141)
    self = merges ? .linux6_15 : .beforeLinux6_15
  }

  /// The leading `a.b.c` numbers of a version string.
  static func versionNumbers(_ text: String) -> [Int] {
    var numbers: [Int] = []
    var current: Int? = nil
    for character in text {
      if let digit = character.wholeNumberValue, character.isASCII {
        let (times, o1) = (current ?? 0).multipliedReportingOverflow(by: 10)
        let (sum, o2) = times.addingReportingOverflow(digit)
        if o1 || o2 { return numbers }
        current = sum
      } else {
        if let value = current { numbers.append(value) }
        current = nil
        if character != "." || numbers.count >= 3 { return numbers }
      }
    }
    if let value = current { numbers.append(value) }
    return numbers
  }
}
