import Phyr
import Verbs

/// A memory region registered with a plan, together with that plan.
///
/// It borrows the protection domain and the umem, so it outlives neither.
public struct PlannedMemoryRegion: ~Copyable, ~Escapable {
  /// The registered region; its IOVA is the plan's.
  public var region: MemoryRegion
  /// The plan it was registered with.
  public let plan: RegistrationPlan

  @_lifetime(copy region, borrow umem)
  init(region: consuming MemoryRegion, plan: RegistrationPlan, umem: borrowing Umem) {
    self.region = region
    self.plan = plan
  }

  /// Deregisters now and reports failure. The C function is `ibv_dereg_mr`.
  public consuming func deregister() throws(VerbsError) {
    try region.deregister()
  }
}

extension ProtectionDomain {
  /// Registers a pinned umem at the IOVA its plan chose. The C function is
  /// `ibv_reg_mr_iova2`.
  ///
  /// The kernel pins again and computes its own page size; the plan
  /// predicts that choice (rxe maps at 4 KiB whatever it advertises). Plain
  /// ``register(unsafeAddress:length:access:iova:)`` stays the cheap path:
  /// planning is opt-in.
  ///
  /// - Throws: ``VerbsError`` from registration, or one with
  ///   `checkedBeforeCall` when the plan is for another length.
  @_lifetime(borrow self, borrow umem)
  public func register(
    _ umem: borrowing Umem, plan: RegistrationPlan, access: MemoryAccess = .localWrite
  ) throws(VerbsError) -> PlannedMemoryRegion {
    guard let pointer = UnsafeMutableRawPointer(bitPattern: UInt(umem.address)) else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_reg_mr", errno: 22,
        message: "the umem starts at address 0",
        checkedBeforeCall: true)
    }
    let region = try register(
      unsafeAddress: pointer, length: Int(umem.length), access: access, iova: plan.iova)
    return PlannedMemoryRegion(region: region, plan: plan, umem: umem)
  }

  /// Resolves the umem's layout, plans it for `pageSizes` (the device's
  /// `page_size_cap`) under `iova`, and registers it with that plan.
  @_lifetime(borrow self, borrow umem)
  public func register(
    _ umem: borrowing Umem, pageSizes: PageSizes, iova: IOVAPolicy = .any,
    access: MemoryAccess = .localWrite
  ) throws(UmemError) -> PlannedMemoryRegion {
    let plan = try umem.resolve().plan(pageSizes: pageSizes, iova: iova)
    do {
      return try register(umem, plan: plan, access: access)
    } catch {
      throw UmemError(
        .other, operation: error.operation, errno: error.errno, message: error.message,
        checkedBeforeCall: error.checkedBeforeCall)
    }
  }
}
