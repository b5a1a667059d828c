import Testing
import Verbs

@testable import RegistrationCache

/// Leases hold what handles hold: the same entries, counts and keys.
@Suite struct RegistrationLeaseTests {
  @Test func aLeaseHitsTheEntryAHandleMadeAndGivesItBack() throws {
    let (cache, counting) = countingCache()
    let handle = try cache.lookup(address: 0x10_0010, length: 100)
    do {
      let lease = try cache.lease(address: 0x10_0800, length: 2048)
      // Values first: #expect cannot take a noncopyable operand apart.
      let (lkey, address, length) = (lease.lkey, lease.address, lease.length)
      let (cached, region) = (lease.isCached, lease.region)
      #expect(lkey == handle.lkey && address == 0x10_0000 && length == page)
      #expect(cached && region == nil)
      let sge = try lease.scatterGather(address: 0x10_0800, count: 2048)
      #expect(sge.address == 0x10_0800 && sge.length == 2048 && sge.lkey == handle.lkey)
      #expect(throws: VerbsError.self) { try lease.scatterGather(address: 0x10_0f00, count: 512) }
      let remote = try lease.remote(address: 0x10_0000, count: page)
      #expect(remote.rkey == handle.rkey && remote.length == UInt64(page))
      #expect(holders(cache, 0x10_0000) == 2)
      lease.release()
    }
    #expect(holders(cache, 0x10_0000) == 1)
    handle.release()
    #expect(holders(cache, 0x10_0000) == 0)
    let s = cache.statistics
    #expect(s.lookups == 2 && s.hits == 1 && s.misses == 1 && counting.count == 1)
  }

  @Test func aLeaseLeftInScopeIsReleased() throws {
    let (cache, _) = countingCache()
    func use() throws {
      let lease = try cache.lease(address: 0x20_0000, length: page)
      let lkey = lease.lkey
      #expect(holders(cache, 0x20_0000) == 1 && lkey == 1)
    }
    try use()
    #expect(holders(cache, 0x20_0000) == 0)
  }

  /// An invalidated entry stays registered for its lease; the lease's
  /// release deregisters it, once.
  @Test func invalidationWaitsForTheLease() throws {
    let (cache, counting) = countingCache()
    let lease = try cache.lease(address: 0xa0_0000, length: 2 * page)
    cache.invalidate(address: 0xa0_1000, length: 1)
    let cached = lease.isCached
    #expect(!cached)
    #expect(cache.statistics.liveRegistrations == 1 && cache.statistics.deregistrations == 0)
    let again = try cache.lease(address: 0xa0_0000, length: 2 * page)
    let (first, second) = (lease.lkey, again.lkey)
    #expect(second != first && counting.count == 2)
    lease.release()
    #expect(cache.statistics.deregistrations == 1 && cache.statistics.liveRegistrations == 1)
    again.release()
    #expect(cache.statistics.deregistrations == 1)
  }

  /// `shared()` hands the lease's one hold to a handle: no second count,
  /// and the handle's release is the only one.
  @Test func sharedTurnsALeaseIntoAHandleWithTheSameHold() throws {
    let (cache, _) = countingCache()
    let lease = try cache.lease(address: 0x30_0000, length: page)
    let handle = lease.shared()
    #expect(holders(cache, 0x30_0000) == 1 && handle.isCached && handle.lkey == 1)
    cache.invalidate(address: 0x30_0000, length: page)
    #expect(cache.statistics.deregistrations == 0)
    handle.release()
    #expect(holders(cache, 0x30_0000) == nil && cache.statistics.deregistrations == 1)
  }

  @Test func badRangesAreTheSameTypedErrors() {
    let (cache, _) = countingCache()
    #expect(throws: VerbsError.self) { _ = try cache.lease(address: 0x1000, length: 0) }
    #expect(throws: VerbsError.self) { _ = try cache.lease(address: UInt64.max - 10, length: 100) }
    #expect(cache.statistics.registrations == 0)
  }

  /// The cached entry's handle count, or nil when nothing covers `address`.
  private func holders(_ cache: RegistrationCache, _ address: UInt64) -> Int? {
    cache.withEntryForTesting(covering: address) { $0.holders }
  }
}
