package import CRDMA
import Synchronization

/// A reliable-connected queue pair in the owned tier: reference-counted and
/// `Sendable`. Wraps `struct ibv_qp` (`IBV_QPT_RC`); destroyed exactly once
/// with `ibv_destroy_qp`, by ``close()`` or when the last reference goes.
/// It holds its domain and both completion queues.
///
/// Concurrency: ``postSend(_:_:id:signaled:inline:)`` and
/// ``postReceive(_:id:)`` may be called from many threads and Tasks at once;
/// the provider serializes each work queue (`ibv_post_send` and
/// `ibv_post_recv` are thread-safe in libibverbs). State changes
/// (``connect(to:from:access:readAtomics:)``) are taken one at a time.
public final class SharedQueuePair: @unchecked Sendable {
  // @unchecked: `raw` is used only inside `gate`; state changes are
  // serialized by `modifying`; the rest is immutable.
  package let raw: UnsafeMutablePointer<ibv_qp>
  /// The domain the queue pair belongs to (and keeps alive).
  public let domain: SharedProtectionDomain
  /// Where send completions go (kept alive).
  public let sendCompletions: SharedCompletionQueue
  /// Where receive completions go (kept alive).
  public let receiveCompletions: SharedCompletionQueue
  /// The queue pair number (`qp_num`).
  public let number: UInt32
  let gate = UseGate()
  private let modifying = Mutex<Void>(())
  /// Set for a queue pair that librdmacm made (`rdma_create_qp`): destroys
  /// it with `rdma_destroy_qp` and holds the connection id until then.
  private let release: (@Sendable () -> Void)?

  var core: QueuePairCore { QueuePairCore(raw: raw) }

  convenience init(
    raw: UnsafeMutablePointer<ibv_qp>, domain: SharedProtectionDomain,
    sendCompletions: SharedCompletionQueue, receiveCompletions: SharedCompletionQueue
  ) {
    self.init(
      adopting: raw, domain: domain, sendCompletions: sendCompletions,
      receiveCompletions: receiveCompletions, release: nil)
  }

  /// Adopts a queue pair that another library made and destroys
  /// (`rdma_create_qp`, `rdma_destroy_qp`); `release` destroys it and keeps
  /// alive what it needs until then.
  package init(
    adopting raw: UnsafeMutablePointer<ibv_qp>, domain: SharedProtectionDomain,
    sendCompletions: SharedCompletionQueue, receiveCompletions: SharedCompletionQueue,
    release: (@Sendable () -> Void)?
  ) {
    self.raw = raw
    self.domain = domain
    self.sendCompletions = sendCompletions
    self.receiveCompletions = receiveCompletions
    self.number = raw.pointee.qp_num
    self.release = release
    domain.gate.childCreated()
    sendCompletions.gate.childCreated()
    receiveCompletions.gate.childCreated()
  }

  deinit {
    if !gate.isClosed {
      if let release { release() } else { _ = ibv_destroy_qp(raw) }
      releaseParents()
    }
  }

  private func releaseParents() {
    domain.gate.childReleased()
    sendCompletions.gate.childReleased()
    receiveCompletions.gate.childReleased()
  }

  /// Destroys the queue pair now and reports failure. The C function is
  /// `ibv_destroy_qp` (`rdma_destroy_qp` for one made by librdmacm).
  public func close() throws(VerbsError) {
    try gate.close("queue pair", children: "children", operation: "ibv_destroy_qp") {
      () throws(VerbsError) in
      if let release { release() } else { try core.destroy() }
      releaseParents()
    }
  }

  /// Describes this side for the peer; see ``QueuePair/endpoint(port:gidIndex:)``.
  public func endpoint(port: Int = 1, gidIndex: Int? = nil) throws(VerbsError) -> QueuePairEndpoint
  {
    try gate.using("queue pair", "ibv_query_port") { () throws(VerbsError) in
      try core.endpoint(port: port, gidIndex: gidIndex)
    }
  }

  /// Moves the queue pair through INIT, RTR and RTS so it talks to `remote`.
  /// The C function is `ibv_modify_qp`.
  public func connect(
    to remote: QueuePairEndpoint, from local: QueuePairEndpoint,
    access: MemoryAccess = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic],
    readAtomics: Int = 16
  ) throws(VerbsError) {
    try modifying.withLock { _ throws(VerbsError) in
      try gate.using("queue pair", "ibv_modify_qp") { () throws(VerbsError) in
        try core.connect(to: remote, from: local, access: access, readAtomics: readAtomics)
      }
    }
  }

  /// Connects this queue pair and `other`, on the same device, to each
  /// other; see ``QueuePair/connectLoopback(with:access:)``.
  public func connectLoopback(
    with other: SharedQueuePair,
    access: MemoryAccess = [.localWrite, .remoteWrite, .remoteRead, .remoteAtomic]
  ) throws(VerbsError) {
    let mine = try endpoint()
    let theirs = try other.endpoint()
    try connect(to: theirs, from: mine, access: access)
    try other.connect(to: mine, from: theirs, access: access)
  }

  /// Posts one receive. The C function is `ibv_post_recv`.
  public func postReceive(_ element: ScatterGatherElement, id: UInt64) throws(VerbsError) {
    try gate.using("queue pair", "ibv_post_recv") { () throws(VerbsError) in
      try core.postReceive(element, id: id)
    }
  }

  /// Posts one send-queue work request using `element` as the local memory.
  /// The C function is `ibv_post_send`.
  public func postSend(
    _ operation: SendOperation, _ element: ScatterGatherElement, id: UInt64,
    signaled: Bool = true, inline: Bool = false
  ) throws(VerbsError) {
    try gate.using("queue pair", "ibv_post_send") { () throws(VerbsError) in
      try core.postSend(operation, element, id: id, signaled: signaled, inline: inline)
    }
  }
}
