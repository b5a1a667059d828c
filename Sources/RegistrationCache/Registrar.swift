import Verbs

/// What a registration gave the cache: keys, IOVA, and the region that owns
/// them (nil for a test registrar, which registers nothing).
package struct RegisteredMemory: Sendable {
  package var lkey: UInt32
  package var rkey: UInt32
  package var iova: UInt64
  package var region: SharedMemoryRegion?

  package init(lkey: UInt32, rkey: UInt32, iova: UInt64, region: SharedMemoryRegion?) {
    self.lkey = lkey
    self.rkey = rkey
    self.iova = iova
    self.region = region
  }
}

/// How the cache registers a miss. The real one calls `ibv_reg_mr` through
/// ``SharedProtectionDomain``; tests and the index benchmark swap in one
/// that only counts, so the index, LRU and policies run without a device.
package struct Registrar: Sendable {
  package var register:
    @Sendable (_ start: UInt64, _ length: Int, _ access: MemoryAccess) throws(VerbsError) ->
      RegisteredMemory

  /// Called when the cache deregisters a registration (after closing its
  /// region): how a test registrar learns when one ends.
  package var deregistered: (@Sendable (RegisteredMemory) -> Void)?

  package init(
    register:
      @escaping @Sendable (UInt64, Int, MemoryAccess) throws(VerbsError) ->
      RegisteredMemory,
    deregistered: (@Sendable (RegisteredMemory) -> Void)? = nil
  ) {
    self.register = register
    self.deregistered = deregistered
  }

  /// Registers with `ibv_reg_mr` on `domain`; the region is not tied to any
  /// buffer, because the cache's monitor (or the application's explicit
  /// invalidation) is what keeps it honest about the memory.
  static func verbs(_ domain: SharedProtectionDomain) -> Registrar {
    Registrar { start, length, access throws(VerbsError) in
      let memory = UnsafeMutableRawBufferPointer(
        start: UnsafeMutableRawPointer(bitPattern: UInt(start)), count: length)
      let region = try domain.unsafeRegister(memory, access: access)
      return RegisteredMemory(
        lkey: region.lkey, rkey: region.rkey, iova: region.iova, region: region)
    }
  }
}
