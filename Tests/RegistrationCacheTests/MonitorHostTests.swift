import CUserfaultfd
import Foundation
import Synchronization
import TestSupport
import Testing
import UmemSystem
import Verbs

@testable import RegistrationCache

#if canImport(Glibc)
  import Glibc
#endif

/// The userfaultfd monitor on the host, with registration replaced by a
/// counter (the memory is real; only `ibv_reg_mr` is not): each way memory
/// goes away must drop the cached entry before the next lookup. Skipped
/// where the kernel refuses userfaultfd (then the fallback test runs).
@Suite(.serialized) struct MonitorHostTests {
  static let monitored: Bool = {
    let (cache, _) = countingCache(monitor: .userfaultfd)
    return cache.statistics.monitor.isAutomatic
  }()

  @Test func reportsWhichMonitorItHas() {
    let (cache, _) = countingCache(monitor: .userfaultfd)
    let monitor = cache.statistics.monitor
    if case .explicitOnly(let reason) = monitor {
      // The fallback must say why and what to do.
      #expect(reason.contains("userfaultfd") || reason.contains("UFFDIO"))
    }
    let (explicit, _) = countingCache(monitor: .explicitOnly)
    #expect(!explicit.statistics.monitor.isAutomatic)
  }

  @Test(.enabled(if: monitored)) func munmapThenMmapAtTheSameAddressMisses() throws {
    let (cache, counting) = countingCache(monitor: .userfaultfd)
    let length = 16 * page
    let address = mapAnonymous(length)
    let first = try cache.lookup(address: address, length: length)
    first.release()
    unmap(address, length)
    #expect(mapAnonymous(length, at: address) == address)
    let second = try cache.lookup(address: address, length: length)
    #expect(second.lkey != first.lkey && counting.count == 2)
    let s = cache.statistics
    #expect(s.invalidations[.unmap] == 1 && s.monitorEvents >= 1)
    unmap(address, length)
  }

  @Test(.enabled(if: monitored)) func mapFixedOverARegisteredRangeMisses() throws {
    let (cache, counting) = countingCache(monitor: .userfaultfd)
    let length = 8 * page
    let address = mapAnonymous(length)
    try cache.lookup(address: address, length: length).release()
    // MAP_FIXED over the middle only.
    _ = mapAnonymous(2 * page, at: address + UInt64(2 * page))
    _ = try cache.lookup(address: address, length: length)
    #expect(counting.count == 2)
    #expect(cache.statistics.invalidations[.unmap] ?? 0 >= 1)
    unmap(address, length)
  }

  @Test(.enabled(if: monitored)) func madviseDontNeedInsideAHeldRegion() throws {
    let (cache, counting) = countingCache(monitor: .userfaultfd)
    let length = 8 * page
    let address = mapAnonymous(length)
    let held = try cache.lookup(address: address, length: length)
    let raw = UnsafeMutableRawPointer(bitPattern: UInt(address + UInt64(page)))!
    #expect(madvise(raw, page, MADV_DONTNEED) == 0)
    // Re-touching after DONTNEED must not stall (no MISSING-mode watch).
    raw.storeBytes(of: 7, as: UInt8.self)
    let after = try cache.lookup(address: address, length: length)
    #expect(!held.isCached && after.lkey != held.lkey && counting.count == 2)
    #expect(cache.statistics.invalidations[.remove] == 1)
    #expect(cache.statistics.liveRegistrations == 2)
    held.release()
    #expect(cache.statistics.liveRegistrations == 1)
    unmap(address, length)
  }

  @Test(.enabled(if: monitored)) func mremapMovingARegionMisses() throws {
    let (cache, counting) = countingCache(monitor: .userfaultfd)
    let length = 4 * page
    let address = mapAnonymous(length + page)
    try cache.lookup(address: address, length: length).release()
    // The page after the range, part of the same mapping (a MAP_FIXED
    // there could clobber someone else's memory): growing must move.
    let blocker = address + UInt64(length)
    let moved = GNU.mremap(
      UnsafeMutableRawPointer(bitPattern: UInt(address)), length, 64 * page, GNU.mayMove)
    #expect(moved != MAP_FAILED)
    let newAddress = UInt64(UInt(bitPattern: moved))
    #expect(newAddress != address)
    #expect(mapAnonymous(length, at: address) == address)
    _ = try cache.lookup(address: address, length: length)
    #expect(counting.count == 2)
    #expect(cache.statistics.invalidations[.remap] ?? 0 >= 1)
    unmap(newAddress, 64 * page)
    unmap(address, length)
    unmap(blocker, page)
  }

  @Test(.enabled(if: monitored)) func firstTouchOfWatchedUnpopulatedPagesDoesNotStall() throws {
    let (cache, _) = countingCache(monitor: .userfaultfd)
    let length = 64 * page
    let raw = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
    let address = UInt64(UInt(bitPattern: raw))
    try cache.lookup(address: address, length: length).release()
    // Never touched before: a MISSING-mode watch would block here forever.
    let done = Atomic<Bool>(false)
    let start = UInt(bitPattern: raw)
    Thread.detachNewThread {
      memset(UnsafeMutableRawPointer(bitPattern: start)!, 1, length)
      done.store(true, ordering: .releasing)
    }
    let deadline = ContinuousClock.now + .seconds(5)
    while !done.load(ordering: .acquiring) && ContinuousClock.now < deadline { usleep(1000) }
    let touched = done.load(ordering: .acquiring)
    #expect(touched, "first touch stalled")
    // read(2) into watched pages faults inside the kernel: must work too.
    let fd = open("/proc/self/stat", O_RDONLY)
    madvise(raw, length, MADV_DONTNEED)
    #expect(read(fd, raw, 64) > 0)
    close(fd)
    munmap(raw, length)
  }

  @Test(.enabled(if: monitored)) func fileMappingsAreHandedOutButNotCached() throws {
    let (cache, counting) = countingCache(monitor: .userfaultfd)
    let path = NSTemporaryDirectory() + "cache-file-\(getpid())"
    _ = FileManager.default.createFile(atPath: path, contents: Data(count: 4 * page))
    defer { unlink(path) }
    let fd = open(path, O_RDWR)
    let raw = mmap(nil, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)!
    close(fd)
    let address = UInt64(UInt(bitPattern: raw))
    let a = try cache.lookup(address: address, length: 4 * page)
    let b = try cache.lookup(address: address, length: 4 * page)
    #expect(!a.isCached && !b.isCached && counting.count == 2)
    #expect(cache.statistics.uncachedRegistrations == 2 && cache.statistics.entries == 0)
    munmap(raw, 4 * page)
  }

  /// `UFFDIO_REGISTER` over a block with a hole watches only the mappings
  /// present: memory mapped into the hole later is not watched, so the
  /// cache must not count it as watched (found in review: it recorded the
  /// whole 2 MiB block, and a buffer mapped into the hole, cached, then
  /// unmapped and mapped again, was a stale hit).
  @Test(.enabled(if: monitored)) func memoryMappedIntoAHoleOfAWatchedBlockIsWatchedToo() throws {
    let (cache, counting) = countingCache(monitor: .userfaultfd)
    let block = 2 << 20
    let reserved = mapAnonymous(2 * block)
    let base = (reserved + UInt64(block) - 1) & ~UInt64(block - 1)  // 2 MiB-aligned
    // Keep the first half of the block mapped; a hole in the second half.
    let hole = base + UInt64(block / 2)
    unmap(hole, 16 * page)
    try cache.lookup(address: base, length: page).release()  // watches around base
    #expect(mapAnonymous(16 * page, at: hole) == hole)  // mapped into the hole
    try cache.lookup(address: hole, length: 16 * page).release()
    unmap(hole, 16 * page)
    #expect(mapAnonymous(16 * page, at: hole) == hole)
    let again = try cache.lookup(address: hole, length: 16 * page)
    #expect(counting.count == 3, "the remapped hole was served from the cache")
    again.release()
    unmap(reserved, 2 * block)
  }

  /// Buffers next to a mapping the kernel will not watch (a file here; a
  /// device's queues in `umem cache-bench`) share one watched stretch: the
  /// misses do not each pay refused `UFFDIO_REGISTER` calls (found on rxe,
  /// where they made a miss cost 2.5 to 4.5 times a plain registration).
  @Test(.enabled(if: monitored)) func buffersNextToAFileMappingShareOneWatch() throws {
    let (cache, counting) = countingCache(
      limits: CacheLimits(maxEntries: 1000), monitor: .userfaultfd)
    let (reserved, base) = Self.blockStartingWithAFile(pages: 16)
    let monitor = try #require(cache.subscription?.monitor)
    let calls = monitor.watchCalls.load(ordering: .relaxed)
    let buffers = 128
    for i in 0..<buffers {
      let handle = try cache.lookup(address: base + UInt64((16 + i) * page), length: page)
      #expect(handle.isCached)
      handle.release()
    }
    let used = monitor.watchCalls.load(ordering: .relaxed) - calls
    #expect(counting.count == buffers && used <= 40, "\(used) UFFDIO_REGISTER calls")
    unmap(reserved, 4 << 20)
  }

  /// A buffer whose neighbour on one side cannot be watched (a file
  /// mapping) costs one refused call on that side, not a bisection over
  /// the whole 2 MiB block; the pages beside it on the other side are
  /// watched with it, so their misses call nothing.
  @Test(.enabled(if: monitored)) func aRefusingNeighbourCostsOneCallOnItsSide() throws {
    let (cache, counting) = countingCache(
      limits: CacheLimits(maxEntries: 1000), monitor: .userfaultfd)
    // The file's 256 pages (half the block), then anonymous pages to its end.
    let (reserved, base) = Self.blockStartingWithAFile(pages: 256)
    let monitor = try #require(cache.subscription?.monitor)
    let calls = monitor.watchCalls.load(ordering: .relaxed)
    let first = try cache.lookup(address: base + UInt64(256 * page), length: page)
    #expect(first.isCached)
    first.release()
    let used = monitor.watchCalls.load(ordering: .relaxed) - calls
    // The block (refused), the page, one refused page on the left, and
    // on the right one page and then a bisection over 255 pages (8): 11
    // calls, where bisecting each side took 18.
    #expect(used <= 12, "\(used) UFFDIO_REGISTER calls")
    let before = monitor.watchCalls.load(ordering: .relaxed)
    for i in 1..<64 {
      let handle = try cache.lookup(address: base + UInt64((256 + i) * page), length: page)
      #expect(handle.isCached)
      handle.release()
    }
    #expect(monitor.watchCalls.load(ordering: .relaxed) == before, "neighbours called again")
    #expect(counting.count == 64)
    unmap(reserved, 4 << 20)
  }

  /// A buffer across a 2 MiB boundary is watched in whole 2 MiB blocks:
  /// one `UFFDIO_REGISTER` for the two blocks, and none for the next
  /// buffers in them (it used to watch such a buffer alone, one call per
  /// miss for 1 MiB buffers).
  @Test(.enabled(if: monitored)) func aBufferAcrossABlockBoundaryIsWatchedInWholeBlocks() throws {
    let block = 2 << 20
    let blocks = try WatchedBlocks(3, of: block)
    defer { blocks.unmap() }
    // 1 MiB from the middle of the first block to the middle of the second.
    try blocks.lookUp(block / 2, length: block / 2 + block / 4)
    #expect(blocks.calls == 1)
    for offset in [0, block / 4, block + block / 2] { try blocks.lookUp(offset, length: block / 4) }
    #expect(blocks.calls == 1, "neighbours called again")
    #expect(blocks.counting.count == 4)
  }

  /// A 1 MiB miss watches ahead: the window is 16 times its size rounded
  /// up to a power of two (16 MiB here), so its 15 neighbours of the same
  /// size cost no `UFFDIO_REGISTER` (a 2 MiB window made every other one
  /// pay a call).
  @Test(.enabled(if: monitored)) func largeBuffersWatchAheadForTheirNeighbours() throws {
    let blocks = try WatchedBlocks(1, of: 16 << 20)
    defer { blocks.unmap() }
    for i in 0..<16 { try blocks.lookUp(i << 20, length: 1 << 20) }
    #expect(blocks.calls == 1)
    #expect(blocks.counting.count == 16)
  }

  /// Two watched blocks side by side count as one watched range: a buffer
  /// across their boundary costs no further call.
  @Test(.enabled(if: monitored)) func aBufferAcrossTwoWatchedBlocksIsWatchedAlready() throws {
    let block = 2 << 20
    let blocks = try WatchedBlocks(3, of: block)
    defer { blocks.unmap() }
    for offset in [block - page, block] { try blocks.lookUp(offset, length: page) }
    #expect(blocks.calls == 2)
    try blocks.lookUp(block - page, length: 2 * page)
    #expect(blocks.calls == 2, "watched again")
    #expect(blocks.counting.count == 3)
  }

  /// Watching never splits a transparent huge page: a watch that ends
  /// inside one splits the VMA there, and the kernel maps the huge page
  /// as 512 small ones from then on (the application loses it, and under
  /// emulation the `UFFDIO_REGISTER` took 10 times as long: 1 MiB misses
  /// cost 3-4 times a plain registration). Two buffers inside huge pages,
  /// one across the boundary between two. Runs where the kernel has THP
  /// (`always` or `madvise`); it requires the huge pages it asks for.
  @Test(.enabled(if: monitored && transparentHugePages)) func watchingKeepsTransparentHugePages()
    throws
  {
    let (cache, counting) = countingCache(monitor: .userfaultfd)
    let block = 2 << 20
    // Untouched until the advice (mapAnonymous touches every page).
    let raw = mmap(nil, 4 * block, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    try #require(raw != MAP_FAILED)
    let reserved = UInt64(UInt(bitPattern: raw))
    defer { unmap(reserved, 4 * block) }
    let base = (reserved + UInt64(block) - 1) & ~UInt64(block - 1)
    let start = try #require(UnsafeMutableRawPointer(bitPattern: UInt(base)))
    #expect(madvise(start, 2 * block, MADV_HUGEPAGE) == 0)
    memset(start, 1, 2 * block)
    let before = Self.anonHugeKilobytes(reserved, 4 * block)
    try #require(before >= 2 * block / 1024, "the kernel gave \(before) kB of huge pages")
    for (offset, length) in [(block / 2, 16 * page), (block - 8 * page, 16 * page)] {
      let handle = try cache.lookup(address: base + UInt64(offset), length: length)
      #expect(handle.isCached)
      handle.release()
    }
    #expect(counting.count == 2)
    #expect(Self.anonHugeKilobytes(reserved, 4 * block) == before, "a watch split a huge page")
  }

  /// The `AnonHugePages` of this process's mappings that share a byte
  /// with `[address, address + length)` (the kernel may have merged the
  /// test's mapping with a neighbour), from /proc/self/smaps.
  static func anonHugeKilobytes(_ address: UInt64, _ length: Int) -> Int {
    // (Foundation's String(contentsOfFile:) stops short on /proc files.)
    guard case .success(let smaps) = TextFile.read("/proc/self/smaps") else { return 0 }
    var inside = false
    var total = 0
    for line in smaps.split(separator: "\n") {
      let fields = line.split(separator: " ", omittingEmptySubsequences: true)
      guard let first = fields.first else { continue }
      let bounds = first.split(separator: "-")
      if bounds.count == 2, let low = UInt64(bounds[0], radix: 16),
        let high = UInt64(bounds[1], radix: 16)
      {
        inside = low < address + UInt64(length) && high > address
      } else if inside, first == "AnonHugePages:", fields.count >= 2, let kb = Int(fields[1]) {
        total += kb
      }
    }
    return total
  }

  /// Whether the kernel's transparent huge pages are on for memory that
  /// asks (`always` or `madvise`).
  static let transparentHugePages: Bool = {
    let path = "/sys/kernel/mm/transparent_hugepage/enabled"
    guard case .success(let mode) = TextFile.read(path) else { return false }
    return mode.contains("[always]") || mode.contains("[madvise]")
  }()

  /// For the tests that count watches: a cache with the monitor and a
  /// counting registrar, `count` whole `block`-aligned blocks of mapped
  /// memory from `base`, and the `UFFDIO_REGISTER` calls made since.
  struct WatchedBlocks {
    let cache: RegistrationCache
    let counting: CountingRegistrar
    let monitor: UserfaultMonitor
    let reserved: UInt64
    let length: Int
    let base: UInt64
    let before: Int

    init(_ count: Int, of block: Int) throws {
      (cache, counting) = countingCache(
        limits: CacheLimits(maxEntries: 1000), monitor: .userfaultfd)
      monitor = try #require(cache.subscription?.monitor)
      length = (count + 1) * block  // room to align
      reserved = mapAnonymous(length)
      base = (reserved + UInt64(block) - 1) & ~UInt64(block - 1)
      before = monitor.watchCalls.load(ordering: .relaxed)
    }

    var calls: Int { monitor.watchCalls.load(ordering: .relaxed) - before }

    /// Looks up `length` bytes at `offset` from `base`, expects the
    /// registration cached, and releases it.
    func lookUp(_ offset: Int, length: Int) throws {
      let handle = try cache.lookup(address: base + UInt64(offset), length: length)
      #expect(handle.isCached)
      handle.release()
    }

    func unmap() { RegistrationCacheTests.unmap(reserved, length) }
  }

  /// Four MiB of anonymous memory (to unmap at `reserved`) and in it a
  /// 2 MiB-aligned block whose first `pages` pages are a shared mapping
  /// of a new temporary file (already unlinked): a neighbour the kernel
  /// will not let userfaultfd watch.
  static func blockStartingWithAFile(pages: Int) -> (reserved: UInt64, base: UInt64) {
    let block = 2 << 20
    let reserved = mapAnonymous(2 * block)
    let base = (reserved + UInt64(block) - 1) & ~UInt64(block - 1)
    let path = NSTemporaryDirectory() + "cache-neighbour-\(getpid())-\(pages)"
    _ = FileManager.default.createFile(atPath: path, contents: Data(count: pages * page))
    let fd = open(path, O_RDWR)
    unlink(path)
    let file = mmap(
      UnsafeMutableRawPointer(bitPattern: UInt(base)), pages * page, PROT_READ | PROT_WRITE,
      MAP_SHARED | MAP_FIXED, fd, 0)
    close(fd)
    #expect(file == UnsafeMutableRawPointer(bitPattern: UInt(base)))
    return (reserved, base)
  }

  /// The kernel lets one userfaultfd own a mapping: a range already
  /// watched by a descriptor that is not the cache's (another library's)
  /// gives EBUSY, and the cache hands the registration out uncached.
  @Test(.enabled(if: monitored)) func rangeWatchedByAnotherUserfaultfdIsNotCached() throws {
    let (cache, counting) = countingCache(monitor: .userfaultfd)
    let length = 4 * page
    let address = mapAnonymous(length)
    let fd = Self.foreignUserfaultfd()
    try #require(fd >= 0, "userfaultfd: \(-fd)")
    defer { close(fd) }
    #expect(CUFFD_register(fd, address, UInt64(length), UInt64(CUFFD_REGISTER_MODE_WP)) == 0)
    let handle = try cache.lookup(address: address, length: length)  // EBUSY
    #expect(!handle.isCached && counting.count == 1)
    #expect(cache.statistics.uncachedRegistrations == 1)
    handle.release()
    unmap(address, length)
  }

  /// A descriptor of our own, as another library would open one.
  static func foreignUserfaultfd() -> Int32 {
    var fd = CUFFD_open(0)
    if fd == -EPERM { fd = CUFFD_open(1) }
    guard fd >= 0 else { return fd }
    var available: UInt64 = 0
    let api = CUFFD_api(fd, 0, &available)
    guard api == 0 else {
      close(fd)
      return api
    }
    return fd
  }

  /// Two caches (two protection domains, say) over the same buffers share
  /// the process's one monitor: both cache them (no EBUSY) and both drop
  /// them when the memory goes.
  @Test(.enabled(if: monitored)) func twoCachesOverTheSameBuffersShareOneMonitor() throws {
    let (first, firstCounting) = countingCache(monitor: .userfaultfd)
    let (second, secondCounting) = countingCache(monitor: .userfaultfd)
    #expect(first.subscription?.monitor === second.subscription?.monitor)
    let length = 8 * page
    let address = mapAnonymous(length)
    for cache in [first, second] {
      let a = try cache.lookup(address: address, length: length)
      let b = try cache.lookup(address: address + UInt64(page), length: page)
      #expect(a.isCached && b.isCached && a.lkey == b.lkey)
      a.release()
      b.release()
    }
    #expect(first.statistics.uncachedRegistrations == 0)
    #expect(second.statistics.uncachedRegistrations == 0)
    #expect(firstCounting.count == 1 && secondCounting.count == 1)
    // One cache closing leaves the other watched.
    first.close()
    unmap(address, length)
    #expect(mapAnonymous(length, at: address) == address)
    let again = try second.lookup(address: address, length: length)
    #expect(secondCounting.count == 2 && second.statistics.invalidations[.unmap] == 1)
    again.release()
    second.close()
    unmap(address, length)
  }

  /// libfabric #5554: a thread that frees (and trims the heap, or unmaps)
  /// while another thread holds the cache's lock must not deadlock: the
  /// unmapping thread waits for the monitor to read the event, and the
  /// monitor must not wait for the lock.
  @Test(.enabled(if: monitored)) func unmapWhileAnotherThreadHoldsTheLockCompletes() throws {
    let (cache, _) = countingCache(monitor: .userfaultfd)
    // A malloc'd block above the mmap threshold (freed with munmap) and a
    // heap block below it (free + malloc_trim: brk or MADV_DONTNEED).
    let big = malloc(4 << 20)!
    let small = malloc(64 << 10)!
    memset(big, 1, 4 << 20)
    memset(small, 1, 64 << 10)
    for block in [(big, 4 << 20), (small, 64 << 10)] {
      let start = UInt64(UInt(bitPattern: block.0))
      try cache.lookup(address: start, length: block.1).release()
    }
    let holding = Atomic<Bool>(false)
    let released = Atomic<Bool>(false)
    let freed = Atomic<Bool>(false)
    Thread.detachNewThread {
      cache.withWriteLockForTesting {
        holding.store(true, ordering: .releasing)
        // Hold the lock until the freeing thread is done (or 5 s).
        let deadline = ContinuousClock.now + .seconds(5)
        while !freed.load(ordering: .acquiring) && ContinuousClock.now < deadline { usleep(100) }
      }
      released.store(true, ordering: .releasing)
    }
    while !holding.load(ordering: .acquiring) { usleep(100) }
    let start = ContinuousClock.now
    free(big)
    free(small)
    _ = GNU.mallocTrim(0)
    freed.store(true, ordering: .releasing)
    let elapsed = ContinuousClock.now - start
    #expect(elapsed < .seconds(5), "free/malloc_trim took \(elapsed) while the lock was held")
    while !released.load(ordering: .acquiring) { usleep(100) }
    // The next lookup applies what the monitor queued.
    _ = try cache.lookup(address: 0x7000_0000, length: page)
    // The point is above: no deadlock. The event is counted unless another
    // suite running in parallel already watched the same 2 MiB block
    // (EBUSY: the lookups were then handed out uncached, and say so).
    let statistics = cache.statistics
    #expect(
      statistics.invalidations[.unmap] ?? 0 >= 1 || statistics.uncachedRegistrations > 0,
      "\(statistics)")
  }

  @Test(.enabled(if: monitored)) func overflowingTheQueueDropsEverything() throws {
    let (cache, _) = countingCache(
      limits: CacheLimits(monitorQueueCapacity: 2), monitor: .userfaultfd)
    var addresses: [UInt64] = []
    for _ in 0..<6 {
      let address = mapAnonymous(page)
      try cache.lookup(address: address, length: page).release()
      addresses.append(address)
    }
    let keep = mapAnonymous(page)
    try cache.lookup(address: keep, length: page).release()
    for address in addresses { unmap(address, page) }
    _ = try cache.lookup(address: keep, length: page)
    let s = cache.statistics
    #expect(s.invalidations[.monitorOverflow] ?? 0 >= 1)
    #expect(s.misses == 8)  // even `keep` was dropped: safe, never stale
    unmap(keep, page)
  }
}

/// Found with `umem cache-bench`: watching 2 MiB blocks can cover thread
/// stacks (mmap puts them next to buffers). A thread that exits gives its
/// stack back with MADV_DONTNEED, which waits for the monitor to read the
/// REMOVE event; when the exiting thread was the monitor itself (at
/// close), it waited for itself. Closing must finish.
@Suite(.serialized) struct MonitorCloseTests {
  @Test(.enabled(if: MonitorHostTests.monitored)) func closeFinishesWhenThreadStacksAreWatched()
    throws
  {
    for _ in 0..<3 {
      // The buffer first: the monitor thread's stack is then mapped just
      // below it, inside the first buffer page's 2 MiB block.
      let length = 4096 * page
      let address = mapAnonymous(length)
      let (cache, _) = countingCache(
        limits: CacheLimits(maxEntries: 5000), monitor: .userfaultfd)
      // Threads whose stacks land next to the buffer, and exit.
      runOnThreads(4) { t in
        for i in stride(from: t, to: 4096, by: 4) {
          _ = try? cache.lookup(address: address + UInt64(i * page), length: page).release()
        }
      }
      let closed = Atomic<Bool>(false)
      Thread.detachNewThread {
        cache.close()
        closed.store(true, ordering: .releasing)
      }
      let deadline = ContinuousClock.now + .seconds(5)
      while !closed.load(ordering: .acquiring) && ContinuousClock.now < deadline { usleep(1000) }
      let finished = closed.load(ordering: .acquiring)
      #expect(finished, "close() did not finish within 5 s")
      if !finished { return }
      unmap(address, length)
    }
  }

  /// The reproduction: `umem cache-bench` hung in close() before the
  /// monitor closed its descriptor itself (its buffer is mapped before the
  /// cache, so the monitor's stack lies next to it).
  @Test(.enabled(if: MonitorHostTests.monitored)) func cacheBenchCountingFinishes() {
    let result = TestTools.run([
      "timeout", "120", TestTools.executable("umem"), "cache-bench", "--registrar", "counter",
      "--regions", "10000", "--lookups", "100000", "--json",
    ])
    #expect(result.status == 0, "exit \(result.status) (124: hung): \(result.stderr)")
    #expect(result.stdout.contains("\"hits\":100000"))
  }

  /// With a thread missing (and invalidating) beside the timed lookups:
  /// every lookup still hits, the thread's misses are reported, and
  /// nothing stays registered.
  @Test(.enabled(if: MonitorHostTests.monitored)) func cacheBenchWithBackgroundMisses() throws {
    let result = TestTools.run([
      "timeout", "120", TestTools.executable("umem"), "cache-bench", "--registrar", "counter",
      "--regions", "300", "--lookups", "50000", "--threads", "2", "--background-misses", "--json",
    ])
    #expect(result.status == 0, "exit \(result.status) (124: hung): \(result.stderr)")
    #expect(result.stdout.contains("\"hits\":50000"))
    struct Report: Decodable {
      var backgroundMisses: Int?
      var statistics: CacheStatistics
    }
    let report = try JSONDecoder().decode(Report.self, from: Data(result.stdout.utf8))
    #expect((report.backgroundMisses ?? 0) > 0)
    #expect(report.statistics.liveRegistrations == 0)
  }
}
