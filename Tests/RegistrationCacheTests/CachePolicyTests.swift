import Foundation
import MetricsTestKit
import Synchronization
import TestSupport
import Testing
import Verbs

@testable import RegistrationCache

/// The cache's rules on the host, with registration replaced by a counter:
/// page alignment, hits, the merge policy, access upgrades, adjacent
/// ranges, LRU eviction, the ENOMEM retry, explicit invalidation, handles
/// outliving invalidation, statistics and metrics, and many threads.
@Suite struct CachePolicyTests {
  @Test func missRegistersWholePagesAndHitsReuse() throws {
    let (cache, counting) = countingCache()
    let a = try cache.lookup(address: 0x10_0010, length: 100)
    #expect(a.address == 0x10_0000 && a.length == page)
    #expect(counting.count == 1)
    let b = try cache.lookup(address: 0x10_0800, length: 2048)
    #expect(b.lkey == a.lkey && counting.count == 1)
    let sge = try b.scatterGather(address: 0x10_0800, count: 2048)
    #expect(sge.address == 0x10_0800 && sge.length == 2048 && sge.lkey == a.lkey)
    #expect(throws: VerbsError.self) { try b.scatterGather(address: 0x10_0f00, count: 512) }
    let s = cache.statistics
    #expect(s.lookups == 2 && s.hits == 1 && s.misses == 1 && s.registrations == 1)
    #expect(s.entries == 1 && s.cachedBytes == page && s.registrationsAvoided == 1)
  }

  /// Handles do not retain their entry: one held when its cache goes away
  /// (without close()) must stay readable and release cleanly, and the
  /// cache's idle entries are deregistered.
  @Test func aHandleOutlivesItsCache() throws {
    let counting = CountingRegistrar()
    var cache: RegistrationCache? = RegistrationCache(
      registrar: counting.registrar, limits: CacheLimits(), monitor: .explicitOnly)
    weak let gone = cache
    let held = try cache!.lookup(address: 0x20_0000, length: page)
    try cache!.lookup(address: 0x30_0000, length: page).release()
    let counters = cache!.counters
    cache = nil
    #expect(gone == nil)
    #expect(counters.liveRegistrations.load(ordering: .relaxed) == 1)
    #expect(held.lkey == 1 && held.address == 0x20_0000 && !held.isCached)
    held.release()
    #expect(counters.liveRegistrations.load(ordering: .relaxed) == 0)
    #expect(counters.deregistrations.load(ordering: .relaxed) == 2)
  }

  @Test func emptyAndWrappingRangesAreErrors() {
    let (cache, counting) = countingCache()
    expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      _ = try cache.lookup(address: 0x1000, length: 0)
    }
    expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      _ = try cache.lookup(address: UInt64.max - 10, length: 100)
    }
    #expect(counting.count == 0)
  }

  @Test func partialOverlapsMergeIntoTheUnion() throws {
    let (cache, counting) = countingCache()
    let middle = try cache.lookup(address: 0x20_0000, length: 4 * page)
    middle.release()
    // Overlapping on the left: one registration of the union.
    let left = try cache.lookup(address: 0x20_0000 - 2 * UInt64(page), length: 3 * page)
    #expect(left.address == 0x1f_e000 && left.length == 6 * page)
    // Overlapping on the right while `left` is held: the union again; the
    // held one stays registered for its holder.
    let right = try cache.lookup(address: 0x20_3000, length: 4 * page)
    #expect(right.address == 0x1f_e000 && right.length == 9 * page)
    #expect(!left.isCached && right.isCached)
    #expect(counting.count == 3)
    #expect(cache.cachedRangesForTesting().count == 1)
    let s = cache.statistics
    #expect(s.mergedRegistrations == 2 && s.invalidations[.overlap] == 2)
    #expect(s.liveRegistrations == 2)  // `left` still held
    left.release()
    #expect(cache.statistics.liveRegistrations == 1)
  }

  @Test func adjacentRangesStaySeparate() throws {
    let (cache, counting) = countingCache()
    _ = try cache.lookup(address: 0x30_0000, length: page)
    _ = try cache.lookup(address: 0x30_1000, length: page)
    _ = try cache.lookup(address: 0x2f_f000, length: page)
    #expect(counting.count == 3)
    #expect(cache.cachedRangesForTesting().map(\.start) == [0x2f_f000, 0x30_0000, 0x30_1000])
    // A lookup spanning two adjacent entries is covered by neither: merged.
    let both = try cache.lookup(address: 0x30_0800, length: page)
    #expect(both.address == 0x30_0000 && both.length == 2 * page)
    #expect(cache.cachedRangesForTesting().map(\.start) == [0x2f_f000, 0x30_0000])
  }

  @Test func accessUpgradeRegistersTheUnionOfFlags() throws {
    let (cache, counting) = countingCache()
    let readOnly = try cache.lookup(address: 0x40_0000, length: page, access: [.remoteRead])
    let writable = try cache.lookup(
      address: 0x40_0000, length: page, access: [.localWrite, .remoteWrite])
    #expect(counting.count == 2)
    #expect(writable.access == [.localWrite, .remoteWrite, .remoteRead])
    #expect(!readOnly.isCached)
    // Both kinds now hit.
    _ = try cache.lookup(address: 0x40_0000, length: page, access: [.remoteRead])
    _ = try cache.lookup(address: 0x40_0000, length: page, access: [.localWrite])
    #expect(counting.count == 2)
  }

  @Test func leastRecentlyUsedIdleEntriesGoFirstAndHeldOnesNever() throws {
    let (cache, counting) = countingCache(limits: CacheLimits(maxEntries: 3))
    let held = try cache.lookup(address: 0x50_0000, length: page)  // oldest, but held
    for i in 1...2 {
      try cache.lookup(address: 0x50_0000 + UInt64(i * 0x10000), length: page).release()
    }
    // Touch entry 1 so entry 2 is the least recently used idle one.
    try cache.lookup(address: 0x51_0000, length: page).release()
    try cache.lookup(address: 0x60_0000, length: page).release()
    let starts = cache.cachedRangesForTesting().map(\.start)
    #expect(starts == [0x50_0000, 0x51_0000, 0x60_0000])
    #expect(cache.statistics.evictions == 1)
    #expect(held.isCached)
    // All held: the cache grows past its bound rather than evict in-use entries.
    let more = try (0..<3).map {
      try cache.lookup(address: 0x70_0000 + UInt64($0 * 0x10000), length: page)
    }
    #expect(held.isCached && more.allSatisfy(\.isCached))
    #expect(counting.count == 7)
  }

  @Test func byteBoundEvicts() throws {
    let (cache, _) = countingCache(limits: CacheLimits(maxBytes: 8 * page))
    for i in 0..<4 {
      try cache.lookup(address: 0x80_0000 + UInt64(i) * 0x10_0000, length: 4 * page).release()
    }
    let s = cache.statistics
    #expect(s.cachedBytes <= 8 * page && s.entries == 2 && s.evictions == 2)
  }

  @Test func noMemoryEvictsIdleEntriesAndRetriesOnce() throws {
    let (cache, counting) = countingCache()
    try cache.lookup(address: 0x90_0000, length: page).release()
    try cache.lookup(address: 0x91_0000, length: page).release()
    counting.failuresLeft.store(1, ordering: .relaxed)
    let handle = try cache.lookup(address: 0x92_0000, length: page)
    #expect(handle.isCached)
    var s = cache.statistics
    #expect(s.retriesAfterNoMemory == 1 && s.evictions == 2 && s.entries == 1)
    // Twice in a row: the typed error comes back.
    counting.failuresLeft.store(2, ordering: .relaxed)
    handle.release()
    expectVerbsError(.memoryLockLimit, operation: "ibv_reg_mr", errno: ENOMEM) {
      _ = try cache.lookup(address: 0x93_0000, length: page)
    }
    s = cache.statistics
    #expect(s.registrationFailures == 1)
  }

  /// A registration that fails leaves no entry (nothing may hit a range
  /// that was never registered) and the counts as they were, but for the
  /// failure and the miss.
  @Test func aFailedRegistrationLeavesNothingBehind() throws {
    let counting = CountingRegistrar(failure: .notMapped)
    let cache = RegistrationCache(
      registrar: counting.registrar, limits: CacheLimits(), monitor: .explicitOnly)
    try cache.lookup(address: 0x98_0000, length: page).release()
    let before = cache.statistics
    counting.failuresLeft.store(1, ordering: .relaxed)
    expectVerbsError(.notMapped, operation: "ibv_reg_mr", errno: ENOMEM) {
      _ = try cache.lookup(address: 0x99_0000, length: 2 * page)
    }
    let after = cache.statistics
    #expect(after.registrationFailures == before.registrationFailures + 1)
    #expect(after.registrations == before.registrations && after.misses == before.misses + 1)
    #expect(after.entries == before.entries && after.cachedBytes == before.cachedBytes)
    #expect(after.liveRegistrations == before.liveRegistrations)
    #expect(after.liveBytes == before.liveBytes)
    #expect(cache.cachedRangesForTesting().map(\.start) == [0x98_0000])
    // The same range again registers (no leftover entry answers it).
    let handle = try cache.lookup(address: 0x99_0000, length: 2 * page)
    #expect(counting.count == 2 && handle.lkey == 2 && handle.isCached)
    #expect(cache.statistics.misses == before.misses + 2)
  }

  /// When the union of overlapping entries fails to register for a reason
  /// other than memory, the miss registers what was asked for instead; the
  /// union's attempt leaves no entry and no merge in the counts.
  @Test func aFailedUnionFallsBackToTheRangeAskedFor() throws {
    let counting = CountingRegistrar(failure: .notMapped)
    let cache = RegistrationCache(
      registrar: counting.registrar, limits: CacheLimits(), monitor: .explicitOnly)
    try cache.lookup(address: 0x9a_0000, length: 2 * page).release()
    counting.failuresLeft.store(1, ordering: .relaxed)
    let handle = try cache.lookup(address: 0x9a_1000, length: 2 * page)
    #expect(handle.address == 0x9a_1000 && handle.length == 2 * page && handle.isCached)
    #expect(cache.cachedRangesForTesting().map(\.start) == [0x9a_1000])
    let s = cache.statistics
    #expect(s.mergedRegistrations == 0 && s.registrations == 2 && s.registrationFailures == 0)
    #expect(s.entries == 1 && s.cachedBytes == 2 * page)
    #expect(s.invalidations[.overlap] == 1 && s.liveRegistrations == 1)
  }

  @Test func invalidationKeepsHeldRegistrationsUntilReleased() throws {
    let (cache, counting) = countingCache()
    let held = try cache.lookup(address: 0xa0_0000, length: 2 * page)
    cache.invalidate(address: 0xa0_1000, length: 1)
    #expect(!held.isCached)
    var s = cache.statistics
    #expect(s.invalidations[.explicit] == 1 && s.entries == 0)
    #expect(s.liveRegistrations == 1 && s.deregistrations == 0)
    let again = try cache.lookup(address: 0xa0_0000, length: 2 * page)
    #expect(again.lkey != held.lkey && counting.count == 2)
    held.release()
    held.release()  // harmless
    s = cache.statistics
    #expect(s.deregistrations == 1 && s.liveRegistrations == 1)
  }

  @Test func statisticsReachSwiftMetrics() throws {
    let (cache, _) = countingCache()
    let metrics = TestMetrics()
    let reporter = CacheMetricsReporter(cache, factory: metrics, dimensions: [("device", "test")])
    try cache.lookup(address: 0xb0_0000, length: page).release()
    try cache.lookup(address: 0xb0_0000, length: page).release()
    cache.invalidate(address: 0xb0_0000, length: page)
    reporter.report()
    reporter.report()  // nothing new: no double counting
    let dims = [("device", "test")]
    #expect(try metrics.expectCounter("rdma_registration_cache_lookups", dims).totalValue == 2)
    #expect(try metrics.expectCounter("rdma_registration_cache_hits", dims).totalValue == 1)
    #expect(try metrics.expectCounter("rdma_registration_cache_misses", dims).totalValue == 1)
    #expect(
      try metrics.expectCounter(
        "rdma_registration_cache_invalidations", dims + [("cause", "explicit")]
      ).totalValue == 1)
    #expect(try metrics.expectGauge("rdma_registration_cache_entries", dims).lastValue == 0)
    #expect(
      try metrics.expectGauge("rdma_registration_cache_monitor_automatic", dims).lastValue == 0)
  }

  final class Counter: Sendable {
    let value = Atomic<Int>(0)
  }

  /// 8 threads look up 1,000 ranges while a ninth invalidates them at
  /// random. Each registration records how many invalidations of its range
  /// had begun; a lookup that starts after `n` invalidations finished must
  /// get a registration that recorded at least `n`.
  @Test func eightThreadsWithConcurrentInvalidations() throws {
    let counting = CountingRegistrar()
    let ranges = 1000
    let base: UInt64 = 0x1000_0000
    let started = (0..<ranges).map { _ in Counter() }
    let finished = (0..<ranges).map { _ in Counter() }
    let keyGeneration = Mutex<[UInt32: Int]>([:])
    let recording = Registrar { start, length, access throws(VerbsError) in
      let registered = try counting.registrar.register(start, length, access)
      let r = Int((start - base) / UInt64(page))
      let begun = started[r].value.load(ordering: .sequentiallyConsistent)
      keyGeneration.withLock { $0[registered.lkey] = begun }
      return registered
    }
    let cache = RegistrationCache(
      registrar: recording, limits: CacheLimits(maxEntries: 2000), monitor: .explicitOnly)
    let invalidator = RepeatingThread { rng in
      let r = Int.random(in: 0..<ranges, using: &rng)
      started[r].value.add(1, ordering: .sequentiallyConsistent)
      cache.invalidate(address: base + UInt64(r * page), length: page)
      finished[r].value.add(1, ordering: .sequentiallyConsistent)
    }
    let stale = Atomic<Int>(0)
    let failures = Mutex<[String]>([])
    runOnThreads(8) { _ in
      var rng = SystemRandomNumberGenerator()
      for _ in 0..<20_000 {
        let r = Int.random(in: 0..<ranges, using: &rng)
        let done = finished[r].value.load(ordering: .sequentiallyConsistent)
        do {
          let handle = try cache.lookup(address: base + UInt64(r * page), length: page)
          let recorded = keyGeneration.withLock { $0[handle.lkey] } ?? -1
          if recorded < done { stale.add(1, ordering: .relaxed) }
          handle.release()
        } catch {
          failures.withLock { $0.append("\(error)") }
        }
      }
    }
    invalidator.stop()
    #expect(failures.withLock { $0 } == [])
    #expect(stale.load(ordering: .relaxed) == 0)
    let s = cache.statistics
    #expect(s.lookups == 160_000 && s.hits + s.misses == s.lookups)
    #expect(s.hits > 0 && (s.invalidations[.explicit] ?? 0) > 0)
    #expect(s.liveRegistrations == s.entries)
  }
}
