public import Verbs

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

  /// Returns the oldest completion of kind `opcode`, waiting on `cq` for
  /// one if none is held.
  ///
  /// - Throws: ``CMError`` for a failed completion (its `VerbsError` inside)
  ///   or a connection event such as a disconnect.
  public mutating func next(
    _ opcode: WorkCompletion.Opcode, on cq: borrowing CompletionQueue,
    of id: borrowing ConnectionID
  ) throws(CMError) -> WorkCompletion {
    while true {
      if let index = waiting.firstIndex(where: { $0.opcode == opcode }) {
        return waiting.remove(at: index)
      }
      for wc in try id.waitForCompletions(on: cq) {
        do { try wc.checkSuccess() } catch { throw CMError(error) }
        if !dropping.contains(wc.opcode) { waiting.append(wc) }
      }
    }
  }
}
