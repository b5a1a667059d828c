internal import UmemSystem

#if canImport(Glibc)
  import Glibc
#endif

extension SharedCompletionQueue {
  /// Waits, without blocking a thread, until at least one completion has
  /// arrived and returns up to `maximum` of them, oldest first.
  ///
  /// Each round takes what the queue holds; when it is empty, arms it
  /// (`ibv_req_notify_cq`), polls once more, and suspends until the
  /// completion channel is readable, then takes and acknowledges every
  /// event on it (`ibv_get_cq_event`, `ibv_ack_cq_events`). The suspension
  /// is served by the process's one reactor thread (epoll); the queue's
  /// gate is held only for the non-blocking steps, never across the
  /// suspension, so ``close()`` is never kept waiting by a Task.
  ///
  /// - Throws: `CancellationError` when the Task is cancelled (promptly,
  ///   with nothing left armed and unacknowledged); otherwise a
  ///   ``VerbsError``: ``VerbsError/Code/timedOut`` after `timeout`,
  ///   ``VerbsError/Code/closed`` when the queue is closed before or during
  ///   the wait.
  public func next(maximum: Int = 16, timeout: Duration? = nil) async throws -> [WorkCompletion] {
    guard maximum > 0 else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_poll_cq", errno: EINVAL,
        message: "ask for at least one completion; got maximum \(maximum)",
        checkedBeforeCall: true)
    }
    let deadline = timeout.map { ContinuousClock.now.advanced(by: $0) }
    while true {
      try Task.checkCancellation()
      var found: [WorkCompletion] = []
      let taken = try gate.using("completion queue", "ibv_poll_cq") { () throws(VerbsError) in
        try core.drainOrArm(maximum: maximum) { found.append($0) }
      }
      if taken > 0 { return found }
      let outcome = await readiness.readable(until: deadline)
      // Whatever ended the wait, take the events the channel holds, so none
      // is left read-but-unacknowledged or waiting for the next caller.
      _ = try? gate.using("completion queue", "ibv_get_cq_event") { () throws(VerbsError) in
        core.acknowledgeEvents()
      }
      switch outcome {
      case .readable:
        continue
      case .cancelled:
        throw CancellationError()
      case .timedOut:
        throw VerbsError(
          .timedOut, operation: "ibv_get_cq_event", errno: ETIMEDOUT,
          message: "no completion arrived within \(timeout ?? .zero); "
            + "the peer may be gone or the work requests were never posted")
      case .closed:
        throw VerbsError.closed("completion queue", operation: "ibv_get_cq_event")
      case .failed(let operation, let code):
        throw VerbsError(
          .other, operation: operation, errno: code,
          message: "the reactor could not watch the completion channel; "
            + "check the process's descriptor limit (ulimit -n)")
      }
    }
  }

  /// Waits, without blocking a thread, for the next completion.
  /// See ``next(maximum:timeout:)`` for what it throws.
  public func next(timeout: Duration? = nil) async throws -> WorkCompletion {
    try await next(maximum: 1, timeout: timeout)[0]
  }

  /// The queue's completions as an `AsyncSequence`, taken in batches of up
  /// to `batch`. It never ends by itself: iteration throws
  /// ``VerbsError/Code/closed`` when the queue is closed, and
  /// `CancellationError` when the Task is cancelled.
  public func completions(batch: Int = 64) -> Completions {
    Completions(queue: self, batch: max(1, batch))
  }

  /// The queue's completions, taken 64 at a time; see ``completions(batch:)``.
  public var completions: Completions { completions() }

  /// Completions of a ``SharedCompletionQueue`` as they arrive.
  public struct Completions: AsyncSequence, Sendable {
    public typealias Element = WorkCompletion
    let queue: SharedCompletionQueue
    let batch: Int

    public func makeAsyncIterator() -> Iterator {
      Iterator(queue: queue, batch: batch)
    }

    /// Hands out one batch taken with ``SharedCompletionQueue/next(maximum:timeout:)``
    /// before waiting for the next.
    public struct Iterator: AsyncIteratorProtocol {
      let queue: SharedCompletionQueue
      let batch: Int
      var taken: [WorkCompletion] = []
      var index = 0

      public mutating func next() async throws -> WorkCompletion? {
        if index == taken.count {
          taken = try await queue.next(maximum: batch)
          index = 0
        }
        defer { index += 1 }
        return taken[index]
      }
    }
  }
}
