// The patterns an application writes with the owned tier, as a new user
// wrote them first. This target is built WITHOUT the `Lifetimes`
// experimental feature: depending packages need nothing special to use the
// owned tier. That these declarations compile is the first half of the
// test; OwnedTierOnDevice runs them on rxe.

import Verbs

/// A long-lived communicator: a class holding a domain and a dictionary of
/// regions, kept for the life of the program.
final class Communicator: Sendable {
  let context: SharedDeviceContext
  let pd: SharedProtectionDomain
  let cq: SharedCompletionQueue
  let pool: RegionPool

  init(device: String?) throws {
    context = try SharedDeviceContext.open(name: device)
    pd = try context.allocateProtectionDomain()
    cq = try context.createCompletionQueue(entries: 4096)
    pool = RegionPool(pd: pd)
  }
}

/// An actor that owns registrations by name, used from many Tasks.
actor RegionPool {
  let pd: SharedProtectionDomain
  private var regions: [String: SharedMemoryRegion] = [:]

  init(pd: SharedProtectionDomain) { self.pd = pd }

  /// Registers a fresh buffer under `name` (or returns the one there).
  func region(_ name: String, bytes: Int, access: MemoryAccess) throws -> SharedMemoryRegion {
    if let region = regions[name] { return region }
    let region = try pd.register(SharedBuffer(byteCount: bytes), access: access)
    regions[name] = region
    return region
  }

  func remove(_ name: String) -> SharedMemoryRegion? { regions.removeValue(forKey: name) }

  var count: Int { regions.count }
}

/// A region that outlives the function that made it, and every variable
/// that held its domain and buffer.
func makeRegion(device: String?, bytes: Int) throws -> SharedMemoryRegion {
  let context = try SharedDeviceContext.open(name: device)
  let pd = try context.allocateProtectionDomain()
  let buffer = try SharedBuffer(byteCount: bytes)
  return try pd.register(buffer, access: [.localWrite, .remoteWrite, .remoteRead])
}

/// Regions captured by `addTask` closures and read from several Tasks.
func keysFromTasks(_ regions: [SharedMemoryRegion]) async -> [UInt32] {
  await withTaskGroup(of: UInt32.self) { group in
    for region in regions {
      group.addTask { region.lkey ^ region.rkey }
    }
    var keys: [UInt32] = []
    for await key in group { keys.append(key) }
    return keys
  }
}
