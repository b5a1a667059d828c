import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The lifetime bookkeeping of one shared (owned-tier) resource: how many
/// calls are using its C object right now, how many children hang from it,
/// and whether it has been closed.
///
/// Every call that touches the C object runs inside ``enter()``/``leave()``;
/// an explicit close marks the resource closed, waits for the calls already
/// inside to leave, and only then releases the C object, so no thread can
/// use a pointer that another thread is freeing. Children (a region of a
/// domain, a queue pair of a domain) are counted so that closing a parent
/// that still has children is refused instead of leaving them dangling.
///
/// Two atomic adds per call, uncontended: a few nanoseconds beside the
/// microseconds of a verbs call.
struct UseGate: ~Copyable, Sendable {
  /// Bit 0: closed. Bits 1 and up: calls inside, counted in steps of 2.
  private let state = Atomic<Int>(0)
  /// Live children.
  private let children = Atomic<Int>(0)

  init() {}

  /// Enters the gate; false when the resource is closed (or closing).
  func enter() -> Bool {
    let now = state.add(2, ordering: .acquiring).newValue
    if now & 1 == 0 { return true }
    state.subtract(2, ordering: .releasing)
    return false
  }

  /// Leaves the gate; pairs with a successful ``enter()``.
  func leave() { state.subtract(2, ordering: .releasing) }

  /// True once a close has begun (and not failed).
  var isClosed: Bool { state.load(ordering: .acquiring) & 1 != 0 }

  func childCreated() { children.add(1, ordering: .relaxed) }
  func childReleased() { children.subtract(1, ordering: .relaxed) }
  var childCount: Int { children.load(ordering: .relaxed) }

  /// Marks the resource closed, waits until no call is inside, and runs
  /// `release`. Throws, and leaves the resource open and usable, when it
  /// was closed already, when children remain, or when `release` fails.
  func close(
    _ what: String, children kinds: String, operation: String,
    _ release: () throws(VerbsError) -> Void
  ) throws(VerbsError) {
    let before = state.bitwiseOr(1, ordering: .acquiringAndReleasing).oldValue
    if before & 1 != 0 { throw VerbsError.closed(what, operation: operation) }
    // Calls inside are short (one verbs call, or one poll(2) slice of at most
    // 100 ms for a waiting completion queue); yield until they are out.
    while state.load(ordering: .acquiring) != 1 { sched_yield() }
    let remaining = children.load(ordering: .acquiring)
    if remaining > 0 {
      reopen()
      throw VerbsError.busy(what, children: remaining, kinds: kinds, operation: operation)
    }
    do {
      try release()
    } catch {
      reopen()
      throw error
    }
  }

  private func reopen() { state.bitwiseAnd(~1, ordering: .releasing) }

  /// Runs `body` inside the gate, or throws the closed error for `operation`.
  func using<R>(
    _ what: String, _ operation: String, _ body: () throws(VerbsError) -> R
  ) throws(VerbsError) -> R {
    guard enter() else { throw VerbsError.closed(what, operation: operation) }
    defer { leave() }
    return try body()
  }
}

extension VerbsError {
  /// The error for a call on a shared resource that was closed explicitly.
  static func closed(_ what: String, operation: String) -> VerbsError {
    VerbsError(
      .closed, operation: operation, errno: EBADF,
      message: "the \(what) was closed with close(); make a new one, or close it only once "
        + "every user is done with it", checkedBeforeCall: true)
  }

  /// The error for closing a shared resource that still has children.
  static func busy(_ what: String, children: Int, kinds: String, operation: String) -> VerbsError {
    VerbsError(
      .busy, operation: operation, errno: EBUSY,
      message: "the \(what) still has \(children) live \(kinds); close them (or drop every "
        + "reference to them) first. It stays open and usable", checkedBeforeCall: true)
  }
}
