/// A list of physical runs, built by appending ranges in memory-region order.
///
/// Appending a range that starts exactly where the previous one ended extends
/// that run instead of adding a new one, so the stored runs are always
/// maximal: no two neighbours are physically adjacent. This is the property
/// the kernel's v6.15 fix gave `ib_umem_find_best_pgsz` (contiguous
/// scatterlist entries are one run), and it makes the list smaller.
///
/// The first run starts at the physical address of the memory region's first
/// byte (``firstAddress``) and the run lengths add up to ``totalLength``.
/// Ranges may overlap (the same page pinned twice is legal); they only never
/// wrap past `UInt64.max` (a range may end exactly there).
///
/// ## Storage
/// Runs live in fixed-size chunks of ``chunkCapacity`` runs (64 KiB each)
/// held by a small outer array. A 1 TiB registration of scattered 4 KiB pages
/// has 2^28 runs: in one contiguous array that is 4 GiB that would be copied
/// on every doubling (8 GiB at the peak of the last one), while in chunks no
/// run is ever copied after it is written and the only array that grows is
/// the outer one, at 8 bytes per 4096 runs. Indexing stays O(1) (a shift and a
/// mask). The first chunk starts small and grows normally, so a short list
/// costs a few dozen bytes, not 64 KiB.
///
/// The last run is kept open in the list value itself, outside the chunks,
/// so that coalescing (the common case when pinning: consecutive frames) is
/// two additions with no storage access.
///
/// - Complexity: Appending is amortised O(1); ``count``, ``totalLength``,
///   ``firstAddress`` and ``largestRunLength`` are O(1).
public struct PhyrList: Sendable, Hashable {
  /// Runs per storage chunk: 4096 runs of 16 bytes, 64 KiB.
  @inlinable public static var chunkCapacity: Int { 1 << chunkShift }
  @inlinable static var chunkShift: Int { 12 }

  /// Every run but the last; run *i* is at `[i >> 12][i & 4095]`.
  @usableFromInline var chunks: [ContiguousArray<Phyr>]
  /// The last run, still open for coalescing; meaningful when `runCount > 0`.
  @usableFromInline var open: Phyr
  @usableFromInline var runCount: Int
  @usableFromInline var _totalLength: UInt64
  @usableFromInline var _largestRunLength: UInt64

  /// Creates an empty list.
  public init() {
    chunks = []
    open = Phyr(address: 0, length: 0)
    runCount = 0
    _totalLength = 0
    _largestRunLength = 0
  }

  /// Creates a list by appending `phyrs` in order, coalescing adjacent ones.
  ///
  /// - Throws: ``PhyrError`` for an empty or overflowing range, or when the
  ///   total length overflows.
  /// - Complexity: O(*n*) for *n* phyrs.
  public init(_ phyrs: some Sequence<Phyr>) throws(PhyrError) {
    self.init()
    for phyr in phyrs { try append(phyr) }
  }

  /// The sum of all run lengths: the memory region's length.
  ///
  /// - Complexity: O(1).
  @inlinable public var totalLength: UInt64 { _totalLength }

  /// The length of the longest run, 0 for an empty list.
  ///
  /// - Complexity: O(1).
  @inlinable public var largestRunLength: UInt64 { _largestRunLength }

  /// The physical address of the memory region's first byte, or `nil` for an
  /// empty list.
  ///
  /// - Complexity: O(1).
  @inlinable
  public var firstAddress: UInt64? { isEmpty ? nil : self[0].address }

  /// The last run, or `nil` for an empty list.
  ///
  /// - Complexity: O(1).
  @inlinable
  public var lastRun: Phyr? { isEmpty ? nil : open }

  /// Bytes of run storage this list holds: the capacity of every chunk at
  /// 16 bytes a run, plus 8 bytes per slot of the outer chunk array and the
  /// open run. For comparing with ``DensePhyrList/byteCount``.
  ///
  /// - Complexity: O(number of chunks).
  public var allocatedByteCount: Int {
    let stride = MemoryLayout<Phyr>.stride
    return chunks.reduce(chunks.capacity * 8 + stride) { $0 + $1.capacity * stride }
  }

  /// Appends a range, extending the last run when the range starts exactly
  /// where that run ends.
  ///
  /// - Throws: ``PhyrError/zeroLength(_:)``, ``PhyrError/rangeOverflow(_:)``,
  ///   ``PhyrError/totalLengthOverflow``. The list is unchanged on error.
  /// - Complexity: Amortised O(1); never copies earlier runs once their
  ///   chunk is full.
  @inlinable
  public mutating func append(_ phyr: Phyr) throws(PhyrError) {
    if !phyr.isValid { throw phyr.length == 0 ? .zeroLength(phyr) : .rangeOverflow(phyr) }
    let (total, overflow) = _totalLength.addingReportingOverflow(phyr.length)
    if overflow { throw .totalLengthOverflow }
    _totalLength = total
    if runCount != 0 && open.isFollowed(by: phyr) {
      // Cannot overflow: the merged run's last byte is `phyr`'s.
      open.length += phyr.length
      if open.length > _largestRunLength { _largestRunLength = open.length }
      return
    }
    startRun(phyr)
  }

  /// Closes the open run into the chunks and opens `phyr`.
  @usableFromInline
  mutating func startRun(_ phyr: Phyr) {
    if phyr.length > _largestRunLength { _largestRunLength = phyr.length }
    if runCount != 0 {
      let index = runCount - 1
      if index & (Self.chunkCapacity - 1) != 0 {
        chunks[chunks.count - 1].append(open)
      } else {
        var chunk = ContiguousArray<Phyr>()
        // The first chunk grows on demand; later ones are full-size at once.
        if index != 0 { chunk.reserveCapacity(Self.chunkCapacity) }
        chunk.append(open)
        chunks.append(chunk)
      }
    }
    open = phyr
    runCount += 1
  }

  /// Appends `length` bytes at `address`; see ``append(_:)``.
  ///
  /// - Complexity: Amortised O(1).
  @inlinable
  public mutating func append(address: UInt64, length: UInt64) throws(PhyrError) {
    try append(Phyr(address: address, length: length))
  }

  /// Checks the invariants; for tests.
  ///
  /// - Complexity: O(*n*).
  func _checkInvariants() -> Bool {
    var total: UInt64 = 0
    var largest: UInt64 = 0
    var n = 0
    for (i, chunk) in chunks.enumerated() {
      if chunk.isEmpty { return false }
      if i < chunks.count - 1 && chunk.count != Self.chunkCapacity { return false }
    }
    if chunks.reduce(0, { $0 + $1.count }) != Swift.max(runCount - 1, 0) { return false }
    var previous: Phyr? = nil
    for run in self {
      if !run.isValid { return false }
      if let previous, previous.isFollowed(by: run) { return false }
      previous = run
      total += run.length
      largest = Swift.max(largest, run.length)
      n += 1
    }
    return total == totalLength && largest == largestRunLength && n == runCount
  }
}

extension PhyrList: RandomAccessCollection {
  /// Runs are numbered from 0.
  public typealias Index = Int

  /// Always 0.
  @inlinable public var startIndex: Int { 0 }
  /// The number of runs.
  @inlinable public var endIndex: Int { runCount }
  /// The number of runs (maximal physically contiguous ranges).
  @inlinable public var count: Int { runCount }

  /// The run at `position`.
  ///
  /// - Complexity: O(1).
  @inlinable
  public subscript(position: Int) -> Phyr {
    precondition(position >= 0 && position < runCount, "PhyrList index out of range")
    if position == runCount - 1 { return open }
    return chunks[position >> Self.chunkShift][position & (Self.chunkCapacity - 1)]
  }

  /// Iterates chunk by chunk, without dividing an index per element, and
  /// ends with the open run.
  public struct Iterator: IteratorProtocol {
    @usableFromInline let chunks: [ContiguousArray<Phyr>]
    @usableFromInline let open: Phyr
    @usableFromInline var chunkIndex = 0
    @usableFromInline var runIndex = 0
    @usableFromInline var openPending: Bool

    @inlinable
    init(_ list: PhyrList) {
      chunks = list.chunks
      open = list.open
      openPending = list.runCount != 0
    }

    /// The next run, or `nil` after the last.
    ///
    /// - Complexity: O(1).
    @inlinable
    public mutating func next() -> Phyr? {
      if chunkIndex < chunks.count {
        let run = chunks[chunkIndex][runIndex]
        runIndex &+= 1
        if runIndex == chunks[chunkIndex].count {
          runIndex = 0
          chunkIndex &+= 1
        }
        return run
      }
      guard openPending else { return nil }
      openPending = false
      return open
    }
  }

  /// Returns an iterator over the runs.
  ///
  /// - Complexity: O(1).
  @inlinable
  public func makeIterator() -> Iterator { Iterator(self) }
}

extension PhyrList: CustomStringConvertible {
  /// The runs as `[0xADDR:0xLEN, ...]`, shortened for long lists.
  public var description: String {
    let shown = prefix(8).map(\.description).joined(separator: ", ")
    return count > 8 ? "[\(shown), ... (\(count) runs)]" : "[\(shown)]"
  }
}
