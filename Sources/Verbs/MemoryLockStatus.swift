#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// How much memory this process may pin, and how much it has pinned.
///
/// Registration pins pages and charges them to `pinned_vm`, which the kernel
/// checks against `RLIMIT_MEMLOCK` unless the process has `CAP_IPC_LOCK`.
/// Reads `getrlimit(RLIMIT_MEMLOCK)` and the `VmPin`/`VmLck` lines of
/// `/proc/self/status`.
public struct MemoryLockStatus: Sendable, Hashable, CustomStringConvertible {
  /// The soft `RLIMIT_MEMLOCK` in bytes; `nil` means unlimited.
  public var softLimit: UInt64?
  /// The hard `RLIMIT_MEMLOCK` in bytes; `nil` means unlimited.
  public var hardLimit: UInt64?
  /// Bytes pinned by this process (`VmPin`): earlier registrations count here.
  public var pinnedBytes: UInt64
  /// Bytes locked with `mlock` (`VmLck`).
  public var lockedBytes: UInt64

  /// Reads the current limits and counters.
  public static func current() -> MemoryLockStatus {
    var limit = rlimit()
    let ok = getrlimit(RLIMIT_MEMLOCK_VALUE, &limit) == 0
    func bytes(_ value: rlim_t) -> UInt64? {
      value == rlim_t.max ? nil : UInt64(value)
    }
    let status = ProcStatus.read()
    return MemoryLockStatus(
      softLimit: ok ? bytes(limit.rlim_cur) : nil,
      hardLimit: ok ? bytes(limit.rlim_max) : nil,
      pinnedBytes: status["VmPin"] ?? 0,
      lockedBytes: status["VmLck"] ?? 0
    )
  }

  /// One line: limits and what is pinned, in KiB like `ulimit -l` shows.
  public var description: String {
    func kib(_ value: UInt64?) -> String { value.map { "\($0 / 1024) KiB" } ?? "unlimited" }
    return "RLIMIT_MEMLOCK soft \(kib(softLimit)), hard \(kib(hardLimit)); "
      + "this process has \(kib(pinnedBytes)) pinned (VmPin) and \(kib(lockedBytes)) locked (VmLck)"
  }
}

#if canImport(Glibc)
  private let RLIMIT_MEMLOCK_VALUE = __rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue)
#else
  private let RLIMIT_MEMLOCK_VALUE = RLIMIT_MEMLOCK
#endif

/// The `kB` counters of `/proc/self/status`, in bytes.
enum ProcStatus {
  static func read() -> [String: UInt64] {
    let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [:] }
    defer { close(fd) }
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
      let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if n > 0 {
        data.append(contentsOf: chunk[0..<n])
      } else if n < 0 && errno == EINTR {
        continue
      } else {
        break
      }
    }
    return parse(String(decoding: data, as: UTF8.self))
  }

  /// The `kB` counters of a `/proc/PID/status` text, in bytes. Lines look like
  /// `VmPin:\t    1024 kB` (a tab, then padding spaces).
  static func parse(_ text: String) -> [String: UInt64] {
    var result: [String: UInt64] = [:]
    for line in text.split(separator: "\n") {
      guard let colon = line.firstIndex(of: ":") else { continue }
      // "VmLck:\t    1024 kB": a tab, then spaces.
      let fields = line[line.index(after: colon)...].split(whereSeparator: {
        $0 == " " || $0 == "\t"
      })
      guard fields.count == 2, fields[1] == "kB", let value = UInt64(fields[0]) else { continue }
      result[String(line[..<colon])] = value * 1024
    }
    return result
  }
}
