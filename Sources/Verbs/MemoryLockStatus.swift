internal import UmemSystem

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
  /// True when the process has `CAP_IPC_LOCK`, so the limit does not apply.
  public var mayExceedLimit: Bool = false

  /// Creates a status; usually read with ``current()``.
  public init(
    softLimit: UInt64?, hardLimit: UInt64?, pinnedBytes: UInt64, lockedBytes: UInt64,
    mayExceedLimit: Bool = false
  ) {
    self.softLimit = softLimit
    self.hardLimit = hardLimit
    self.pinnedBytes = pinnedBytes
    self.lockedBytes = lockedBytes
    self.mayExceedLimit = mayExceedLimit
  }

  /// Reads the current limits and counters (`getrlimit` and `/proc/self/status`).
  public static func current() -> MemoryLockStatus {
    let limit = MemoryLockLimit.current()
    let status = ProcessStatus.current()
    return MemoryLockStatus(
      softLimit: limit.soft, hardLimit: limit.hard, pinnedBytes: status.pinnedBytes,
      lockedBytes: status.lockedBytes,
      mayExceedLimit: status.has(capability: ProcessStatus.ipcLock))
  }

  /// Whether the limit, rather than something else, stops pinning `more`
  /// bytes: false when the process may ignore the limit, when it is
  /// unlimited, or when `more` fits below it.
  public func limitsPinning(more: UInt64) -> Bool {
    guard !mayExceedLimit, let softLimit else { return false }
    let (total, overflow) = pinnedBytes.addingReportingOverflow(more)
    return overflow || total > softLimit
  }

  /// One line: limits and what is pinned, in KiB like `ulimit -l` shows.
  public var description: String {
    func kib(_ value: UInt64?) -> String { value.map { "\($0 / 1024) KiB" } ?? "unlimited" }
    return "RLIMIT_MEMLOCK soft \(kib(softLimit)), hard \(kib(hardLimit)); "
      + "this process has \(kib(pinnedBytes)) pinned (VmPin) and \(kib(lockedBytes)) locked (VmLck)"
      + (mayExceedLimit ? "; it has CAP_IPC_LOCK, so the limit does not apply" : "")
  }
}
