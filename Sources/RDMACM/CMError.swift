internal import UmemSystem
import Verbs

/// An error from connection management: the librdmacm call or event that
/// failed, its errno or event status, and a sentence that says what to do.
///
/// When a connection event reports the failure, ``event`` and ``status``
/// carry it and ``description`` starts the way rdma-core's rping prints it:
/// `cma event RDMA_CM_EVENT_REJECTED, error 8`. Failures of the verbs
/// resources made for a connection keep the original ``VerbsError``.
public struct CMError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What kind of failure this is.
  public enum Code: Sendable, Hashable {
    /// The arguments break a documented rule; fix the call.
    case invalidArgument
    /// The address could not be resolved to an RDMA device (`ADDR_ERROR`).
    case addressError
    /// No route to the peer (`ROUTE_ERROR`).
    case routeError
    /// The peer did not answer (`UNREACHABLE`).
    case unreachable
    /// The peer refused the connection, usually because nothing listens there (`REJECTED`).
    case rejected
    /// The connection failed while being set up (`CONNECT_ERROR`).
    case connectError
    /// The peer disconnected (`DISCONNECTED`).
    case disconnected
    /// The RDMA device went away (`DEVICE_REMOVAL`).
    case deviceRemoved
    /// A wait ran out of time.
    case timedOut
    /// The ``SharedConnection`` was closed before or during the call.
    case closed
    /// An event arrived that the caller was not waiting for.
    case unexpectedEvent
    /// A verbs resource or work request failed; ``CMError/verbs`` has details.
    case verbs
    /// Anything else; the errno and message say more.
    case other
  }

  /// The kind of failure.
  public var code: Code
  /// The C function that failed, or that was waiting when an event reported failure.
  public var operation: String
  /// The errno value, or 0 when an event reported the failure.
  public var errno: Int32
  /// The event that reported the failure, if one did.
  public var event: CMEvent.Kind?
  /// The event's status (`rdma_cm_event.status`): a negative errno, or a
  /// positive InfiniBand CM reject reason for `REJECTED`.
  public var status: Int32
  /// What happened and what to do.
  public var message: String
  /// The verbs error behind a ``Code/verbs`` failure.
  public var verbs: VerbsError?

  /// Creates an error. Most code gets these from the library rather than making them.
  public init(
    _ code: Code, operation: String, errno: Int32 = 0, event: CMEvent.Kind? = nil,
    status: Int32 = 0, message: String
  ) {
    self.code = code
    self.operation = operation
    self.errno = errno
    self.event = event
    self.status = status
    self.message = message
  }

  /// Wraps a verbs failure.
  public init(_ error: VerbsError) {
    self.init(.verbs, operation: error.operation, errno: error.errno, message: error.message)
    verbs = error
  }

  /// The line rdma-core's rping prints for a failed event, such as
  /// `cma event RDMA_CM_EVENT_REJECTED, error 8`; nil when no event failed.
  public var rpingLine: String? {
    event.map { "cma event \($0), error \(status)" }
  }

  /// `cma event NAME, error N: message`, or `operation failed: ENAME (text): message`.
  public var description: String {
    if let verbs { return verbs.description }
    if let rpingLine { return "\(rpingLine): \(message)" }
    let name = VerbsError(.other, operation: operation, errno: errno, message: "").errnoName
    return "\(operation) failed: \(name) (\(errnoText(errno))): \(message)"
  }
}
