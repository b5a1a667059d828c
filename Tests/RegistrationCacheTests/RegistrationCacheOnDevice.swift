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

/// The cache on a real device (rxe under `ci/rxe`), each test from a bug a
/// production cache shipped: data moved with RDMA READs between two
/// loopback queue pairs proves which pages a cached key reaches.
/// Serialized: the leak checks count this process's pins and MRs.
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct RegistrationCacheOnDevice {
  static let readable: MemoryAccess = [.localWrite, .remoteRead]

  /// A domain, two connected queue pairs (both kept: a dropped one is
  /// destroyed at once), a cache, and a registered landing buffer for READs.
  final class Lab {
    let pd: SharedProtectionDomain
    let a: SharedQueuePair
    let b: SharedQueuePair
    let cq: SharedCompletionQueue
    let cache: RegistrationCache
    let landing: SharedMemoryRegion
    var nextID: UInt64 = 1

    init(limits: CacheLimits = CacheLimits(), landingBytes: Int = 1 << 20) throws {
      let context = try SharedDeviceContext.open(name: DeviceLab.deviceName)
      pd = try context.allocateProtectionDomain()
      cq = try context.createCompletionQueue(entries: 1024)
      let capacity = QueuePairCapacity(sendRequests: 64, receiveRequests: 16)
      a = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq, capacity: capacity)
      b = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq, capacity: capacity)
      try a.connectLoopback(with: b)
      cache = RegistrationCache(domain: pd, limits: limits)
      landing = try pd.register(SharedBuffer(byteCount: landingBytes), access: [.localWrite])
    }

    /// What a peer READs through `handle` at `address`.
    func peerReads(_ handle: CachedRegistration, address: UInt64, count: Int) throws -> [UInt8] {
      try peerReads(handle.remote(address: address, count: count), count: count)
    }

    /// What a peer READs at `remote`.
    func peerReads(_ remote: RemoteBuffer, count: Int) throws -> [UInt8] {
      let id = nextID
      nextID += 1
      try a.postSend(.read(from: remote), landing.scatterGather(count: count), id: id)
      let completion = try cq.wait(for: 1)[0]
      try completion.checkSuccess()
      return try landing.memory!.load(0..<count)
    }
  }

  static func fill(_ address: UInt64, _ count: Int, with byte: UInt8) {
    memset(UnsafeMutableRawPointer(bitPattern: UInt(address))!, Int32(byte), count)
  }

  static func expectMonitor(_ cache: RegistrationCache) {
    let monitor = cache.statistics.monitor
    #expect(monitor.isAutomatic, "the VM runs as root on 6.1: userfaultfd expected, got \(monitor)")
  }

  /// A lease is the handle's promise without the object: a peer reads the
  /// leased pages, the registration survives an invalidation while leased,
  /// its release deregisters it, and the next lease registers afresh.
  @Test func aLeaseKeepsItsKeysThroughAnInvalidation() throws {
    try expectNoLeaks("lease") {
      let lab = try Lab()
      let length = 64 << 10
      let address = mapAnonymous(length)
      defer { unmap(address, length) }
      Self.fill(address, length, with: 0x22)
      let lease = try lab.cache.lease(address: address, length: length, access: Self.readable)
      let remote = try lease.remote(address: address + 4096, count: 4096)
      #expect(try lab.peerReads(remote, count: 4096) == Array(repeating: 0x22, count: 4096))
      lab.cache.invalidate(address: address, length: length)
      let cached = lease.isCached
      #expect(!cached && lab.cache.statistics.deregistrations == 0)
      Self.fill(address, length, with: 0x33)
      #expect(try lab.peerReads(remote, count: 4096) == Array(repeating: 0x33, count: 4096))
      lease.release()
      #expect(lab.cache.statistics.deregistrations == 1)
      let again = try lab.cache.lease(address: address, length: length, access: Self.readable)
      let key = again.rkey
      #expect(key != remote.rkey && lab.cache.statistics.registrations == 2)
      again.release()
      lab.cache.close()
    }
  }

  /// libfabric-cray #1350: munmap, mmap at the same address, lookup.
  @Test func munmapThenMmapAtTheSameAddressReadsNewData() throws {
    try expectNoLeaks("munmap+mmap") {
      let lab = try Lab()
      Self.expectMonitor(lab.cache)
      let length = 64 << 10
      let address = mapAnonymous(length)
      Self.fill(address, length, with: 0x11)
      let first = try lab.cache.lookup(address: address, length: length, access: Self.readable)
      #expect(
        try lab.peerReads(first, address: address, count: 4096)
          == Array(repeating: 0x11, count: 4096))
      first.release()
      unmap(address, length)
      #expect(mapAnonymous(length, at: address) == address)
      Self.fill(address, length, with: 0x22)
      let second = try lab.cache.lookup(address: address, length: length, access: Self.readable)
      #expect(second.rkey != first.rkey)
      #expect(
        try lab.peerReads(second, address: address + 8192, count: 4096)
          == Array(repeating: 0x22, count: 4096))
      #expect(lab.cache.statistics.invalidations[.unmap] ?? 0 >= 1)
      second.release()
      lab.cache.close()
      unmap(address, length)
    }
  }

  /// free, then malloc of the same size (glibc gives a large block back at
  /// the same address, after munmap and mmap).
  @Test func freeThenMallocReuse() throws {
    try expectNoLeaks("free+malloc") {
      let lab = try Lab()
      let length = 1 << 20
      let first = malloc(length)!
      memset(first, 0x33, length)
      let start = UInt64(UInt(bitPattern: first))
      let handle = try lab.cache.lookup(address: start, length: length, access: Self.readable)
      #expect(
        try lab.peerReads(handle, address: start, count: 4096)
          == Array(repeating: 0x33, count: 4096))
      handle.release()
      free(first)
      let again = malloc(length)!
      memset(again, 0x44, length)
      let start2 = UInt64(UInt(bitPattern: again))
      let second = try lab.cache.lookup(address: start2, length: length, access: Self.readable)
      #expect(
        try lab.peerReads(second, address: start2, count: 4096)
          == Array(repeating: 0x44, count: 4096))
      if start2 == start { #expect(second.rkey != handle.rkey) }
      second.release()
      lab.cache.close()
      free(again)
    }
  }

  /// mremap moves a cached region; new memory appears at the old address.
  @Test func mremapMovingACachedRegion() throws {
    try expectNoLeaks("mremap") {
      let lab = try Lab()
      let length = 16 * page
      let address = mapAnonymous(length + page)
      Self.fill(address, length, with: 0x55)
      try lab.cache.lookup(address: address, length: length, access: Self.readable).release()
      // The page after the range, part of the same mapping (a MAP_FIXED
      // there could clobber someone else's memory): growing must move.
      let blocker = address + UInt64(length)
      let moved = GNU.mremap(
        UnsafeMutableRawPointer(bitPattern: UInt(address)), length, 64 * page, GNU.mayMove)
      #expect(moved != MAP_FAILED)
      let newAddress = UInt64(UInt(bitPattern: moved))
      #expect(newAddress != address)
      #expect(mapAnonymous(length, at: address) == address)
      Self.fill(address, length, with: 0x66)
      let handle = try lab.cache.lookup(address: address, length: length, access: Self.readable)
      #expect(
        try lab.peerReads(handle, address: address, count: 4096)
          == Array(repeating: 0x66, count: 4096))
      #expect(lab.cache.statistics.invalidations[.remap] ?? 0 >= 1)
      handle.release()
      lab.cache.close()
      unmap(newAddress, 64 * page)
      unmap(address, length)
      unmap(blocker, page)
    }
  }

  /// mmap(MAP_FIXED) over part of a cached range.
  @Test func mapFixedOverACachedRange() throws {
    try expectNoLeaks("MAP_FIXED") {
      let lab = try Lab()
      let length = 16 * page
      let address = mapAnonymous(length)
      Self.fill(address, length, with: 0x77)
      try lab.cache.lookup(address: address, length: length, access: Self.readable).release()
      _ = mapAnonymous(4 * page, at: address + UInt64(4 * page))
      Self.fill(address + UInt64(4 * page), 4 * page, with: 0x88)
      let handle = try lab.cache.lookup(address: address, length: length, access: Self.readable)
      #expect(
        try lab.peerReads(handle, address: address + UInt64(4 * page), count: 4096)
          == Array(repeating: 0x88, count: 4096))
      handle.release()
      lab.cache.close()
      unmap(address, length)
    }
  }

  /// Open MPI #4509: MADV_DONTNEED inside a region in use. No crash; the
  /// entry is dropped; the holder's registration keeps working (on the
  /// pages it pinned) until released; a new lookup sees the new pages.
  @Test func madviseDontNeedInsideARegionInUse() throws {
    try expectNoLeaks("MADV_DONTNEED") {
      let lab = try Lab()
      let length = 16 * page
      let address = mapAnonymous(length)
      Self.fill(address, length, with: 0x99)
      let held = try lab.cache.lookup(address: address, length: length, access: Self.readable)
      let raw = UnsafeMutableRawPointer(bitPattern: UInt(address))!
      #expect(madvise(raw, 4 * page, MADV_DONTNEED) == 0)
      Self.fill(address, page, with: 0xaa)  // a fresh page now
      let fresh = try lab.cache.lookup(address: address, length: length, access: Self.readable)
      #expect(!held.isCached && fresh.rkey != held.rkey)
      // The holder's key still works (the pages it pinned, old data).
      #expect(
        try lab.peerReads(held, address: address, count: 4096)
          == Array(repeating: 0x99, count: 4096))
      #expect(
        try lab.peerReads(fresh, address: address, count: 4096)
          == Array(repeating: 0xaa, count: 4096))
      let mrs = ResourceSnapshot.countOwn("mr")
      held.release()
      #expect(ResourceSnapshot.countOwn("mr") == mrs - 1)
      fresh.release()
      lab.cache.close()
      unmap(address, length)
    }
  }

  /// libfabric #5554: free and malloc_trim on one thread while another
  /// holds the cache's lock, with real registrations over heap memory.
  @Test func heapTrimWhileTheLockIsHeldCompletes() throws {
    try expectNoLeaks("trim under lock") {
      let lab = try Lab()
      var blocks: [UnsafeMutableRawPointer] = []
      for size in [4 << 20, 64 << 10, 32 << 10] {
        let block = malloc(size)!
        memset(block, 1, size)
        try lab.cache.lookup(address: UInt64(UInt(bitPattern: block)), length: size).release()
        blocks.append(block)
      }
      let holding = Atomic<Bool>(false)
      let freed = Atomic<Bool>(false)
      let released = Atomic<Bool>(false)
      let cache = lab.cache
      Thread.detachNewThread {
        cache.withWriteLockForTesting {
          holding.store(true, ordering: .releasing)
          let deadline = ContinuousClock.now + .seconds(5)
          while !freed.load(ordering: .acquiring) && ContinuousClock.now < deadline { usleep(100) }
        }
        released.store(true, ordering: .releasing)
      }
      while !holding.load(ordering: .acquiring) { usleep(100) }
      let start = ContinuousClock.now
      for block in blocks { free(block) }
      _ = GNU.mallocTrim(0)
      freed.store(true, ordering: .releasing)
      let elapsed = ContinuousClock.now - start
      #expect(elapsed < .seconds(5), "free/malloc_trim took \(elapsed)")
      while !released.load(ordering: .acquiring) { usleep(100) }
      usleep(100_000)  // the thread's closure (and its cache reference) goes
      lab.cache.close()
    }
  }

  /// Access upgrade, partial overlaps on both sides, adjacent ranges, with
  /// real keys: a peer WRITE through the upgraded key lands.
  @Test func accessUpgradeOverlapsAndAdjacentRanges() throws {
    try expectNoLeaks("policies") {
      let lab = try Lab()
      let length = 32 * page
      let address = mapAnonymous(length)
      let middle = address + UInt64(8 * page)
      let readOnly = try lab.cache.lookup(address: middle, length: 8 * page, access: [.remoteRead])
      let writable = try lab.cache.lookup(
        address: middle, length: 8 * page, access: [.localWrite, .remoteWrite])
      #expect(writable.access.contains([.remoteRead, .remoteWrite]) && !readOnly.isCached)
      let source = try lab.pd.register(SharedBuffer(byteCount: 4096), access: [.localWrite])
      try source.memory!.copy(from: Array(repeating: 0xbb, count: 4096))
      try lab.a.postSend(
        .write(to: writable.remote(address: middle, count: 4096)), source.scatterGather(), id: 99)
      try lab.cq.wait(for: 1)[0].checkSuccess()
      #expect(UnsafeRawPointer(bitPattern: UInt(middle))!.load(as: UInt8.self) == 0xbb)
      // Overlap on the left and on the right: the union, one entry.
      let left = try lab.cache.lookup(address: address + UInt64(4 * page), length: 8 * page)
      let right = try lab.cache.lookup(address: address + UInt64(14 * page), length: 8 * page)
      #expect(right.address == address + UInt64(4 * page) && right.length == 18 * page)
      #expect(
        try lab.peerReads(right, address: middle, count: 16) == Array(repeating: 0xbb, count: 16))
      // Adjacent: a separate entry.
      let adjacent = try lab.cache.lookup(address: address + UInt64(22 * page), length: 4 * page)
      #expect(adjacent.isCached && right.isCached && lab.cache.statistics.entries == 2)
      for handle in [readOnly, writable, left, right, adjacent] { handle.release() }
      lab.cache.close()
      unmap(address, length)
    }
  }

  /// Registering 1 GiB in 4 MiB pieces through the cache under a 64 MiB
  /// RLIMIT_MEMLOCK: succeeds by evicting, and VmPin never passes the
  /// limit. (The VM runs as root, whose CAP_IPC_LOCK makes the kernel
  /// ignore the limit, so the cache is told to keep it anyway.)
  @Test func evictionKeepsPinsUnderTheMemoryLockLimit() throws {
    var saved = rlimit()
    getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &saved)
    defer { _ = setrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &saved) }
    try expectNoLeaks("memlock eviction") {
      let lab = try Lab(limits: CacheLimits(memoryLock: .always))
      let limit = 64 << 20
      var lowered = rlimit(rlim_cur: rlim_t(limit), rlim_max: saved.rlim_max)
      #expect(setrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &lowered) == 0)
      let piece = 4 << 20
      let total = 1 << 30
      let address = mapAnonymous(total)
      var highest: UInt64 = 0
      for offset in stride(from: 0, to: total, by: piece) {
        try lab.cache.lookup(address: address + UInt64(offset), length: piece).release()
        highest = max(highest, ProcessStatus.current().pinnedBytes)
      }
      _ = setrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &saved)
      let s = lab.cache.statistics
      #expect(highest <= UInt64(limit), "VmPin reached \(highest)")
      #expect(s.registrations == total / piece && s.evictions > 0)
      print("memlock eviction: VmPin peak \(highest >> 20) MiB, \(s.evictions) evictions")
      lab.cache.close()
      unmap(address, total)
    }
  }

  /// 8 threads look up 1,000 buffers while a ninth unmaps and remaps them
  /// (and invalidates some explicitly); every hit is checked against the
  /// page frames (the cache's frame check, as root): zero stale hits.
  ///
  /// 100,000 lookups per thread by default (`UMEM_CACHE_TEST_LOOKUPS`),
  /// cut short after `UMEM_CACHE_TEST_SECONDS` (default 45) on a slow
  /// emulated machine; the printed line says how many ran.
  @Test func eightThreadsConcurrentInvalidationsNoStaleHits() throws {
    let environment = ProcessInfo.processInfo.environment
    let lookups = Int(environment["UMEM_CACHE_TEST_LOOKUPS"] ?? "") ?? 100_000
    let seconds = Int(environment["UMEM_CACHE_TEST_SECONDS"] ?? "") ?? 45
    let deadline = ContinuousClock.now + .seconds(seconds)
    let began = ContinuousClock.now
    try expectNoLeaks("8 threads") {
      let lab = try Lab(limits: CacheLimits(maxEntries: 2000, checkFramesOnHit: true))
      let buffers = 1000
      let base = mapAnonymous(buffers * page)
      let cache = lab.cache
      let stop = Atomic<Bool>(false)
      let churnDone = Atomic<Bool>(false)
      Thread.detachNewThread {
        var rng = SystemRandomNumberGenerator()
        var round = 0
        while !stop.load(ordering: .relaxed) {
          let r = Int.random(in: 0..<buffers, using: &rng)
          let address = base + UInt64(r * page)
          if round % 4 == 0 {
            cache.invalidate(address: address, length: page)
          } else {
            _ = mapAnonymous(page, at: address)  // MAP_FIXED: an UNMAP event
          }
          round += 1
        }
        churnDone.store(true, ordering: .releasing)
      }
      let failures = Mutex<[String]>([])
      runOnThreads(8) { _ in
        var rng = SystemRandomNumberGenerator()
        for i in 0..<lookups {
          if i % 1024 == 0 && ContinuousClock.now > deadline { break }
          let r = Int.random(in: 0..<buffers, using: &rng)
          do {
            try cache.lookup(address: base + UInt64(r * page), length: page).release()
          } catch {
            failures.withLock { $0.append("\(error)") }
          }
        }
      }
      stop.store(true, ordering: .relaxed)
      while !churnDone.load(ordering: .acquiring) { usleep(1000) }
      usleep(100_000)  // the thread's closure (and its cache reference) goes
      let s = cache.statistics
      print(
        "8 threads: \(s.lookups) lookups (of \(8 * lookups)) in \(ContinuousClock.now - began), "
          + "\(s.hits) hits, \(s.frameChecks) frame checks, "
          + "\(s.staleHits) stale, invalidations \(s.invalidations)")
      #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(3) })")
      #expect(s.staleHits == 0)
      #expect(s.frameChecks > 0, "frame check not armed: not root?")
      #expect((s.invalidations[.unmap] ?? 0) > 0)
      lab.cache.close()
      unmap(base, buffers * page)
    }
  }

  /// Two caches on two protection domains (two device contexts) over the
  /// same buffers: the process's one monitor watches for both (a monitor
  /// per cache would get EBUSY for the second and cache nothing), both
  /// cache the buffer, and both drop it when it is unmapped and mapped
  /// again; a peer on each reads the new data.
  @Test func twoCachesOnTwoDomainsOverTheSameBuffers() throws {
    try expectNoLeaks("two caches") {
      let labs = [try Lab(), try Lab()]
      #expect(labs[0].cache.subscription?.monitor === labs[1].cache.subscription?.monitor)
      let length = 64 << 10
      let address = mapAnonymous(length)
      Self.fill(address, length, with: 0x31)
      for lab in labs {
        Self.expectMonitor(lab.cache)
        let handle = try lab.cache.lookup(address: address, length: length, access: Self.readable)
        #expect(handle.isCached)
        #expect(
          try lab.peerReads(handle, address: address, count: 4096)
            == Array(repeating: 0x31, count: 4096))
        handle.release()
        #expect(try lab.cache.lookup(address: address, length: 4096).isCached)
      }
      unmap(address, length)
      #expect(mapAnonymous(length, at: address) == address)
      Self.fill(address, length, with: 0x32)
      for lab in labs {
        let handle = try lab.cache.lookup(address: address, length: length, access: Self.readable)
        #expect(
          try lab.peerReads(handle, address: address + 4096, count: 4096)
            == Array(repeating: 0x32, count: 4096))
        handle.release()
        let s = lab.cache.statistics
        #expect(s.uncachedRegistrations == 0 && s.misses == 2 && s.hits == 1, "\(s)")
        #expect(s.invalidations[.unmap] ?? 0 >= 1)
      }
      for lab in labs { lab.cache.close() }
      unmap(address, length)
    }
  }

  /// The README's tour: two WRITEs from one malloc'd buffer, one miss
  /// and one hit, and the data lands.
  @Test func readmeTourWritesThroughTheCache() throws {
    try expectNoLeaks("README tour") {
      let lab = try Lab()
      let cache = makeCache(lab.pd)
      let target = try lab.pd.register(
        SharedBuffer(byteCount: 8192), access: [.localWrite, .remoteWrite])
      let source = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
      source.initializeMemory(as: UInt8.self, repeating: 0xcd)
      for _ in 0..<2 {
        try writeThroughTheCache(
          cache, lab.a, lab.cq, UnsafeRawBufferPointer(source), to: target.remote)
      }
      #expect(try target.memory!.load(0..<4096) == Array(repeating: 0xcd, count: 4096))
      let s = cache.statistics
      #expect(s.hits == 1 && s.misses == 1, "\(s)")
      cache.close()
      lab.cache.close()
      source.deallocate()
    }
  }

  /// Miss cost against a plain registration, and the hit cost, on rxe.
  @Test func missCostAgainstPlainRegistration() throws {
    let lab = try Lab(limits: CacheLimits(maxEntries: 100_000))
    let count = 200
    let address = mapAnonymous(count * 16 * page)
    var plain = Duration.zero
    var cached = Duration.zero
    for i in 0..<count {
      let start = address + UInt64(i * 16 * page)
      let memory = UnsafeMutableRawBufferPointer(
        start: UnsafeMutableRawPointer(bitPattern: UInt(start)), count: 16 * page)
      var t = ContinuousClock.now
      let region = try lab.pd.unsafeRegister(memory, access: Self.readable)
      plain += ContinuousClock.now - t
      try region.close()
      t = ContinuousClock.now
      try lab.cache.lookup(address: start, length: 16 * page, access: Self.readable).release()
      cached += ContinuousClock.now - t
    }
    let ratio = seconds(cached) / seconds(plain)
    print(
      "miss vs plain registration (64 KiB, \(count) each): cached miss \(cached / count), "
        + "plain \(plain / count), ratio \(ratio)")
    lab.cache.close()
    unmap(address, count * 16 * page)
  }
}

func seconds(_ duration: Duration) -> Double {
  Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}
