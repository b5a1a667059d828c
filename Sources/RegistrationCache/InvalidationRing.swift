import Synchronization

/// Address ranges the userfaultfd monitor saw go away, waiting for the cache
/// to apply them: a single-producer, single-consumer ring allocated once.
///
/// The producer is the monitor thread, which must never allocate and never
/// wait for a lock (the thread that unmapped is blocked in the kernel until
/// the event is read, and may hold the cache's lock or malloc's). It writes a
/// slot and publishes it with one release store. When the ring is full it
/// sets ``overflowed`` instead of waiting, and the consumer then drops every
/// cached entry: a lost range may cost registrations, never a stale hit.
///
/// The consumer is whoever holds the cache's write lock. Each cache has its
/// own ring; the process's one monitor fills them all.
final class InvalidationRing: @unchecked Sendable {
  // @unchecked: slots are written by the one producer before `written` is
  // published and read by the one consumer after it loads `written`.
  struct Slot {
    var start: UInt64
    var end: UInt64
    var cause: InvalidationCause
  }

  let capacity: Int
  private let slots: UnsafeMutablePointer<Slot>
  /// Slots published by the producer (monotonic).
  private let written = Atomic<Int>(0)
  /// Slots consumed (monotonic).
  private let read = Atomic<Int>(0)
  /// Set by the producer when a range did not fit.
  let overflowed = Atomic<Bool>(false)

  init(capacity: Int) {
    self.capacity = Swift.max(capacity, 1)
    slots = .allocate(capacity: self.capacity)
    slots.initialize(repeating: Slot(start: 0, end: 0, cause: .unmap), count: self.capacity)
  }

  deinit { slots.deallocate() }

  /// Producer: queues one range, or marks the ring overflowed. Never blocks.
  func push(start: UInt64, end: UInt64, cause: InvalidationCause) {
    let w = written.load(ordering: .relaxed)
    guard w - read.load(ordering: .acquiring) < capacity else {
      overflowed.store(true, ordering: .releasing)
      return
    }
    slots[w % capacity] = Slot(start: start, end: end, cause: cause)
    written.store(w + 1, ordering: .releasing)
  }

  /// Whether anything waits: queued ranges or an overflow. Loads of
  /// rarely written words: part of the hit path's check.
  @inline(__always)
  var hasQueued: Bool {
    written.load(ordering: .acquiring) != read.load(ordering: .relaxed)
      || overflowed.load(ordering: .relaxed)
  }

  /// Consumer: calls `body` for each queued range and returns whether the
  /// ring overflowed since the last drain (then every entry must go).
  func drain(_ body: (Slot) -> Void) -> Bool {
    let lost = overflowed.exchange(false, ordering: .acquiringAndReleasing)
    let w = written.load(ordering: .acquiring)
    var r = read.load(ordering: .relaxed)
    while r < w {
      body(slots[r % capacity])
      r += 1
      read.store(r, ordering: .releasing)
    }
    return lost
  }
}
