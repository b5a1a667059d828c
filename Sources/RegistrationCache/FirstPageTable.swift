#if canImport(Glibc)
  import Glibc
#endif

/// A hash table from the page an entry starts on to the entry: the cache's
/// shortcut past the search. A buffer is nearly always looked up at its own
/// address (an MPI library looks up the buffer it was handed; a lookup of a
/// message inside a cached buffer starts in some page of it), so a lookup
/// whose first byte lies in an entry's first page finds that entry with
/// one hash probe and one load of the slot: no search of the ordered index,
/// and at 100,000 entries one random cache line read instead of several.
///
/// Open addressing with linear probing, at most half full; keys are page
/// addresses (a key of 0 marks an empty slot: no entry starts at address
/// 0), values unretained references (``EntryIndex`` holds the strong ones).
/// Removal shifts the following run back (no tombstones), so probes stay
/// short however many entries come and go. Written only under the cache's
/// write lock, read under its read lock: plain memory, no atomics.
/// The table starts large enough for the entries the cache expects (its
/// entry limit, up to 65,536: 2 MiB), and is written through once when made,
/// so that misses pay neither for doubling it nor for the page faults of
/// its first touches (tens of microseconds each under emulation).
final class FirstPageTable<Value: AnyObject>: @unchecked Sendable {
  // @unchecked: the cache's lock orders every access.
  private struct Slot {
    var page: UInt64
    var value: Unmanaged<Value>?
  }

  private var slots: UnsafeMutablePointer<Slot>
  private var mask: Int
  /// 64 minus log2 of the capacity: the hash keeps the product's top bits.
  private var shift: UInt64
  private(set) var count = 0
  private static var minimumCapacity: Int { 64 }

  /// A table for about `expectedCount` values before it first grows.
  init(expectedCount: Int = 0) {
    // At most half full; 2^17 slots (2 MiB) at most up front: an unbounded
    // cache's limit is Int.max, and a larger table can still grow.
    let wanted = Swift.min(Swift.max(expectedCount, 0), 1 << 16) * 2
    var capacity = Self.minimumCapacity
    while capacity < wanted { capacity <<= 1 }
    if let memory = Self.allocate(capacity) {
      slots = memory
    } else if let memory = Self.allocate(Self.minimumCapacity) {
      capacity = Self.minimumCapacity
      slots = memory
    } else {
      // 1 KiB is not there: Swift's own allocations stop the same way.
      fatalError("FirstPageTable: no memory for \(Self.minimumCapacity) slots")
    }
    mask = capacity - 1
    shift = Self.shift(for: capacity)
    // calloc's zero pages of a large table are not mapped yet: map them now.
    memset(slots, 0, capacity * MemoryLayout<Slot>.stride)
  }

  deinit { free(slots) }

  /// `capacity` empty slots (zeroed memory is a table of empty slots: a
  /// zero page and a nil reference, so `calloc` initializes it), or nil
  /// when the memory is not there.
  private static func allocate(_ capacity: Int) -> UnsafeMutablePointer<Slot>? {
    calloc(capacity, MemoryLayout<Slot>.stride)?.bindMemory(to: Slot.self, capacity: capacity)
  }

  /// `capacity` is a power of two from 64 to 2^62.
  private static func shift(for capacity: Int) -> UInt64 {
    UInt64(64 - capacity.trailingZeroBitCount)
  }

  /// The home slot of `page`: the top bits of its product with 2^64 over
  /// the golden ratio (Fibonacci hashing), which spreads neighbouring
  /// pages over the whole table.
  @inline(__always)
  private func home(_ page: UInt64) -> Int {
    Int(truncatingIfNeeded: (page &* 0x9e37_79b9_7f4a_7c15) &>> shift)
  }

  /// The value stored for `page`, or nil.
  @inline(__always)
  func value(forPage page: UInt64) -> Unmanaged<Value>? {
    guard page != 0 else { return nil }
    var i = home(page)
    while true {
      let slot = slots[i]
      if slot.page == page { return slot.value }
      if slot.page == 0 { return nil }
      i = (i &+ 1) & mask
    }
  }

  /// Stores `value` for `page` (replacing any value it had); page 0 is
  /// never stored (nothing starts there, and 0 marks empty slots).
  /// When the table cannot grow (no memory) and is three quarters full,
  /// the value is left out: the table is only a shortcut, and
  /// ``EntryIndex`` finds what it lacks by searching.
  func set(_ value: Value, forPage page: UInt64) {
    guard page != 0 else { return }
    // count < capacity, a power of two that fits in memory: no overflow.
    if (count + 1) * 2 > mask + 1, !grow(), (count + 1) * 4 > (mask + 1) * 3 { return }
    var i = home(page)
    while slots[i].page != 0 && slots[i].page != page { i = (i &+ 1) & mask }
    if slots[i].page == 0 { count += 1 }
    slots[i] = Slot(page: page, value: Unmanaged.passUnretained(value))
  }

  /// Forgets `page` if it maps to `value` (an entry replaced in the same
  /// page keeps its successor's slot).
  func remove(page: UInt64, ifItIs value: Value) {
    guard page != 0 else { return }
    var i = home(page)
    while slots[i].page != page {
      if slots[i].page == 0 { return }
      i = (i &+ 1) & mask
    }
    guard slots[i].value?.toOpaque() == Unmanaged.passUnretained(value).toOpaque() else { return }
    // Backward shift: move each later member of the run whose home lies
    // cyclically at or before the hole into it, until an empty slot.
    var hole = i
    var next = (i &+ 1) & mask
    while slots[next].page != 0 {
      let want = home(slots[next].page)
      // `next` may fill `hole` when its home is not in (hole, next].
      let distanceToNext = (next &- want) & mask
      let distanceToHole = (next &- hole) & mask
      if distanceToNext >= distanceToHole {
        slots[hole] = slots[next]
        hole = next
      }
      next = (next &+ 1) & mask
    }
    slots[hole] = Slot(page: 0, value: nil)
    count -= 1
  }

  /// Forgets everything; the table keeps its size.
  func removeAll() {
    memset(slots, 0, (mask + 1) * MemoryLayout<Slot>.stride)
    count = 0
  }

  /// Doubles the table; false (and the table as it was) when the memory is
  /// not there.
  private func grow() -> Bool {
    let oldCapacity = mask + 1
    let capacity = oldCapacity * 2  // a table of 2^62 slots cannot exist
    guard let bigger = Self.allocate(capacity) else { return false }
    let old = slots
    slots = bigger
    mask = capacity - 1
    shift = Self.shift(for: capacity)
    for i in 0..<oldCapacity where old[i].page != 0 {
      var j = home(old[i].page)
      while slots[j].page != 0 { j = (j &+ 1) & mask }
      slots[j] = old[i]
    }
    free(old)
    return true
  }

  /// Every stored page with its value; for tests.
  var contents: [(page: UInt64, value: Value)] {
    (0...mask).compactMap { i in
      slots[i].page == 0 ? nil : (slots[i].page, slots[i].value!.takeUnretainedValue())
    }
  }
}
