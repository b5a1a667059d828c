package import CRDMA

/// The calls made on a protection domain, written once for both tiers:
/// ``ProtectionDomain`` (scoped) and ``SharedProtectionDomain`` (owned)
/// forward here, so both follow one set of registration rules
/// (``Registration``) and one error mapping. A non-owning view.
package struct ProtectionDomainCore {
  package let raw: UnsafeMutablePointer<ibv_pd>

  package init(raw: UnsafeMutablePointer<ibv_pd>) { self.raw = raw }

  /// Releases the domain. The C function is `ibv_dealloc_pd`.
  func deallocate() throws(VerbsError) {
    let result = ibv_dealloc_pd(raw)
    if result != 0 {
      throw VerbsError(
        result == EBUSY ? .busy : .other, operation: "ibv_dealloc_pd", errno: result,
        message: "the protection domain is still in use by a memory region, memory window "
          + "or queue pair; release those first")
    }
  }

  /// Checks the rules in Swift, then registers. The C function is `ibv_reg_mr_iova2`.
  func register(
    address: UnsafeMutableRawPointer, length: Int, access: MemoryAccess, iova: UInt64?
  ) throws(VerbsError) -> (raw: UnsafeMutablePointer<ibv_mr>, iova: UInt64) {
    let start = UInt64(UInt(bitPattern: address))
    let iova = iova ?? start
    try Registration.validate(
      address: start, length: length, iova: iova, access: access, context: raw.pointee.context)
    CRDMA_set_errno(0)
    guard let mr = ibv_reg_mr_iova2(raw, address, length, iova, access.rawValue) else {
      let code = CRDMA_errno()
      throw Registration.failure(
        operation: "ibv_reg_mr", errno: code, access: access, address: start,
        length: UInt64(length))
    }
    return (mr, iova)
  }

  /// Registers a dma-buf by file descriptor. The C function is `ibv_reg_dmabuf_mr`.
  func registerDMABuf(
    fileDescriptor: Int32, offset: UInt64, length: Int, iova: UInt64, access: MemoryAccess
  ) throws(VerbsError) -> UnsafeMutablePointer<ibv_mr> {
    try Registration.checkAccess(access, operation: "ibv_reg_dmabuf_mr")
    guard length > 0 else {
      throw Registration.zeroLength(operation: "ibv_reg_dmabuf_mr")
    }
    CRDMA_set_errno(0)
    guard
      let mr = ibv_reg_dmabuf_mr(
        raw, offset, length, iova, fileDescriptor, Int32(bitPattern: access.rawValue))
    else {
      let code = CRDMA_errno()
      throw Registration.failure(
        operation: "ibv_reg_dmabuf_mr", errno: code, access: access, address: nil,
        length: UInt64(length))
    }
    return mr
  }

  /// Creates a reliable-connected queue pair. The C function is `ibv_create_qp`.
  func createQueuePair(
    send: UnsafeMutablePointer<ibv_cq>, receive: UnsafeMutablePointer<ibv_cq>,
    capacity: QueuePairCapacity
  ) throws(VerbsError) -> UnsafeMutablePointer<ibv_qp> {
    func u32(_ value: Int, _ name: String) throws(VerbsError) -> UInt32 {
      guard let v = UInt32(exactly: value) else {
        throw VerbsError(
          .invalidArgument, operation: "ibv_create_qp", errno: EINVAL,
          message: "\(name) must be between 0 and \(UInt32.max); got \(value)",
          checkedBeforeCall: true)
      }
      return v
    }
    var attr = ibv_qp_init_attr()
    attr.send_cq = send
    attr.recv_cq = receive
    attr.qp_type = IBV_QPT_RC
    attr.sq_sig_all = 0
    attr.cap.max_send_wr = try u32(capacity.sendRequests, "sendRequests")
    attr.cap.max_recv_wr = try u32(capacity.receiveRequests, "receiveRequests")
    attr.cap.max_send_sge = try u32(capacity.sendScatterGather, "sendScatterGather")
    attr.cap.max_recv_sge = try u32(capacity.receiveScatterGather, "receiveScatterGather")
    attr.cap.max_inline_data = try u32(capacity.inlineData, "inlineData")
    guard let qp = ibv_create_qp(raw, &attr) else {
      let code = CRDMA_errno()
      throw VerbsError(
        .resourceExhausted, operation: "ibv_create_qp", errno: code,
        message: "the device refused a queue pair with \(capacity); "
          + "compare with attributes().maxWorkRequestsPerQueue and maxQueuePairs")
    }
    return qp
  }
}
