/// The counters of `/proc/self/status` that pinning and locking depend on.
/// The one parser of that file in the package.
package struct ProcessStatus: Sendable, Hashable {
  /// Bytes pinned by this process (`VmPin`): RDMA registrations count here.
  package var pinnedBytes: UInt64 = 0
  /// Bytes locked with `mlock` (`VmLck`).
  package var lockedBytes: UInt64 = 0
  /// The effective capability set (`CapEff`).
  package var effectiveCapabilities: UInt64 = 0

  package init() {}

  /// `CAP_IPC_LOCK`: lock and pin memory beyond `RLIMIT_MEMLOCK`.
  package static let ipcLock = 14
  /// `CAP_SYS_ADMIN`: among others, physical frame numbers in `pagemap`.
  package static let sysAdmin = 21

  /// Whether capability `bit` is in the effective set.
  package func has(capability bit: Int) -> Bool {
    bit >= 0 && bit < 64 && effectiveCapabilities & (1 << UInt64(bit)) != 0
  }

  /// Reads this process's status now; zeros when the file cannot be read.
  package static func current() -> ProcessStatus {
    guard case .success(let text) = TextFile.read("/proc/self/status") else {
      return ProcessStatus()
    }
    return parse(text)
  }

  /// Parses a `/proc/PID/status` text. Lines look like `VmPin:\t    1024 kB`
  /// (a tab, then padding spaces) and `CapEff:\t000001ffffffffff`.
  package static func parse(_ text: String) -> ProcessStatus {
    var status = ProcessStatus()
    for line in text.split(separator: "\n") {
      guard let colon = line.firstIndex(of: ":") else { continue }
      let key = line[..<colon]
      let fields = line[line.index(after: colon)...].split(whereSeparator: {
        $0 == " " || $0 == "\t"
      })
      switch key {
      case "VmPin", "VmLck":
        // Kernel counters in KiB; a value over 2^54 KiB is not a real count,
        // so it is ignored rather than multiplied past 64 bits.
        guard fields.count == 2, fields[1] == "kB", let kib = UInt64(fields[0]),
          kib <= UInt64.max / 1024
        else { continue }
        if key == "VmPin" {
          status.pinnedBytes = kib * 1024
        } else {
          status.lockedBytes = kib * 1024
        }
      case "CapEff":
        guard fields.count == 1, let mask = UInt64(fields[0], radix: 16) else { continue }
        status.effectiveCapabilities = mask
      default:
        continue
      }
    }
    return status
  }
}
