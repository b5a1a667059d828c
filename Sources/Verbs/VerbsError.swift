internal import UmemSystem

/// An error from a verbs operation: which call failed, the errno it gave,
/// and a sentence that says what to do about it.
///
/// Every throwing API in this module throws `VerbsError`. Checks that Swift
/// makes before calling C (for example the access-flag rules) report the
/// errno the kernel would have returned, with ``checkedBeforeCall`` set.
public struct VerbsError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What kind of failure this is, independent of the exact errno.
  public enum Code: Sendable, Hashable {
    /// The arguments break a documented rule; fix the call.
    case invalidArgument
    /// The device or kernel does not implement the feature.
    case notSupported
    /// Pinning would exceed `RLIMIT_MEMLOCK`.
    case memoryLockLimit
    /// The address range is not mapped, or cannot be pinned.
    case notMapped
    /// The machine has no RDMA device at all.
    case noDevices
    /// No device has the requested name.
    case deviceNotFound
    /// The device or kernel ran out of a resource (MRs, QPs, CQ entries).
    case resourceExhausted
    /// The operation is not permitted for this process.
    case permissionDenied
    /// A wait ran out of time.
    case timedOut
    /// A work request completed with an error status.
    case completionError
    /// The shared resource was closed explicitly; it can no longer be used.
    case closed
    /// The resource is still in use (children hang from it); it stays open.
    case busy
    /// Anything else; the errno and message say more.
    case other
  }

  /// The kind of failure.
  public var code: Code
  /// The C function that failed (for example `ibv_reg_mr`).
  public var operation: String
  /// The errno value the call reported (or would have, for checks made in Swift).
  public var errno: Int32
  /// What happened and what to do, in one or two sentences.
  public var message: String
  /// True when Swift rejected the arguments before calling C.
  public var checkedBeforeCall: Bool

  /// Creates an error. Most code gets these from the library rather than making them.
  public init(
    _ code: Code, operation: String, errno: Int32, message: String, checkedBeforeCall: Bool = false
  ) {
    self.code = code
    self.operation = operation
    self.errno = errno
    self.message = message
    self.checkedBeforeCall = checkedBeforeCall
  }

  /// The symbolic errno name, such as `EINVAL`, or `errno N` when unknown.
  public var errnoName: String { ErrnoName.of(errno) }

  /// `operation: ENAME (strerror): message`.
  public var description: String {
    ErrnoName.failure(
      operation: operation, errno: errno, message: message, checkedBeforeCall: checkedBeforeCall)
  }

}
