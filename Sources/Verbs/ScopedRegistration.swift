#if canImport(Glibc)
  import Glibc
#endif

/// Registrations of Swift-managed storage (arrays and other contiguous
/// collections) that last exactly as long as one closure: the storage is
/// only guaranteed to stay put while its `withUnsafe...Bytes` call runs, so
/// the region is handed to `body` as a borrowed, non-escaping
/// ``MemoryRegion`` and deregistered before the call returns.
///
/// Both tiers offer these; the code is written once here.
enum ScopedRegistration {
  static func run<R>(
    _ core: ProtectionDomainCore, _ bytes: UnsafeMutableRawBufferPointer, access: MemoryAccess,
    _ body: (borrowing MemoryRegion) throws -> R
  ) throws -> R {
    let mr = try core.register(
      address: try Registration.start(of: bytes), length: bytes.count, access: access, iova: nil)
    let region = MemoryRegion(raw: mr.raw, iova: mr.iova, access: access, owner: bytes)
    let result = try body(region)
    try region.deregister()
    return result
  }

  static func runReadOnly<R>(
    _ core: ProtectionDomainCore, _ bytes: some Sequence<UInt8>, access: MemoryAccess,
    _ body: (borrowing MemoryRegion) throws -> R
  ) throws -> R {
    if access.needsWritablePages {
      throw VerbsError(
        .invalidArgument, operation: "ibv_reg_mr", errno: EINVAL,
        message: "access \(access) lets the HCA write, but these bytes are read-only to Swift; "
          + "register an inout [UInt8] (withRegistration(of:)) or a buffer to receive data, "
          + "or use read-only access such as [.remoteRead]", checkedBeforeCall: true)
    }
    let outcome = try bytes.withContiguousStorageIfAvailable { storage in
      // Registration takes a mutable pointer because writable regions need
      // one; with the access checked above the HCA only reads.
      let raw = UnsafeMutableRawBufferPointer(mutating: UnsafeRawBufferPointer(storage))
      return try run(core, raw, access: access, body)
    }
    guard let outcome else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_reg_mr", errno: EINVAL,
        message: "the collection has no contiguous storage to register; copy it into an array "
          + "or a buffer first", checkedBeforeCall: true)
    }
    return outcome
  }
}

extension ProtectionDomain {
  /// Registers the array's storage, runs `body` with the region, and
  /// deregisters it before returning, reporting a failed deregistration.
  /// The region cannot escape `body`. The C functions are
  /// `ibv_reg_mr_iova2` and `ibv_dereg_mr`.
  ///
  /// The array is `inout` so that Swift gives the HCA unique, writable
  /// storage for the whole call (no copy-on-write behind its back).
  public func withRegistration<R>(
    of array: inout [UInt8], access: MemoryAccess = .localWrite,
    _ body: (borrowing MemoryRegion) throws -> R
  ) throws -> R {
    try array.withUnsafeMutableBytes { try ScopedRegistration.run(core, $0, access: access, body) }
  }

  /// Registers the contiguous storage of `bytes` (an array, a slice, `Data`)
  /// read-only for the duration of `body`, for peers to RDMA READ or for
  /// local SENDs and WRITEs. Access that lets the HCA write is refused:
  /// the bytes are immutable to Swift.
  public func withRegistration<R>(
    ofReadOnly bytes: some Sequence<UInt8>, access: MemoryAccess = [.remoteRead],
    _ body: (borrowing MemoryRegion) throws -> R
  ) throws -> R {
    try ScopedRegistration.runReadOnly(core, bytes, access: access, body)
  }
}

extension SharedProtectionDomain {
  /// Registers the array's storage for the duration of `body`; see
  /// ``ProtectionDomain/withRegistration(of:access:_:)``.
  public func withRegistration<R>(
    of array: inout [UInt8], access: MemoryAccess = .localWrite,
    _ body: (borrowing MemoryRegion) throws -> R
  ) throws -> R {
    try scoped { () throws -> R in
      try array.withUnsafeMutableBytes {
        try ScopedRegistration.run(core, $0, access: access, body)
      }
    }
  }

  /// Registers `bytes` read-only for the duration of `body`; see
  /// ``ProtectionDomain/withRegistration(ofReadOnly:access:_:)``.
  public func withRegistration<R>(
    ofReadOnly bytes: some Sequence<UInt8>, access: MemoryAccess = [.remoteRead],
    _ body: (borrowing MemoryRegion) throws -> R
  ) throws -> R {
    try scoped { () throws -> R in
      try ScopedRegistration.runReadOnly(core, bytes, access: access, body)
    }
  }

  /// Counts a scoped region as a child for its lifetime, so the domain
  /// cannot be closed under it.
  private func scoped<R>(_ body: () throws -> R) throws -> R {
    guard gate.enter() else {
      throw VerbsError.closed("protection domain", operation: "ibv_reg_mr")
    }
    gate.childCreated()
    gate.leave()
    defer { gate.childReleased() }
    return try body()
  }
}
