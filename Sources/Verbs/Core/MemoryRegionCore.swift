package import CRDMA

/// The calls made on a registered memory region, written once for both
/// tiers: ``MemoryRegion`` (scoped) and ``SharedMemoryRegion`` (owned). A
/// non-owning view.
package struct MemoryRegionCore {
  package let raw: UnsafeMutablePointer<ibv_mr>

  package init(raw: UnsafeMutablePointer<ibv_mr>) { self.raw = raw }

  /// Deregisters. The C function is `ibv_dereg_mr`.
  func deregister() throws(VerbsError) {
    let result = ibv_dereg_mr(raw)
    if result != 0 {
      throw VerbsError(
        result == EBUSY ? .busy : .other, operation: "ibv_dereg_mr", errno: result,
        message: result == EINVAL || result == EBUSY
          ? "the region is still in use (a memory window may be bound to it); unbind it first"
          : "the device failed to deregister the region")
    }
  }

  /// Changes the access flags in place. The C function is `ibv_rereg_mr`.
  func reregister(access: MemoryAccess) throws(VerbsError) {
    try Registration.checkAccess(access, operation: "ibv_rereg_mr")
    CRDMA_set_errno(0)
    let result = ibv_rereg_mr(
      raw, Int32(IBV_REREG_MR_CHANGE_ACCESS.rawValue), nil, nil, 0,
      Int32(bitPattern: access.rawValue))
    if result == 0 { return }
    let code = CRDMA_errno()
    if code == EOPNOTSUPP || code == ENOSYS || code == EPROTONOSUPPORT {
      throw VerbsError(
        .notSupported, operation: "ibv_rereg_mr", errno: code,
        message: "re-registration is not supported by this device; deregister and register again")
    }
    throw VerbsError(
      .other, operation: "ibv_rereg_mr", errno: code,
      message: "re-registration failed with code \(result); the region keeps its old access")
  }

  /// A local scatter/gather entry for `count` bytes at `offset` into a
  /// region of `length` bytes at `iova` with local key `lkey`.
  ///
  /// Addresses inside a region are IOVAs for local work requests too, so the
  /// entry starts at `iova + offset`. Cannot overflow: `offset + count` is
  /// checked against `length` first, and registration checked that
  /// `iova + length - 1` fits in 64 bits.
  static func scatterGather(
    iova: UInt64, length: Int, lkey: UInt32, offset: Int, count: Int?
  ) throws(VerbsError) -> ScatterGatherElement {
    guard offset >= 0, offset <= length else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_sge", errno: EINVAL,
        message: "offset \(offset) is outside the region's \(length) bytes",
        checkedBeforeCall: true)
    }
    let count = count ?? (length - offset)
    guard count >= 0, count <= length - offset else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_sge", errno: EINVAL,
        message: "\(count) bytes at offset \(offset) run past the region's \(length) bytes",
        checkedBeforeCall: true)
    }
    guard let entryLength = UInt32(exactly: count) else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_sge", errno: EINVAL,
        message: "one scatter/gather entry covers at most 4 GiB - 1 bytes; got \(count). "
          + "Split the transfer into several work requests", checkedBeforeCall: true)
    }
    return ScatterGatherElement(address: iova + UInt64(offset), length: entryLength, lkey: lkey)
  }
}
