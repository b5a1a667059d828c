internal import CUserfaultfd
import Synchronization
internal import UmemSystem

#if canImport(Glibc)
  import Glibc
#endif

/// Watches cached ranges with `userfaultfd` and queues the ranges that
/// `munmap`, `brk`, `mmap(MAP_FIXED)`, `madvise(MADV_DONTNEED)` and `mremap`
/// take away, into the ``InvalidationRing`` of every cache it serves.
///
/// One per process, shared by every cache (``subscribe(_:)``): the kernel
/// lets one userfaultfd own a mapping, so a second monitor watching the same
/// memory (two caches on two protection domains over the same buffers) would
/// get EBUSY and cache nothing there. It starts with the first cache and
/// stops when the last one unsubscribes.
///
/// The traps, and how this avoids each:
/// - The thread that unmaps a watched range blocks in the kernel until the
///   event is read. It may hold a cache's lock, or malloc's (a `free` that
///   trims the heap). So the monitor thread takes no lock and allocates
///   nothing: it reads into a fixed buffer (`CUFFD_read_events`, a stack
///   array in C) and writes into preallocated rings, found through a fixed
///   table of atomic pointers.
/// - `UFFDIO_REGISTER_MODE_MISSING` would make the first touch of any
///   unpopulated watched page wait for a handler (and, after a
///   `MADV_DONTNEED`, every re-touch). Ranges are watched in
///   `UFFDIO_REGISTER_MODE_WP` and nothing is ever write-protected, so no
///   page fault is ever delivered; the UNMAP, REMOVE and REMAP events come
///   with any mode.
/// - Without `CAP_SYS_PTRACE` and with `vm.unprivileged_userfaultfd=0`
///   (the default since Linux 5.11), `userfaultfd` needs
///   `UFFD_USER_MODE_ONLY`: it is tried first without, then with it.
/// - File mappings (EINVAL) and ranges another userfaultfd watches (EBUSY)
///   cannot be watched: the cache then hands out the registration without
///   caching it, and counts it.
///
/// Ranges stay watched until unmapped or until the monitor closes: an
/// evicted entry's range is not unwatched, because another entry (of this
/// or another cache) may share its pages' VMA; events for uncached ranges
/// are simply ignored.
final class UserfaultMonitor: @unchecked Sendable {
  // @unchecked: `events` is touched only by the monitor thread; `thread`
  // and `running` only by start() and stop(), under `shared`'s lock; the
  // subscriber table is atomic.
  let fd: Int32
  let userModeOnly: Bool
  /// Events read so far, of any kind.
  let eventsRead = Atomic<Int>(0)
  /// `UFFDIO_REGISTER` calls so far, by every cache; for tests.
  let watchCalls = Atomic<Int>(0)
  /// Raised before read(2) wakes an unmapping thread, lowered after the
  /// ranges are queued in every ring: a lookup that runs after munmap
  /// returned sees either this flag or the queued range, never neither.
  let producing = Atomic<Bool>(false)
  private let wakeFD: Int32
  private let stopping = Atomic<Bool>(false)
  private static let batch: Int32 = 16
  private let events: UnsafeMutablePointer<CUFFD_event>
  /// The rings of the subscribed caches (unretained; `shared` holds them),
  /// nil where free. The monitor thread only loads them.
  private let subscribers: UnsafeMutablePointer<Atomic<UnsafeMutableRawPointer?>>
  static let maxSubscribers = 64
  private var thread = pthread_t()
  private var running = false

  /// The process's monitor and how many caches use it.
  private struct Shared: ~Copyable {
    var monitor: UserfaultMonitor?
    var rings: [ObjectIdentifier: InvalidationRing] = [:]
  }
  private static let shared = Mutex(Shared())

  /// Delivers the monitor's events to `ring` from now on, starting the
  /// process's monitor if no cache runs it yet. Returns why not when the
  /// kernel or the sandbox refuses userfaultfd, or when
  /// ``maxSubscribers`` caches already use it.
  static func subscribe(_ ring: InvalidationRing) -> Result<UserfaultMonitor, MonitorUnavailable> {
    shared.withLock { state in
      let monitor: UserfaultMonitor
      if let running = state.monitor {
        monitor = running
      } else {
        switch start() {
        case .success(let started): monitor = started
        case .failure(let why): return .failure(why)
        }
        state.monitor = monitor
      }
      guard monitor.attach(ring) else {
        if state.rings.isEmpty {
          monitor.stop()
          state.monitor = nil
        }
        return .failure(
          MonitorUnavailable(
            operation: "userfaultfd monitor (\(maxSubscribers) caches)", errno: EUSERS))
      }
      state.rings[ObjectIdentifier(ring)] = ring
      return .success(monitor)
    }
  }

  /// Stops delivering to `ring`; when it was the last, stops the monitor
  /// (closing the descriptor, which unwatches every range). Returns once
  /// the monitor thread can no longer touch the ring.
  func unsubscribe(_ ring: InvalidationRing) {
    Self.shared.withLock { state in
      guard state.rings.removeValue(forKey: ObjectIdentifier(ring)) != nil else { return }
      detach(ring)
      if state.rings.isEmpty {
        stop()
        state.monitor = nil
      }
    }
  }

  /// Opens the descriptor, asks for the events, and starts the thread.
  /// Returns why not when the kernel or the sandbox refuses.
  private static func start() -> Result<UserfaultMonitor, MonitorUnavailable> {
    var userModeOnly = false
    var fd = CUFFD_open(0)
    if fd == -EPERM {
      userModeOnly = true
      fd = CUFFD_open(1)
    }
    guard fd >= 0 else {
      return .failure(MonitorUnavailable(operation: "userfaultfd", errno: -fd))
    }
    var available: UInt64 = 0
    let wanted = UInt64(
      CUFFD_FEATURE_EVENT_UNMAP | CUFFD_FEATURE_EVENT_REMOVE | CUFFD_FEATURE_EVENT_REMAP)
    let api = CUFFD_api(fd, wanted, &available)
    guard api == 0 else {
      close(fd)
      return .failure(MonitorUnavailable(operation: "ioctl(UFFDIO_API)", errno: -api))
    }
    let wake = CUFFD_wake_fd()
    guard wake >= 0 else {
      close(fd)
      return .failure(MonitorUnavailable(operation: "eventfd", errno: -wake))
    }
    let monitor = UserfaultMonitor(fd: fd, wakeFD: wake, userModeOnly: userModeOnly)
    if let code = monitor.startThread() {
      return .failure(MonitorUnavailable(operation: "pthread_create", errno: code))
    }
    return .success(monitor)
  }

  private init(fd: Int32, wakeFD: Int32, userModeOnly: Bool) {
    self.fd = fd
    self.wakeFD = wakeFD
    self.userModeOnly = userModeOnly
    events = .allocate(capacity: Int(Self.batch))
    subscribers = .allocate(capacity: Self.maxSubscribers)
    for i in 0..<Self.maxSubscribers { (subscribers + i).initialize(to: Atomic(nil)) }
  }

  deinit {
    events.deallocate()
    subscribers.deinitialize(count: Self.maxSubscribers)
    subscribers.deallocate()
  }

  /// Puts `ring` in a free slot of the table; false when it is full.
  private func attach(_ ring: InvalidationRing) -> Bool {
    let raw = Unmanaged.passUnretained(ring).toOpaque()
    for i in 0..<Self.maxSubscribers
    where subscribers[i].compareExchange(
      expected: nil, desired: raw, ordering: .sequentiallyConsistent
    ).exchanged {
      return true
    }
    return false
  }

  /// Empties `ring`'s slot, then waits out a batch the thread may be
  /// delivering (it loaded the slot before it was emptied). The wait is
  /// bounded: the thread takes no lock while ``producing`` is raised.
  private func detach(_ ring: InvalidationRing) {
    let raw = Unmanaged.passUnretained(ring).toOpaque()
    for i in 0..<Self.maxSubscribers
    where subscribers[i].compareExchange(
      expected: raw, desired: nil, ordering: .sequentiallyConsistent
    ).exchanged {
      break
    }
    while producing.load(ordering: .sequentiallyConsistent) { sched_yield() }
  }

  /// Watches `[start, start + length)` for UNMAP, REMOVE and REMAP events.
  /// Returns nil, or the errno of `UFFDIO_REGISTER`. The C call is
  /// `ioctl(UFFDIO_REGISTER)` with `UFFDIO_REGISTER_MODE_WP`.
  func watch(start: UInt64, length: UInt64) -> Int32? {
    guard running else { return EBADF }  // stopped: nothing can be watched
    watchCalls.add(1, ordering: .relaxed)
    let result = CUFFD_register(fd, start, length, UInt64(CUFFD_REGISTER_MODE_WP))
    return result == 0 ? nil : -result
  }

  private func startThread() -> Int32? {
    let context = Unmanaged.passRetained(self).toOpaque()
    let result = pthread_create(
      &thread, nil,
      { raw in
        let monitor = Unmanaged<UserfaultMonitor>.fromOpaque(raw!).takeRetainedValue()
        monitor.run()
        return nil
      }, context)
    guard result == 0 else {
      Unmanaged<UserfaultMonitor>.fromOpaque(context).release()
      return result
    }
    running = true
    return nil
  }

  /// Stops the thread (which closes the userfaultfd, unwatching every
  /// range), waits for it, and closes the wake-up descriptor. Called once,
  /// by the last cache to unsubscribe, under `shared`'s lock.
  private func stop() {
    guard running else { return }
    running = false
    stopping.store(true, ordering: .releasing)
    var one: UInt64 = 1
    _ = write(wakeFD, &one, 8)
    pthread_join(thread, nil)
    close(wakeFD)  // the thread closed `fd` itself
  }

  /// The thread: wait, read, queue. No allocation and no lock in this loop.
  private func run() {
    while !stopping.load(ordering: .acquiring) {
      let ready = CUFFD_wait(fd, wakeFD, 1000)
      guard ready > 0, ready & 1 != 0 else { continue }
      // Raised before read(2) wakes the unmapping thread, lowered after the
      // ranges are queued: a lookup that runs after munmap returned sees
      // either this flag or the queued range, never neither.
      producing.store(true, ordering: .sequentiallyConsistent)
      let count = CUFFD_read_events(fd, events, Self.batch)
      if count > 0 {
        for event in UnsafeBufferPointer(start: events, count: Int(count)) { handle(event) }
        eventsRead.add(Int(count), ordering: .relaxed)
      }
      producing.store(false, ordering: .sequentiallyConsistent)
    }
    // Closed here, by this thread, not after the join: a thread that exits
    // gives its stack back with madvise(MADV_DONTNEED), and when that stack
    // lies in a watched range the REMOVE event would wait for a reader,
    // this very thread. Closing unwatches every range first.
    close(fd)
  }

  private func handle(_ event: CUFFD_event) {
    switch Int(event.event) {
    case Int(CUFFD_EVENT_UNMAP): deliver(start: event.start, end: event.end, cause: .unmap)
    case Int(CUFFD_EVENT_REMOVE): deliver(start: event.start, end: event.end, cause: .remove)
    case Int(CUFFD_EVENT_REMAP):
      deliver(start: event.start, end: event.end, cause: .remap)
      // Whatever was mapped at the destination is gone too; queue it in
      // case it was cached.
      let (destinationEnd, overflow) = event.to.addingReportingOverflow(event.end &- event.start)
      deliver(start: event.to, end: overflow ? UInt64.max : destinationEnd, cause: .remap)
    case Int(CUFFD_EVENT_PAGEFAULT):
      // Never expected (nothing is write-protected); if one comes, release
      // the faulting thread rather than leave it blocked.
      _ = CUFFD_unprotect(fd, event.start & ~4095, 4096)
    default:
      break
    }
  }

  /// Queues one range in every subscribed cache's ring: loads from a fixed
  /// table, no lock, no allocation.
  private func deliver(start: UInt64, end: UInt64, cause: InvalidationCause) {
    for i in 0..<Self.maxSubscribers {
      guard let raw = subscribers[i].load(ordering: .acquiring) else { continue }
      Unmanaged<InvalidationRing>.fromOpaque(raw)._withUnsafeGuaranteedRef {
        $0.push(start: start, end: end, cause: cause)
      }
    }
  }
}

/// Why the userfaultfd monitor could not start: the call and its errno.
public struct MonitorUnavailable: Error, Sendable, Hashable, Codable, CustomStringConvertible {
  /// The call that failed (`userfaultfd`, `ioctl(UFFDIO_API)`, ...).
  public var operation: String
  /// Its errno.
  public var errno: Int32

  public var description: String {
    let advice: String
    switch errno {
    case EPERM:
      advice =
        "userfaultfd is not allowed here (seccomp or a container, or vm.unprivileged_userfaultfd=0 "
        + "on a kernel without UFFD_USER_MODE_ONLY); call invalidate(address:length:) before "
        + "unmapping or reusing cached memory"
    case ENOSYS:
      advice = "the kernel has no userfaultfd (CONFIG_USERFAULTFD); invalidate explicitly"
    case EINVAL:
      advice = "the kernel lacks the UNMAP/REMOVE/REMAP events; invalidate explicitly"
    default:
      advice = "invalidate explicitly"
    }
    return "\(operation) failed: \(ErrnoName.of(errno)) (\(ErrnoName.text(errno))): \(advice)"
  }
}
