// Message buffers for bandwidth runs that register the way an application
// does: a pool of buffers of the largest message, rotated over (message n
// uses buffer n mod count), each message's buffer registered in one of three
// ways. `--message-buffers N` alone registers the pool once (today's path,
// on the same memory); `--reuse` looks each message's buffer up in a
// RegistrationCache and releases the handle after its completion, as an MPI
// library would; `--register-per-message` calls ibv_reg_mr before each post
// and ibv_dereg_mr after its completion.

import RegistrationCache
import Verbs

/// How a bandwidth run registers each message's local buffer.
enum MessageRegistration: String, Codable {
  /// The whole pool registered once, before the run.
  case preRegistered = "pre-registered"
  /// Each message looks its buffer up in a registration cache; the handle
  /// is released after the message's completion.
  case cached
  /// Each message registers its buffer; the region is deregistered after
  /// the message's completion.
  case perMessage = "per-message"
}

/// The pool, its registration(s), and what holds each in-flight message's
/// registration until its completion.
final class MessageBuffers {
  let registration: MessageRegistration
  let count: Int
  /// Bytes between buffers: the largest message rounded up to whole pages.
  let stride: Int
  private let memory: SharedBuffer
  private let domain: SharedProtectionDomain
  private var poolRegion: SharedMemoryRegion?
  let cache: RegistrationCache?
  /// Registrations of in-flight messages, at request id modulo the queue
  /// depth (at most that many are in flight, so slots never collide).
  private var holders: [Holder?] = []

  private enum Holder {
    case handle(CachedRegistration)
    case region(SharedMemoryRegion)
  }

  /// `count` buffers of `largestMessage` bytes (rounded up to pages; the
  /// caller keeps count x largestMessage within 2 GiB), registered through
  /// `domain` (a view of the queue pair's domain).
  init(
    registration: MessageRegistration, count: Int, largestMessage: Int,
    domain: SharedProtectionDomain
  ) throws {
    let page = PageAlignedBuffer.pageSize
    self.registration = registration
    self.count = count
    stride = (largestMessage + page - 1) / page * page
    self.domain = domain
    memory = try SharedBuffer(byteCount: stride * count)
    // Touched, so every registration pins pages that exist.
    memory.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0x5a) }
    switch registration {
    case .preRegistered:
      poolRegion = try domain.register(memory, access: .localWrite)
      cache = nil
    case .cached:
      cache = RegistrationCache(
        domain: domain, limits: CacheLimits(maxEntries: max(count, 4096)), monitor: .userfaultfd)
    case .perMessage:
      cache = nil
    }
  }

  /// Makes room for `depth` messages in flight.
  func prepare(depth: Int) {
    if holders.count != depth { holders = Array(repeating: nil, count: depth) }
  }

  /// The local entry for request `request` (counted from 1) of `size`
  /// bytes, registered as this pool registers; holds its registration until
  /// ``complete(_:)``.
  func scatterGather(request: Int, size: Int) throws -> ScatterGatherElement {
    let offset = (request - 1) % count * stride
    let address = memory.address + UInt64(offset)
    switch registration {
    case .preRegistered:
      return try poolRegion!.scatterGather(offset: offset, count: size)
    case .cached:
      let handle = try cache!.lookup(address: address, length: size, access: .localWrite)
      holders[request % holders.count] = .handle(handle)
      return try handle.scatterGather(address: address, count: size)
    case .perMessage:
      let region = try domain.unsafeRegister(
        UnsafeMutableRawBufferPointer(start: memory.baseAddress + offset, count: size),
        access: .localWrite)
      holders[request % holders.count] = .region(region)
      return try region.scatterGather(count: size)
    }
  }

  /// Request `request` has completed: gives its registration back.
  func complete(_ request: Int) throws {
    guard registration != .preRegistered else { return }
    let slot = request % holders.count
    switch holders[slot] {
    case .handle(let handle): handle.release()
    case .region(let region): try region.close()
    case nil: break
    }
    holders[slot] = nil
  }

  /// Gives back everything still held (after a failed run), then the
  /// cache and the pool's registration.
  func close() {
    for case let holder? in holders {
      switch holder {
      case .handle(let handle): handle.release()
      case .region(let region): try? region.close()
      }
    }
    holders = []
    cache?.close()
    try? poolRegion?.close()
    poolRegion = nil
  }

  /// What the report says about the pool for one run.
  struct RunFigures {
    var hits: Int?
    var misses: Int?
    var monitor: String?
    var monitorEvents: Int?
    var invalidations: Int?
  }

  /// Cache counters now, to subtract around a run.
  func figures() -> RunFigures {
    guard let statistics = cache?.statistics else { return RunFigures() }
    return RunFigures(
      hits: statistics.hits, misses: statistics.misses, monitor: statistics.monitor.description,
      monitorEvents: statistics.monitorEvents,
      invalidations: statistics.invalidations.values.reduce(0, +))
  }
}
