import Testing
import Verbs

@testable import RDMACM

#if canImport(Glibc)
  import Glibc
#endif

@Suite struct CMEventTests {
  static let names: [(CMEvent.Kind, String)] = [
    (CMEvent.Kind.rejected, "RDMA_CM_EVENT_REJECTED"),
    (CMEvent.Kind.addressResolved, "RDMA_CM_EVENT_ADDR_RESOLVED"),
    (CMEvent.Kind.established, "RDMA_CM_EVENT_ESTABLISHED"),
    (CMEvent.Kind.disconnected, "RDMA_CM_EVENT_DISCONNECTED"),
    (CMEvent.Kind.unreachable, "RDMA_CM_EVENT_UNREACHABLE"),
  ]

  @Test func kindNamesAreTheCNames() {
    for (kind, name) in Self.names {
      #expect(kind.description == name)
    }
  }

  @Test func failureKinds() {
    #expect(CMEvent.Kind.rejected.failure == .rejected)
    #expect(CMEvent.Kind.addressError.failure == .addressError)
    #expect(CMEvent.Kind.established.failure == nil)
    #expect(CMEvent.Kind.connectRequest.failure == nil)
  }
}

@Suite struct CMErrorTests {
  @Test func eventErrorsReadLikeRping() {
    let error = CMError(
      .rejected, operation: "rdma_connect", event: .rejected, status: 8, message: "nobody home")
    #expect(error.rpingLine == "cma event RDMA_CM_EVENT_REJECTED, error 8")
    #expect(error.description == "cma event RDMA_CM_EVENT_REJECTED, error 8: nobody home")
  }

  @Test func callErrorsNameTheErrno() {
    let error = CMError(.other, operation: "rdma_bind_addr", errno: EADDRINUSE, message: "busy")
    #expect(error.rpingLine == nil)
    #expect(error.description.hasPrefix("rdma_bind_addr failed: EADDRINUSE ("))
    #expect(error.description.hasSuffix("): busy"))
  }

  @Test func verbsErrorsKeepTheirDetail() {
    let verbs = VerbsError(
      .resourceExhausted, operation: "ibv_alloc_pd", errno: ENOMEM, message: "x")
    let error = CMError(verbs)
    #expect(error.code == .verbs)
    #expect(error.verbs == verbs)
    #expect(error.description == verbs.description)
  }

  /// Issue 10, cause 10: a stale connection request is not "one QP per id".
  @Test func cause10StaleRequestIsNamedAsSuch() {
    let stale = ConnectionID.queuePairRefusal(errno: EINVAL, capacity: QueuePairCapacity())
    #expect(stale.message.contains("request went stale"), "\(stale)")
    #expect(!stale.message.contains("only one QP"))
    #expect(stale.operation == "rdma_create_qp" && stale.errno == EINVAL)
    let full = ConnectionID.queuePairRefusal(errno: ENOMEM, capacity: QueuePairCapacity())
    #expect(full.code == .resourceExhausted && full.message.contains("refused a queue pair"))
  }

  @Test func explanationsNameTheCause() {
    func event(_ kind: CMEvent.Kind, _ status: Int32) -> CMEvent {
      CMEvent(kind: kind, status: status)
    }
    let peer = try? SocketAddress(host: "198.18.0.1", port: 7174)
    #expect(ConnectionID.explain(event(.rejected, 8), peer: peer).contains("nothing is listening"))
    #expect(ConnectionID.explain(event(.addressError, -ENODEV), peer: peer).contains("127.0.0.1"))
    #expect(ConnectionID.explain(event(.disconnected, 0), peer: nil) == "the peer disconnected")
  }
}

@Suite struct ConnectionParametersTests {
  @Test func rpingDefaults() {
    let p = ConnectionParameters()
    #expect(p.responderResources == 1)
    #expect(p.initiatorDepth == 1)
    #expect(p.retryCount == 7)
    #expect(p.rnrRetryCount == 7)
    #expect(p.privateData.isEmpty)
  }

  static let invalid: [ConnectionParameters] = [
    ConnectionParameters(retryCount: 8), ConnectionParameters(rnrRetryCount: -1),
    ConnectionParameters(responderResources: 256),
    ConnectionParameters(privateData: [UInt8](repeating: 0, count: 57)),
  ]

  @Test func rejectsOutOfRange() {
    for parameters in Self.invalid {
      #expect(throws: CMError.self) { try parameters.validate(operation: "rdma_connect") }
    }
  }

  @Test func convertsToC() {
    let p = ConnectionParameters(
      responderResources: 2, initiatorDepth: 3, retryCount: 4, rnrRetryCount: 5,
      privateData: [1, 2, 3])
    p.withC { c in
      let value = c.pointee
      let fields = [
        value.responder_resources, value.initiator_depth, value.retry_count,
        value.rnr_retry_count, value.private_data_len,
      ]
      #expect(fields == [2, 3, 4, 5, 3])
    }
  }
}

@Suite struct SocketAddressTests {
  @Test func ipv4() throws {
    var address = try SocketAddress(host: "198.18.0.1", port: 7174)
    #expect(address.port == 7174)
    #expect(address.description == "198.18.0.1:7174")
    address.port = 1
    #expect(address.description == "198.18.0.1:1")
  }

  @Test func ipv6() throws {
    let address = try SocketAddress(host: "::1", port: 9)
    #expect(address.description == "[::1]:9")
  }

  @Test func wildcard() {
    #expect(SocketAddress.any(port: 7174).description == "0.0.0.0:7174")
  }

  @Test func unresolvable() {
    #expect(throws: CMError.self) { try SocketAddress(host: "no.such.host.invalid") }
  }
}
