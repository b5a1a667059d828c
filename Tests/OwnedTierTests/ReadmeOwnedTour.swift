// The README's second tour (the owned tier), compiled here and run on rxe
// by OwnedTierOnDevice; ci/test checks that README.md shows this code
// verbatim between the marker lines. Built without the Lifetimes feature.
import Synchronization
import Verbs

// README-BEGIN
/// A pool of registered buffers that lives as long as the program and is
/// shared by every thread and Task: a class can hold the domain and the
/// regions, because owned-tier types are reference-counted and Sendable.
final class BufferPool: Sendable {
  let regions: [SharedMemoryRegion]  // each holds its buffer, domain and device
  private let idle: Mutex<[Int]>

  init(device: String? = nil, buffers: Int, bytes: Int) throws {
    let context = try SharedDeviceContext.open(name: device)
    let pd = try context.allocateProtectionDomain()  // keeps the context open
    regions = try (0..<buffers).map { _ in
      try pd.register(
        SharedBuffer(byteCount: bytes), access: [.localWrite, .remoteWrite, .remoteRead])
    }
    idle = Mutex(Array(regions.indices))
  }  // context and pd go out of scope here; the regions keep them alive

  /// Takes an idle buffer, or nil when all are lent out.
  func take() -> SharedMemoryRegion? {
    idle.withLock { $0.popLast() }.map { regions[$0] }
  }

  /// Returns a buffer taken with `take()`.
  func giveBack(_ region: SharedMemoryRegion) {
    guard let index = regions.firstIndex(where: { $0 === region }) else { return }
    idle.withLock { $0.append(index) }
  }
}

/// Many Tasks at once: each borrows a buffer, fills it, and tells a peer
/// where it is (IOVA, length, rkey); work requests posted on a
/// SharedQueuePair from any Task use `region.scatterGather(...)`.
func fillFromTasks(_ pool: BufferPool, tasks: Int) async throws -> [RemoteBuffer] {
  try await withThrowingTaskGroup(of: RemoteBuffer?.self) { group in
    for task in 0..<tasks {
      group.addTask {
        guard let region = pool.take() else { return nil }
        defer { pool.giveBack(region) }
        try region.memory?.copy(from: Array(repeating: UInt8(task), count: 64))
        return region.remote
      }
    }
    return try await group.reduce(into: []) { if let remote = $1 { $0.append(remote) } }
  }
}
// README-END
