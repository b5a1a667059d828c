internal import CRDMA
import Synchronization
internal import UmemSystem

/// A completion queue in the owned tier: reference-counted and `Sendable`,
/// with its own completion channel. Wraps `struct ibv_cq` and
/// `struct ibv_comp_channel`; destroyed exactly once, after every queue pair
/// that uses it, by ``close()`` or when the last reference goes.
///
/// Concurrency: ``poll(maximum:)`` may run on many threads at once
/// (`ibv_poll_cq` locks the queue in the provider); each completion goes to
/// exactly one caller. ``wait(for:timeout:)`` sleeps on the completion
/// channel, whose events belong to the queue as a whole, so waits are taken
/// one at a time: a second waiter queues behind the first. ``close()`` ends
/// a wait in progress with ``VerbsError/Code/closed`` within 100 ms.
///
/// Tasks await completions with ``next(timeout:)``, ``next(maximum:timeout:)``
/// and ``completions`` (an `AsyncSequence`), which sleep in the process's
/// one reactor thread, not in a thread of their own; many Tasks may await
/// one queue, and ``close()`` ends their waits at once with
/// ``VerbsError/Code/closed``. Use either the synchronous ``wait(for:timeout:)``
/// or the async calls on one queue, not both at the same time.
public final class SharedCompletionQueue: @unchecked Sendable {
  // @unchecked: `core`'s pointers are used only inside `gate`; waits are
  // serialized by `waiting`.
  package let core: CompletionQueueCore
  /// The device context the queue belongs to (and keeps open).
  public let context: SharedDeviceContext
  let gate = UseGate()
  private let waiting = Mutex<Void>(())
  /// The completion channel's descriptor as the reactor sees it; closed
  /// before the channel is destroyed, which ends every async wait.
  let readiness: ReadinessSource

  init(core: CompletionQueueCore, context: SharedDeviceContext) {
    self.core = core
    self.context = context
    self.readiness = Reactor.shared.source(for: core.channel.pointee.fd)
    context.gate.childCreated()
  }

  deinit {
    if !gate.isClosed {
      readiness.close()
      try? core.destroy()
      context.gate.childReleased()
    }
  }

  /// Destroys the queue and its channel now and reports failure. The C
  /// functions are `ibv_destroy_cq` and `ibv_destroy_comp_channel`.
  ///
  /// Throws ``VerbsError/Code/busy`` (and leaves it open) while queue pairs
  /// that use it are alive.
  public func close() throws(VerbsError) {
    try gate.close("completion queue", children: "queue pairs", operation: "ibv_destroy_cq") {
      () throws(VerbsError) in
      // Async waiters are woken with `.closed` before the descriptor goes.
      readiness.close()
      do throws(VerbsError) {
        try core.destroy()
      } catch {
        readiness.reopen()
        throw error
      }
      context.gate.childReleased()
    }
  }

  /// The number of entries the device actually gave the queue (`cqe`).
  public var capacity: Int { core.capacity }

  /// Takes up to `maximum` completions without waiting. The C function is `ibv_poll_cq`.
  public func poll(maximum: Int = 16) throws(VerbsError) -> [WorkCompletion] {
    var completions: [WorkCompletion] = []
    try poll(maximum: maximum) { completions.append($0) }
    return completions
  }

  /// Takes up to `maximum` completions without waiting and hands each to
  /// `body`; returns how many there were. No allocation.
  @discardableResult
  public func poll(maximum: Int = 16, _ body: (WorkCompletion) -> Void) throws(VerbsError) -> Int {
    try gate.using("completion queue", "ibv_poll_cq") { () throws(VerbsError) in
      try core.poll(maximum: maximum, body)
    }
  }

  /// Waits until `count` completions have arrived, sleeping on the
  /// completion channel between polls, and returns them in order.
  ///
  /// Throws ``VerbsError/Code/timedOut`` after `timeout`, and
  /// ``VerbsError/Code/closed`` when the queue is closed meanwhile.
  /// The C functions are `ibv_req_notify_cq`, `ibv_get_cq_event` and `ibv_ack_cq_events`.
  public func wait(
    for count: Int, timeout: Duration = .seconds(10)
  ) throws(VerbsError) -> [WorkCompletion] {
    try waiting.withLock { _ throws(VerbsError) -> [WorkCompletion] in
      try gate.using("completion queue", "ibv_get_cq_event") { () throws(VerbsError) in
        try core.wait(for: count, timeout: timeout, slice: .milliseconds(100)) {
          gate.isClosed ? VerbsError.closed("completion queue", operation: "ibv_get_cq_event") : nil
        }
      }
    }
  }
}
