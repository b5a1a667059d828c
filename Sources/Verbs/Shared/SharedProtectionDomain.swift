package import CRDMA

/// A protection domain in the owned tier: reference-counted and `Sendable`.
/// Wraps `struct ibv_pd` (`ibv_alloc_pd`, `ibv_dealloc_pd`).
///
/// It holds its ``SharedDeviceContext`` open; every region and queue pair
/// made from it holds it in turn. It is released exactly once, after all of
/// them: by ``close()``, or when the last reference goes.
///
/// Concurrency: registering, deregistering and creating queue pairs from
/// many threads at once is safe (the kernel serializes registrations on one
/// domain). ``close()`` waits for calls already running.
///
/// The scoped counterpart is ``ProtectionDomain``; both run the same
/// registration rules and error mapping.
public final class SharedProtectionDomain: @unchecked Sendable {
  // @unchecked: `raw` is only used inside `gate`; the rest is immutable.
  package let raw: UnsafeMutablePointer<ibv_pd>
  /// The device context this domain belongs to (and keeps open).
  public let context: SharedDeviceContext
  let gate = UseGate()

  var core: ProtectionDomainCore { ProtectionDomainCore(raw: raw) }

  /// Set for a view of a domain that a scoped ``ProtectionDomain`` owns
  /// (``ProtectionDomain/unsafeSharedView()``): never deallocated here.
  private let borrowed: Bool

  init(raw: UnsafeMutablePointer<ibv_pd>, context: SharedDeviceContext) {
    self.raw = raw
    self.context = context
    self.borrowed = false
    context.gate.childCreated()
  }

  /// Wraps a domain that someone else allocated and deallocates; the
  /// caller keeps it allocated for as long as this value and everything
  /// made from it live.
  package init(borrowing raw: UnsafeMutablePointer<ibv_pd>, context: SharedDeviceContext) {
    self.raw = raw
    self.context = context
    self.borrowed = true
    context.gate.childCreated()
  }

  deinit {
    if !gate.isClosed {
      if !borrowed { _ = ibv_dealloc_pd(raw) }
      context.gate.childReleased()
    }
  }

  /// Releases the domain now and reports failure. The C function is `ibv_dealloc_pd`.
  ///
  /// Throws ``VerbsError/Code/busy`` (and leaves the domain open) while
  /// regions or queue pairs made from it are alive.
  public func close() throws(VerbsError) {
    try gate.close(
      "protection domain", children: "memory regions or queue pairs", operation: "ibv_dealloc_pd"
    ) { () throws(VerbsError) in
      if !borrowed { try core.deallocate() }
      context.gate.childReleased()
    }
  }

  /// Registers a buffer for RDMA. The region holds the buffer and this
  /// domain until it is deregistered. The C function is `ibv_reg_mr_iova2`.
  ///
  /// - Parameters:
  ///   - buffer: the memory; the region keeps it alive.
  ///   - range: the bytes to register; defaults to the whole buffer.
  ///   - access: what the HCA and peers may do; `[]` is valid.
  ///   - iova: the address peers use for the first byte; defaults to its
  ///     virtual address. Its offset within a 4 KiB page must equal the
  ///     address's.
  public func register(
    _ buffer: SharedBuffer, range: Range<Int>? = nil, access: MemoryAccess = .localWrite,
    iova: UInt64? = nil
  ) throws(VerbsError) -> SharedMemoryRegion {
    let range = range ?? 0..<buffer.count
    try buffer.check(range, operation: "ibv_reg_mr")
    return try register(
      address: buffer.baseAddress + range.lowerBound, length: range.count, access: access,
      iova: iova, memory: buffer)
  }

  /// Registers memory that the caller promises to keep mapped, at the same
  /// address, for as long as the region exists. The C function is
  /// `ibv_reg_mr_iova2`.
  ///
  /// Unsafe: nothing ties the memory's lifetime to the region's. Prefer
  /// ``register(_:range:access:iova:)`` with a ``SharedBuffer``, which can
  /// adopt memory from `allocate`, `mmap` or a file mapping and keep it alive.
  public func unsafeRegister(
    _ memory: UnsafeMutableRawBufferPointer, access: MemoryAccess = .localWrite,
    iova: UInt64? = nil
  ) throws(VerbsError) -> SharedMemoryRegion {
    try register(
      address: try Registration.start(of: memory), length: memory.count, access: access,
      iova: iova, memory: nil)
  }

  func register(
    address: UnsafeMutableRawPointer, length: Int, access: MemoryAccess, iova: UInt64?,
    memory: SharedBuffer?
  ) throws(VerbsError) -> SharedMemoryRegion {
    try gate.using("protection domain", "ibv_reg_mr") { () throws(VerbsError) in
      let mr = try core.register(address: address, length: length, access: access, iova: iova)
      return SharedMemoryRegion(
        raw: mr.raw, iova: mr.iova, access: access, domain: self, memory: memory)
    }
  }

  /// Creates a reliable-connected queue pair whose completions go to the
  /// given queues; it holds this domain and both queues.
  /// The C function is `ibv_create_qp`.
  public func createQueuePair(
    sendCompletions: SharedCompletionQueue, receiveCompletions: SharedCompletionQueue,
    capacity: QueuePairCapacity = QueuePairCapacity()
  ) throws(VerbsError) -> SharedQueuePair {
    try gate.using("protection domain", "ibv_create_qp") { () throws(VerbsError) in
      try sendCompletions.gate.using("completion queue", "ibv_create_qp") {
        () throws(VerbsError) in
        try receiveCompletions.gate.using("completion queue", "ibv_create_qp") {
          () throws(VerbsError) in
          let qp = try core.createQueuePair(
            send: sendCompletions.core.raw, receive: receiveCompletions.core.raw,
            capacity: capacity)
          return SharedQueuePair(
            raw: qp, domain: self, sendCompletions: sendCompletions,
            receiveCompletions: receiveCompletions)
        }
      }
    }
  }

  /// Makes a queue pair with another library's call (`make`, such as
  /// librdmacm's `rdma_create_qp`) while this domain and both queues are
  /// held open, and adopts it; `release` destroys it later. Returns nil when
  /// `make` does (its caller keeps the reason).
  package func adoptQueuePair(
    sendCompletions: SharedCompletionQueue, receiveCompletions: SharedCompletionQueue,
    release: @escaping @Sendable () -> Void,
    make: (
      UnsafeMutablePointer<ibv_pd>, UnsafeMutablePointer<ibv_cq>, UnsafeMutablePointer<ibv_cq>
    ) -> UnsafeMutablePointer<ibv_qp>?
  ) throws(VerbsError) -> SharedQueuePair? {
    try gate.using("protection domain", "rdma_create_qp") { () throws(VerbsError) in
      try sendCompletions.gate.using("completion queue", "rdma_create_qp") {
        () throws(VerbsError) in
        try receiveCompletions.gate.using("completion queue", "rdma_create_qp") {
          () throws(VerbsError) in
          guard let qp = make(raw, sendCompletions.core.raw, receiveCompletions.core.raw) else {
            return nil
          }
          return SharedQueuePair(
            adopting: qp, domain: self, sendCompletions: sendCompletions,
            receiveCompletions: receiveCompletions, release: release)
        }
      }
    }
  }
}
