internal import UmemSystem
import Verbs

/// An error from pinning, inspecting or allocating user memory: which call
/// failed, the errno it gave, and a sentence that says what to do.
///
/// Checks that Swift makes before calling C (overflow, zero length, the
/// memlock limit) report the errno the kernel would have returned, with
/// ``checkedBeforeCall`` set.
public struct UmemError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What kind of failure this is, independent of the exact errno.
  public enum Code: Sendable, Hashable {
    /// The arguments break a documented rule; fix the call.
    case invalidArgument
    /// Locking would exceed `RLIMIT_MEMLOCK`, or the limit is zero.
    case memoryLockLimit
    /// The range is not mapped, or is mapped in a way that cannot be locked.
    case notMapped
    /// No huge pages of the requested size are reserved or free.
    case hugePagesUnavailable
    /// The kernel does not offer what was asked (an old kernel, a missing file).
    case notSupported
    /// The operation is not permitted for this process.
    case permissionDenied
    /// Reading `/proc` failed.
    case procReadFailed
    /// Anything else; the errno and message say more.
    case other
  }

  /// The kind of failure.
  public var code: Code
  /// The C function that failed (for example `mlock`).
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

  /// Wraps a verbs error, keeping its kind where Umem has the same one
  /// (a memlock failure stays ``Code/memoryLockLimit``), so callers can
  /// switch on ``code`` whichever layer failed.
  public init(_ error: VerbsError) {
    let code: Code =
      switch error.code {
      case .invalidArgument: .invalidArgument
      case .memoryLockLimit: .memoryLockLimit
      case .notMapped: .notMapped
      case .notSupported: .notSupported
      case .permissionDenied: .permissionDenied
      default: .other
      }
    self.init(
      code, operation: error.operation, errno: error.errno, message: error.message,
      checkedBeforeCall: error.checkedBeforeCall)
    self.verbs = error
  }

  /// The verbs error this one wraps, when a verbs call failed.
  public var verbs: VerbsError?

  /// The symbolic errno name, such as `ENOMEM`, or `errno N` when unknown.
  public var errnoName: String { ErrnoName.of(errno) }

  /// `operation failed: ENAME (strerror): message`, like ``VerbsError``.
  public var description: String {
    ErrnoName.failure(
      operation: operation, errno: errno, message: message, checkedBeforeCall: checkedBeforeCall)
  }

}
