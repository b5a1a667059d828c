/// A compact encoding of a ``PhyrList``, after Jason Gunthorpe's sketch in
/// the 2022 "Phyr Starter" thread: 8 bytes per naturally aligned
/// power-of-two chunk of 4 KiB pages, a wider form only where a run cannot be
/// cut into such chunks, and the first-page offset and total length stored
/// once for the whole list.
///
/// ## Words
/// - **Compact** (bit 63 clear, 8 bytes): a chunk of `2^order` pages at page
///   frame `pfn` (a multiple of `2^order`) is `pfn << 1 | 1 << order`. The
///   lowest set bit gives the order (Matthew Wilcox's one-extra-bit
///   encoding), and frame numbers below 2^52 keep the word under 2^53.
/// - **Wide** (bit 63 set, bit 62 clear, 16 bytes): the low 62 bits are the
///   length, the next word is the address; for a run with an interior edge
///   that is not page-aligned, or one that would need more than two chunks
///   (so no run ever costs more than its 16-byte plain form).
/// - **Huge** (bits 63 and 62 set, 24 bytes): the next two words are the
///   address and the length; only for runs of 2^62 bytes or more.
///
/// The first run is encoded from its page start and the last to its page
/// end; ``headOffset`` and ``tailTrim`` restore the exact bytes. A run that
/// is not aligned to its own size splits into several chunks (pages 3..10
/// become 3, 4-7, 8-9, 10; beyond two chunks the run is stored wide
/// instead), which decoding merges back: runs in a
/// ``PhyrList`` are maximal, so merging adjacent chunks rebuilds exactly the
/// runs that were encoded.
///
/// The words are one contiguous array: at 8 bytes per chunk even a 1 TiB
/// list of scattered pages stays a single 2 GiB buffer, the size this form
/// exists to shrink, and the encoder reserves it up front when it can.
///
/// - Complexity: Encoding and decoding are O(*n* + chunks).
public struct DensePhyrList: Sendable, Hashable {
  /// The encoded entries.
  public private(set) var words: ContiguousArray<UInt64>
  /// Bytes to drop from the start of the first entry when it is compact:
  /// the first byte's offset in its 4 KiB page.
  public private(set) var headOffset: UInt64
  /// Bytes to drop from the end of the last entry when it is compact.
  public private(set) var tailTrim: UInt64
  /// The memory region length.
  public private(set) var totalLength: UInt64
  /// The number of runs the encoding decodes to.
  public private(set) var runCount: Int

  static let pageShift: UInt64 = 12
  static let wideTag: UInt64 = 1 << 63
  static let hugeTag: UInt64 = 1 << 62

  /// Encodes `list`.
  ///
  /// - Complexity: O(*n* + chunks).
  public init(_ list: PhyrList) {
    words = []
    headOffset = 0
    tailTrim = 0
    totalLength = list.totalLength
    runCount = list.count
    words.reserveCapacity(list.count)
    let last = list.count - 1
    for (i, run) in list.enumerated() {
      let page: UInt64 = 1 << Self.pageShift
      let startPfn = run.address >> Self.pageShift
      // One past the last byte's frame: exact even for a run that ends at
      // `UInt64.max`, where `run.end` wraps to 0.
      let endPfn = (run.lastAddress >> Self.pageShift) + 1
      let headOK = i == 0 || run.address & (page - 1) == 0
      let tailOK = i == last || run.end & (page - 1) == 0
      let wideWords = run.length < Self.hugeTag ? 2 : 3
      if headOK && tailOK && endPfn < (1 << 52)
        && Self.chunkCount(from: startPfn, to: endPfn, limit: wideWords) <= wideWords
      {
        if i == 0 { headOffset = run.address & (page - 1) }
        // endPfn < 2^52 here, so the run's end does not wrap and the trim is below a page.
        if i == last { tailTrim = (endPfn << Self.pageShift) - run.end }
        appendChunks(from: startPfn, to: endPfn)
      } else {
        if i == 0 { headOffset = 0 }
        if i == last { tailTrim = 0 }
        if wideWords == 2 {
          words.append(Self.wideTag | run.length)
          words.append(run.address)
        } else {
          words.append(Self.wideTag | Self.hugeTag)
          words.append(run.address)
          words.append(run.length)
        }
      }
    }
  }

  /// How many naturally aligned chunks cover frames `[start, end)`, counting
  /// no further than `limit + 1`.
  private static func chunkCount(from start: UInt64, to end: UInt64, limit: Int) -> Int {
    var pfn = start
    var n = 0
    while pfn < end && n <= limit {
      let order = Swift.min(pfn.trailingZeroBitCount, 63 - (end - pfn).leadingZeroBitCount)
      pfn += 1 << UInt64(order)
      n += 1
    }
    return n
  }

  /// Emits the naturally aligned power-of-two chunks covering frames
  /// `[start, end)`, largest first where alignment allows.
  private mutating func appendChunks(from start: UInt64, to end: UInt64) {
    var pfn = start
    while pfn < end {
      let order = Swift.min(pfn.trailingZeroBitCount, 63 - (end - pfn).leadingZeroBitCount)
      words.append(pfn << 1 | 1 << UInt64(order))
      pfn += 1 << UInt64(order)
    }
  }

  /// Payload bytes: 8 per word. The fixed fields add 40 bytes per list.
  ///
  /// - Complexity: O(1).
  public var byteCount: Int { words.count * 8 }

  /// Decodes back to the exact list that was encoded.
  ///
  /// - Complexity: O(chunks).
  public var phyrList: PhyrList {
    var list = PhyrList()
    for phyr in self {
      // Cannot fail: the ranges came from a valid list.
      try? list.append(phyr)
    }
    return list
  }
}

extension DensePhyrList: Sequence {
  /// Decodes the runs one at a time, merging adjacent chunks.
  public struct Iterator: IteratorProtocol {
    let dense: DensePhyrList
    var index = 0
    var pending: Phyr? = nil

    /// The next run, or `nil` after the last.
    ///
    /// - Complexity: O(chunks in the run).
    public mutating func next() -> Phyr? {
      while let chunk = nextChunk() {
        guard let run = pending else {
          pending = chunk
          continue
        }
        if run.isFollowed(by: chunk) {
          pending!.length += chunk.length
        } else {
          pending = chunk
          return run
        }
      }
      defer { pending = nil }
      return pending
    }

    /// The next entry as a range, with the head and tail trims applied.
    mutating func nextChunk() -> Phyr? {
      let words = dense.words
      guard index < words.count else { return nil }
      let isFirst = index == 0
      let word = words[index]
      var chunk: Phyr
      var compact = false
      if word & DensePhyrList.wideTag == 0 {
        let order = UInt64(word.trailingZeroBitCount)
        let pfn = (word ^ (1 << order)) >> 1
        chunk = Phyr(
          address: pfn << DensePhyrList.pageShift, length: 1 << (order + DensePhyrList.pageShift))
        index += 1
        compact = true
      } else if word & DensePhyrList.hugeTag == 0 {
        chunk = Phyr(address: words[index + 1], length: word & (DensePhyrList.hugeTag - 1))
        index += 2
      } else {
        chunk = Phyr(address: words[index + 1], length: words[index + 2])
        index += 3
      }
      if compact && isFirst {
        chunk.address += dense.headOffset
        chunk.length -= dense.headOffset
      }
      if compact && index == words.count {
        chunk.length -= dense.tailTrim
      }
      return chunk
    }
  }

  /// Returns a decoding iterator.
  ///
  /// - Complexity: O(1).
  public func makeIterator() -> Iterator { Iterator(dense: self) }

  /// The number of runs.
  public var underestimatedCount: Int { runCount }
}
