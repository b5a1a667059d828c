internal import CUmemSystem
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// How one wait for a readable descriptor ended.
package enum Readiness: Sendable, Equatable {
  /// The descriptor became readable (or reported an error or hang-up, which
  /// the next non-blocking read will report).
  case readable
  /// The deadline passed first.
  case timedOut
  /// The waiting Task was cancelled.
  case cancelled
  /// The source was closed (``ReadinessSource/close()``) before or during the wait.
  case closed
  /// A system call of the reactor failed; the wait did not happen.
  case failed(operation: String, errno: Int32)
}

/// The process's one readiness reactor: a thread, started on first use,
/// sleeping in `epoll_wait` on every descriptor a Task is waiting for, and
/// resuming those Tasks when their descriptor becomes readable, their
/// deadline passes, they are cancelled, or their source is closed.
///
/// Completion channels (libibverbs) and event channels (librdmacm) are
/// plain non-blocking descriptors whose owners read them with their own
/// calls (`ibv_get_cq_event`, `rdma_get_cm_event`), so all an async wait
/// needs is "tell me when this is readable". One thread serves every
/// queue and connection in the process; no thread per queue, and nothing
/// polls on a timer.
///
/// Each descriptor is registered with `EPOLLONESHOT`: one wake-up disarms
/// it, and the next wait re-arms it (`EPOLL_CTL_MOD`), so a descriptor
/// that stays readable while nobody waits costs nothing. A wake-up resumes
/// every waiter of that descriptor; each then retries its non-blocking
/// read and waits again if another took the data.
///
/// Why not swift-nio's event loops: a `SelectableEventLoop` owns the
/// descriptors it watches and expects them wrapped in NIO channels;
/// watching a descriptor that librdmacm or libibverbs owns, and reads
/// itself, would need NIO's internal selector API. It would also add a
/// large dependency (build time) to a library whose only need is one
/// readiness callback. The reactor here is one file.
///
/// Deadlines are kept per waiter; `epoll_wait`'s timeout is the nearest
/// one. An `eventfd` wakes the thread when a nearer deadline is added.
///
/// - Complexity: each wake-up scans the waiters, O(w); fine for the
///   hundreds of connections a process holds, not for millions.
package final class Reactor: Sendable {
  /// The process-wide reactor. Its thread starts with the first wait.
  package static let shared = Reactor()

  private struct Source {
    var descriptor: Int32
    var inEpoll = false
    var armed = false
    var closed = false
    var waiters: Set<UInt64> = []
  }

  private struct Waiter {
    var source: UInt64
    var deadline: ContinuousClock.Instant?
    var continuation: CheckedContinuation<Readiness, Never>
  }

  private struct State {
    var sources: [UInt64: Source] = [:]
    var waiters: [UInt64: Waiter] = [:]
    var nextID: UInt64 = 1
    /// Whether the thread is running, and why not if it could not start.
    var started = false
    var startFailure: Readiness?
    /// When the thread will wake by itself; nil while it sleeps with no timeout.
    var wakeAt: ContinuousClock.Instant?
  }

  private let state = Mutex(State())
  /// The epoll instance and the eventfd that interrupts it (-1 until started).
  private let epoll = Atomic<Int32>(-1)
  private let wakeup = Atomic<Int32>(-1)

  private init() {}

  /// Makes a source for `descriptor`, which must be non-blocking and stay
  /// open until ``ReadinessSource/close()`` has returned. No system call.
  package func source(for descriptor: Int32) -> ReadinessSource {
    let id = state.withLock { state in
      let id = state.nextID
      state.nextID += 1
      state.sources[id] = Source(descriptor: descriptor)
      return id
    }
    return ReadinessSource(id: id, reactor: self)
  }

  /// Waits until the source's descriptor is readable, `deadline` passes
  /// (nil: no deadline), the Task is cancelled, or the source is closed.
  func wait(_ source: UInt64, until deadline: ContinuousClock.Instant?) async -> Readiness {
    if let failure = startIfNeeded() { return failure }
    let waiter = state.withLock { state in
      let id = state.nextID
      state.nextID += 1
      return id
    }
    return await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Readiness, Never>) in
        let (early, wake) = add(waiter, source: source, deadline: deadline, continuation)
        if let early { continuation.resume(returning: early) }
        if wake { interrupt() }
      }
    } onCancel: {
      let continuation = state.withLock { state in remove(waiter, from: &state) }
      continuation?.resume(returning: .cancelled)
    }
  }

  /// Registers a waiter, or says why the wait ends at once. Checking
  /// `Task.isCancelled` under the lock closes the race with a cancellation
  /// that ran its handler before the waiter was registered.
  private func add(
    _ waiter: UInt64, source id: UInt64, deadline: ContinuousClock.Instant?,
    _ continuation: CheckedContinuation<Readiness, Never>
  ) -> (early: Readiness?, wake: Bool) {
    state.withLock { state in
      if Task.isCancelled { return (.cancelled, false) }
      guard var source = state.sources[id], !source.closed else { return (.closed, false) }
      if let deadline, deadline <= .now { return (.timedOut, false) }
      if !source.armed {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLONESHOT.rawValue
        event.data.u64 = id
        let operation = source.inEpoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD
        if epoll_ctl(epoll.load(ordering: .relaxed), operation, source.descriptor, &event) != 0 {
          return (.failed(operation: "epoll_ctl", errno: errno), false)
        }
        source.inEpoll = true
        source.armed = true
      }
      source.waiters.insert(waiter)
      state.sources[id] = source
      state.waiters[waiter] = Waiter(source: id, deadline: deadline, continuation: continuation)
      guard let deadline else { return (nil, false) }
      if let wakeAt = state.wakeAt, wakeAt <= deadline { return (nil, false) }
      state.wakeAt = deadline
      return (nil, true)
    }
  }

  private func remove(_ waiter: UInt64, from state: inout State) -> CheckedContinuation<
    Readiness, Never
  >? {
    guard let removed = state.waiters.removeValue(forKey: waiter) else { return nil }
    state.sources[removed.source]?.waiters.remove(waiter)
    return removed.continuation
  }

  /// Fails every waiter of the source with ``Readiness/closed`` and takes
  /// its descriptor out of epoll; later waits end with `.closed` at once.
  func close(_ id: UInt64) {
    let continuations = state.withLock { state -> [CheckedContinuation<Readiness, Never>] in
      guard var source = state.sources[id], !source.closed else { return [] }
      if source.inEpoll {
        _ = epoll_ctl(epoll.load(ordering: .relaxed), EPOLL_CTL_DEL, source.descriptor, nil)
      }
      source.inEpoll = false
      source.armed = false
      source.closed = true
      let waiters = source.waiters
      state.sources[id] = source
      return waiters.compactMap { remove($0, from: &state) }
    }
    for continuation in continuations { continuation.resume(returning: .closed) }
  }

  /// Lets a closed source be waited on again (its owner's close failed).
  func reopen(_ id: UInt64) {
    state.withLock { state in state.sources[id]?.closed = false }
  }

  /// Forgets the source. It must have been closed (or never waited on).
  func release(_ id: UInt64) {
    close(id)
    _ = state.withLock { state in state.sources.removeValue(forKey: id) }
  }

  /// Waiters registered right now, for tests that check nothing is left behind.
  package var waiterCount: Int { state.withLock { $0.waiters.count } }

  /// Sources known right now (made and not yet released).
  package var sourceCount: Int { state.withLock { $0.sources.count } }

  // MARK: The thread

  /// Creates the epoll instance, the eventfd and the thread, once.
  private func startIfNeeded() -> Readiness? {
    state.withLock { state -> Readiness? in
      if state.started { return nil }
      if let failure = state.startFailure { return failure }
      let poller = epoll_create1(Int32(EPOLL_CLOEXEC))
      guard poller >= 0 else {
        let failure = Readiness.failed(operation: "epoll_create1", errno: errno)
        state.startFailure = failure
        return failure
      }
      let interrupter = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
      var event = epoll_event()
      event.events = EPOLLIN.rawValue
      event.data.u64 = 0
      guard interrupter >= 0, epoll_ctl(poller, EPOLL_CTL_ADD, interrupter, &event) == 0 else {
        let failure = Readiness.failed(operation: "eventfd", errno: errno)
        _ = Glibc.close(poller)
        if interrupter >= 0 { _ = Glibc.close(interrupter) }
        state.startFailure = failure
        return failure
      }
      epoll.store(poller, ordering: .relaxed)
      wakeup.store(interrupter, ordering: .relaxed)
      var thread = pthread_t()
      let context = Unmanaged.passRetained(self).toOpaque()
      let result = pthread_create(
        &thread, nil,
        { context in
          Unmanaged<Reactor>.fromOpaque(context!).takeRetainedValue().run()
          return nil
        }, context)
      guard result == 0 else {
        Unmanaged<Reactor>.fromOpaque(context).release()
        let failure = Readiness.failed(operation: "pthread_create", errno: result)
        state.startFailure = failure
        return failure
      }
      pthread_detach(thread)
      state.started = true
      return nil
    }
  }

  /// Interrupts `epoll_wait` so the thread recomputes its timeout.
  private func interrupt() {
    var one: UInt64 = 1
    _ = Glibc.write(wakeup.load(ordering: .relaxed), &one, 8)
  }

  /// The thread's loop; it runs for the life of the process.
  private func run() {
    let poller = epoll.load(ordering: .relaxed)
    var events = [epoll_event](repeating: epoll_event(), count: 64)
    while true {
      let timeout = state.withLock { state -> Int32 in
        let nearest = state.waiters.values.lazy.compactMap(\.deadline).min()
        state.wakeAt = nearest
        guard let nearest else { return -1 }
        let left = ContinuousClock.now.duration(to: nearest)
        if left <= .zero { return 0 }
        let (seconds, attoseconds) = left.components
        // Round up, so a wake-up never comes before the deadline.
        return Int32(
          clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
      }
      let count = epoll_wait(poller, &events, Int32(events.count), timeout)
      var ready: [(CheckedContinuation<Readiness, Never>, Readiness)] = []
      state.withLock { state in
        for event in events.prefix(max(0, Int(count))) {
          let id = event.data.u64
          if id == 0 {
            var value: UInt64 = 0
            _ = Glibc.read(wakeup.load(ordering: .relaxed), &value, 8)
            continue
          }
          guard var source = state.sources[id], !source.closed else { continue }
          source.armed = false
          let waiters = source.waiters
          state.sources[id] = source
          for waiter in waiters {
            if let continuation = remove(waiter, from: &state) {
              ready.append((continuation, .readable))
            }
          }
        }
        let now = ContinuousClock.now
        let expired = state.waiters.filter { $0.value.deadline.map { $0 <= now } ?? false }
        for waiter in expired.keys {
          if let continuation = remove(waiter, from: &state) {
            ready.append((continuation, .timedOut))
          }
        }
      }
      for (continuation, readiness) in ready { continuation.resume(returning: readiness) }
    }
  }
}

/// One descriptor that Tasks wait on through ``Reactor``, with a closed
/// state: its owner calls ``close()`` before destroying the descriptor, which
/// ends current waits and refuses later ones with ``Readiness/closed``.
package final class ReadinessSource: Sendable {
  let id: UInt64
  let reactor: Reactor

  init(id: UInt64, reactor: Reactor) {
    self.id = id
    self.reactor = reactor
  }

  deinit { reactor.release(id) }

  /// Waits until the descriptor is readable, `deadline` passes, the Task is
  /// cancelled or the source is closed. Never holds a lock while suspended.
  package func readable(until deadline: ContinuousClock.Instant? = nil) async -> Readiness {
    await reactor.wait(id, until: deadline)
  }

  /// Ends every wait with ``Readiness/closed``, refuses later ones, and
  /// removes the descriptor from epoll (`EPOLL_CTL_DEL`). Call it before
  /// the descriptor is closed.
  package func close() { reactor.close(id) }

  /// Accepts waits again after a ``close()`` whose owner then failed to
  /// destroy the descriptor.
  package func reopen() { reactor.reopen(id) }
}
