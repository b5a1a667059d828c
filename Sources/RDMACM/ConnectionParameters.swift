internal import CRDMA

/// What a connect or accept asks of the connection (`struct rdma_conn_param`).
public struct ConnectionParameters: Sendable, Hashable {
  /// RDMA READs and atomics this side will serve for the peer at once
  /// (`responder_resources`). A side that others RDMA READ from needs at
  /// least 1: the kernel grants remote read access to the QP only then.
  public var responderResources: Int
  /// RDMA READs and atomics this side may have outstanding (`initiator_depth`).
  public var initiatorDepth: Int
  /// Transport retries before a send fails (`retry_count`, 0...7).
  public var retryCount: Int
  /// Retries after the peer had no receive posted (`rnr_retry_count`, 0...7; 7 = forever).
  public var rnrRetryCount: Int
  /// Up to 56 bytes for the peer (`private_data`, on the TCP port space).
  public var privateData: [UInt8]

  /// Creates parameters; the defaults are rping's (1, 1, 7, 7, no data).
  public init(
    responderResources: Int = 1, initiatorDepth: Int = 1, retryCount: Int = 7,
    rnrRetryCount: Int = 7, privateData: [UInt8] = []
  ) {
    self.responderResources = responderResources
    self.initiatorDepth = initiatorDepth
    self.retryCount = retryCount
    self.rnrRetryCount = rnrRetryCount
    self.privateData = privateData
  }

  func validate(operation: String) throws(CMError) {
    for (name, value) in [
      ("responderResources", responderResources), ("initiatorDepth", initiatorDepth),
    ] where !(0...255).contains(value) {
      throw CMError(
        .invalidArgument, operation: operation, errno: EINVAL,
        message: "\(name) must be between 0 and 255; got \(value)")
    }
    for (name, value) in [("retryCount", retryCount), ("rnrRetryCount", rnrRetryCount)]
    where !(0...7).contains(value) {
      throw CMError(
        .invalidArgument, operation: operation, errno: EINVAL,
        message: "\(name) is a 3-bit field (0...7); got \(value)")
    }
    if privateData.count > 56 {
      throw CMError(
        .invalidArgument, operation: operation, errno: EINVAL,
        message: "private data is limited to 56 bytes on the TCP port space; "
          + "got \(privateData.count)")
    }
  }

  /// Calls `body` with the C struct; its private data pointer is valid only inside.
  func withC<R>(_ body: (UnsafeMutablePointer<rdma_conn_param>) -> R) -> R {
    privateData.withUnsafeBytes { bytes in
      var param = rdma_conn_param()
      param.responder_resources = UInt8(responderResources)
      param.initiator_depth = UInt8(initiatorDepth)
      param.retry_count = UInt8(retryCount)
      param.rnr_retry_count = UInt8(rnrRetryCount)
      param.private_data = bytes.isEmpty ? nil : bytes.baseAddress
      param.private_data_len = UInt8(bytes.count)
      return body(&param)
    }
  }
}
