import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A small array of atomic words, one per 128-byte block (two cache lines:
/// the adjacent-line prefetcher pairs them), so that threads on different
/// stripes never write the same cache line. The hit path's building block:
/// its reader count and lookup count live here, not in one shared word that
/// every hit on every thread would bounce between cores.
///
/// A thread picks its stripe by its slot (``ReaderWriterLock``) or with
/// ``currentStripe`` (a hash of its `pthread_self()`); two threads may
/// share a hashed stripe, which costs sharing, never correctness.
final class StripedCells: @unchecked Sendable {
  // @unchecked: the storage is allocated once and only ever touched through
  // its atomics.
  /// Stripes ``currentStripe`` spreads threads over.
  static let hashedStripes = 32
  /// Words per stripe: 128 bytes of 8-byte words.
  private static let spacing = 16
  /// How many stripes.
  let stripes: Int
  /// Words used in each stripe.
  let width: Int
  private let words: UnsafeMutablePointer<Atomic<Int>>

  /// `stripes` stripes of `width` atomic words (at most 16), all zero.
  init(stripes: Int = hashedStripes, width: Int = 1) {
    precondition(width >= 1 && width <= Self.spacing, "a stripe holds 1 to 16 words")
    precondition(stripes >= 1, "at least one stripe")
    self.stripes = stripes
    self.width = width
    let count = stripes * Self.spacing
    let raw = UnsafeMutableRawPointer.allocate(
      byteCount: count * MemoryLayout<Atomic<Int>>.stride, alignment: 128)
    words = raw.bindMemory(to: Atomic<Int>.self, capacity: count)
    for i in 0..<count { (words + i).initialize(to: Atomic(0)) }
  }

  deinit {
    words.deinitialize(count: stripes * Self.spacing)
    UnsafeMutableRawPointer(words).deallocate()
  }

  /// The calling thread's stripe: a multiplicative hash of its thread
  /// pointer (glibc places each thread's descriptor at its own stack top,
  /// megabytes apart), top five bits: 0 to ``hashedStripes`` - 1. One `pthread_self` call: a load of
  /// the thread register.
  @inline(__always)
  static var currentStripe: Int {
    let id = UInt64(UInt(bitPattern: Int(bitPattern: pthread_self())))
    return Int(truncatingIfNeeded: (id &* 0x9e37_79b9_7f4a_7c15) >> 59)
  }

  /// Word `word` of stripe `stripe`.
  @inline(__always)
  func cell(_ stripe: Int, _ word: Int = 0) -> UnsafeMutablePointer<Atomic<Int>> {
    words + (stripe &* Self.spacing &+ word)
  }

  /// The sum of word `word` over all stripes (relaxed loads: a snapshot,
  /// not a fence).
  func sum(word: Int = 0) -> Int {
    var total = 0
    for stripe in 0..<stripes { total &+= cell(stripe, word).pointee.load(ordering: .relaxed) }
    return total
  }
}
