import Phyr
import Verbs

#if canImport(Glibc)
  import Glibc
#endif

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
  /// ``unsafeRegister(_:access:iova:)`` stays the cheap path: planning is
  /// opt-in.
  ///
  /// - Throws: ``VerbsError`` from registration, or one with
  ///   `checkedBeforeCall` when the plan was made for other memory (another
  ///   address, length or page count than this umem's).
  @_lifetime(borrow self, borrow umem)
  public func register(
    _ umem: borrowing Umem, plan: RegistrationPlan, access: MemoryAccess = .localWrite
  ) throws(VerbsError) -> PlannedMemoryRegion {
    let memory = try umem.checkedMemory(for: plan)
    let region = try unsafeRegister(memory, access: access, iova: plan.iova)
    return PlannedMemoryRegion(region: region, plan: plan, umem: umem)
  }

  /// Registers a pinned umem at its own address, without a plan (what
  /// `ibv_reg_mr` does). The region borrows the umem, so the memory stays
  /// pinned and mapped for as long as it exists. The C function is
  /// `ibv_reg_mr_iova2`.
  @_lifetime(borrow self, borrow umem)
  public func register(_ umem: borrowing Umem, access: MemoryAccess = .localWrite)
    throws(VerbsError) -> MemoryRegion
  {
    let region = try unsafeRegister(try umem.memory(), access: access)
    return _overrideLifetime(region, borrowing: umem)
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
      throw UmemError(error)
    }
  }
}

extension Umem {
  /// The umem's bytes as a buffer pointer, after checking that `plan` was
  /// made for them.
  func checkedMemory(for plan: RegistrationPlan) throws(VerbsError)
    -> UnsafeMutableRawBufferPointer
  {
    func mismatch(_ what: String, _ planned: String, _ actual: String) -> VerbsError {
      VerbsError(
        .invalidArgument, operation: "ibv_reg_mr", errno: EINVAL,
        message: "the plan was made for other memory: its \(what) is \(planned), this umem's "
          + "is \(actual). Plan this umem (umem.resolve().plan(...)) and register with that plan",
        checkedBeforeCall: true)
    }
    func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
    guard plan.address == address else {
      throw mismatch("address", hex(plan.address), hex(address))
    }
    guard plan.length == length else {
      throw mismatch("length", "\(plan.length) bytes", "\(length) bytes")
    }
    guard plan.pageCount == pageCount else {
      throw mismatch("page count", "\(plan.pageCount)", "\(pageCount)")
    }
    return try memory()
  }

  /// The umem's bytes as a buffer pointer.
  func memory() throws(VerbsError) -> UnsafeMutableRawBufferPointer {
    func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
    // A umem's range was checked when it was pinned: nonzero, below 2^64,
    // and its length fits in Int (it was mapped).
    guard let base = UnsafeMutableRawPointer(bitPattern: UInt(address)),
      let count = Int(exactly: length)
    else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_reg_mr", errno: EINVAL,
        message: "the umem's range \(hex(address)) + \(length) cannot be addressed",
        checkedBeforeCall: true)
    }
    return UnsafeMutableRawBufferPointer(start: base, count: count)
  }
}
