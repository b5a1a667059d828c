internal import CRDMA

/// One connection-management event (`struct rdma_cm_event`), copied out of
/// librdmacm and already acknowledged (`rdma_ack_cm_event`), so holding it
/// ties up nothing.
public struct CMEvent: Sendable, Hashable, CustomStringConvertible {
  /// The event type (`enum rdma_cm_event_type`); its description is the C
  /// name, such as `RDMA_CM_EVENT_ESTABLISHED` (`rdma_event_str`).
  public struct Kind: Sendable, Hashable, CustomStringConvertible {
    /// The raw `RDMA_CM_EVENT_*` value.
    public var rawValue: UInt32
    /// Creates a kind from its raw value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let addressResolved = Kind(rawValue: RDMA_CM_EVENT_ADDR_RESOLVED.rawValue)
    public static let addressError = Kind(rawValue: RDMA_CM_EVENT_ADDR_ERROR.rawValue)
    public static let routeResolved = Kind(rawValue: RDMA_CM_EVENT_ROUTE_RESOLVED.rawValue)
    public static let routeError = Kind(rawValue: RDMA_CM_EVENT_ROUTE_ERROR.rawValue)
    public static let connectRequest = Kind(rawValue: RDMA_CM_EVENT_CONNECT_REQUEST.rawValue)
    public static let connectResponse = Kind(rawValue: RDMA_CM_EVENT_CONNECT_RESPONSE.rawValue)
    public static let connectError = Kind(rawValue: RDMA_CM_EVENT_CONNECT_ERROR.rawValue)
    public static let unreachable = Kind(rawValue: RDMA_CM_EVENT_UNREACHABLE.rawValue)
    public static let rejected = Kind(rawValue: RDMA_CM_EVENT_REJECTED.rawValue)
    public static let established = Kind(rawValue: RDMA_CM_EVENT_ESTABLISHED.rawValue)
    public static let disconnected = Kind(rawValue: RDMA_CM_EVENT_DISCONNECTED.rawValue)
    public static let deviceRemoval = Kind(rawValue: RDMA_CM_EVENT_DEVICE_REMOVAL.rawValue)
    public static let timewaitExit = Kind(rawValue: RDMA_CM_EVENT_TIMEWAIT_EXIT.rawValue)
    public static let addressChange = Kind(rawValue: RDMA_CM_EVENT_ADDR_CHANGE.rawValue)

    /// The C name, such as `RDMA_CM_EVENT_REJECTED`.
    public var description: String {
      String(cString: rdma_event_str(rdma_cm_event_type(rawValue: rawValue)))
    }

    /// The error code for events that report a failure; nil for the others.
    var failure: CMError.Code? {
      switch self {
      case .addressError: .addressError
      case .routeError: .routeError
      case .unreachable: .unreachable
      case .rejected: .rejected
      case .connectError: .connectError
      case .disconnected: .disconnected
      case .deviceRemoval: .deviceRemoved
      default: nil
      }
    }
  }

  /// What happened.
  public var kind: Kind
  /// 0, a negative errno, or (for `REJECTED`) the peer's reject reason.
  public var status: Int32
  /// Private data the peer attached to its connect, accept or reject.
  public var privateData: [UInt8]
  /// RDMA READs the peer will serve for us (`responder_resources`), from
  /// connect requests and responses.
  public var responderResources: Int
  /// RDMA READs the peer may have outstanding toward us (`initiator_depth`).
  public var initiatorDepth: Int
  /// For `CONNECT_REQUEST`: the new id, owned by whoever adopts the event.
  var requestID: UInt

  init(kind: Kind, status: Int32) {
    self.kind = kind
    self.status = status
    privateData = []
    responderResources = 0
    initiatorDepth = 0
    requestID = 0
  }

  init(_ event: UnsafeMutablePointer<rdma_cm_event>) {
    let e = event.pointee
    kind = Kind(rawValue: e.event.rawValue)
    status = e.status
    let conn = e.param.conn
    if let data = conn.private_data, conn.private_data_len > 0 {
      privateData = Array(
        UnsafeRawBufferPointer(start: data, count: Int(conn.private_data_len)))
    } else {
      privateData = []
    }
    responderResources = Int(conn.responder_resources)
    initiatorDepth = Int(conn.initiator_depth)
    requestID = kind == .connectRequest ? UInt(bitPattern: e.id) : 0
  }

  /// `RDMA_CM_EVENT_NAME, status N`.
  public var description: String { "\(kind), status \(status)" }
}
