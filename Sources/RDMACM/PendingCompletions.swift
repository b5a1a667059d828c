public import Verbs

#if canImport(Glibc)
  import Glibc
#endif

/// Completions taken from a queue but not yet asked for, so a program can
/// wait for "the next receive" or "the next RDMA READ" while completions of
/// other kinds arrive in between, in any order.
///
/// Each wait sleeps through ``ConnectionID/waitForCompletions(on:maximum:timeout:)``,
/// so a peer that disconnects ends it with a ``CMError``. A failed completion
/// throws as soon as it is taken, whatever was asked for.
public struct PendingCompletions: Sendable {
  /// Completions taken but not yet returned, oldest first.
  public private(set) var waiting: [WorkCompletion] = []
  /// Kinds that are checked for success and then dropped, never returned
  /// (rping drops its SEND completions, for example).
  public var dropping: Set<WorkCompletion.Opcode>

  /// Creates an empty backlog that drops the `dropping` kinds.
  public init(dropping: Set<WorkCompletion.Opcode> = []) {
    self.dropping = dropping
  }

  /// Keeps a completion that the caller's own poll took (a busy-poll loop
  /// that wants only its send completions, say), so a later ``next(_:on:of:timeout:)``
  /// for its kind still finds it instead of waiting for one that was
  /// already consumed. Kinds in ``dropping`` are not kept.
  public mutating func hold(_ completion: WorkCompletion) {
    if !dropping.contains(completion.opcode) { waiting.append(completion) }
  }

  /// Returns the oldest completion of kind `opcode`, waiting on `cq` for
  /// one if none is held.
  ///
  /// With a `timeout`, a peer that stays silent that long ends the wait with
  /// ``CMError/Code/timedOut``: a peer whose host died sends no disconnect,
  /// and an RC connection that only waits to receive never notices on its
  /// own (the transport's retries run only for requests in flight).
  ///
  /// - Throws: ``CMError`` for a failed completion (its `VerbsError` inside),
  ///   a connection event such as a disconnect, or the timeout.
  public mutating func next(
    _ opcode: WorkCompletion.Opcode, on cq: borrowing CompletionQueue,
    of id: borrowing ConnectionID, timeout: Duration? = nil
  ) throws(CMError) -> WorkCompletion {
    let clock = ContinuousClock()
    let deadline = timeout.map { clock.now.advanced(by: $0) }
    while true {
      if let index = waiting.firstIndex(where: { $0.opcode == opcode }) {
        return waiting.remove(at: index)
      }
      var left: Duration? = nil
      if let deadline {
        left = clock.now.duration(to: deadline)
        if left! <= .zero {
          throw CMError(
            .timedOut, operation: "ibv_poll_cq", errno: ETIMEDOUT,
            message: "no \(opcode) completion within \(timeout!): the peer has gone silent "
              + "(a host that died sends no disconnect)")
        }
      }
      for wc in try id.waitForCompletions(on: cq, timeout: left) {
        do { try wc.checkSuccess() } catch { throw CMError(error) }
        hold(wc)
      }
    }
  }
}
