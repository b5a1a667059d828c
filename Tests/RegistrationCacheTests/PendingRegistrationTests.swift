import Foundation
import Synchronization
import Testing
import Verbs

@testable import RegistrationCache

#if canImport(Glibc)
  import Glibc
#endif

/// A miss registers after releasing the cache's write lock: its entry waits
/// in the index as pending. These tests hold one registration inside the
/// registrar (a gate) and check what other threads see meanwhile; the last
/// checks that deregistrations, too, run with the lock released.
@Suite struct PendingRegistrationTests {
  /// A registrar that counts like ``CountingRegistrar`` but holds the
  /// first registration of `gated` until ``open(failing:)``, which can make
  /// that one fail.
  final class GatedRegistrar: Sendable {
    let gated: UInt64
    let calls = Atomic<Int>(0)
    let deregistrations = Atomic<Int>(0)
    private let gateUsed = Atomic<Bool>(false)
    private let waiting = Atomic<Bool>(false)
    private let opened = Atomic<Bool>(false)
    private let failing = Atomic<Bool>(false)

    init(gated: UInt64) { self.gated = gated }

    var registrar: Registrar {
      Registrar(
        register: { start, length, access throws(VerbsError) in
          let n = self.calls.add(1, ordering: .relaxed).newValue
          if start == self.gated,
            self.gateUsed.compareExchange(expected: false, desired: true, ordering: .relaxed)
              .exchanged
          {
            self.waiting.store(true, ordering: .releasing)
            while !self.opened.load(ordering: .acquiring) { usleep(200) }
            if self.failing.load(ordering: .relaxed) {
              throw VerbsError(
                .notMapped, operation: "ibv_reg_mr", errno: EFAULT, message: "gate said no")
            }
          }
          return RegisteredMemory(lkey: UInt32(n), rkey: UInt32(n), iova: start, region: nil)
        },
        deregistered: { _ in self.deregistrations.add(1, ordering: .relaxed) })
    }

    /// Waits (5 s at most) until the gated registration is inside.
    func waitUntilHeld() -> Bool {
      let deadline = ContinuousClock.now + .seconds(5)
      while !waiting.load(ordering: .acquiring) {
        if ContinuousClock.now > deadline { return false }
        usleep(200)
      }
      return true
    }

    func open(failing: Bool = false) {
      self.failing.store(failing, ordering: .relaxed)
      opened.store(true, ordering: .releasing)
    }
  }

  /// Runs `body` on a thread of its own; `wait` returns its result, or nil
  /// when it is not done within `seconds`.
  final class Background<T: Sendable>: Sendable {
    private let result = Mutex<T?>(nil)

    init(_ body: @escaping @Sendable () -> T) {
      Thread.detachNewThread { [self] in
        let value = body()
        result.withLock { $0 = value }
      }
    }

    func wait(seconds: Int = 10) -> T? {
      let deadline = ContinuousClock.now + .seconds(seconds)
      while ContinuousClock.now < deadline {
        if let value = result.withLock({ $0 }) { return value }
        usleep(500)
      }
      return nil
    }
  }

  /// What a background lookup ended with, as a sendable value.
  enum Outcome: Sendable, Equatable {
    case handle(lkey: UInt32, cached: Bool)
    case failed(VerbsError.Code)
  }

  /// Where a background lookup leaves its handle unreleased.
  final class Kept: Sendable {
    let handle = Mutex<CachedRegistration?>(nil)
  }

  /// Looks up a page at `address`; releases the handle, or keeps it in
  /// `keep`.
  static func lookUp(_ cache: RegistrationCache, _ address: UInt64, keep: Kept? = nil)
    -> Outcome
  {
    do {
      let handle = try cache.lookup(address: address, length: page)
      let outcome = Outcome.handle(lkey: handle.lkey, cached: handle.isCached)
      if let keep { keep.handle.withLock { $0 = handle } } else { handle.release() }
      return outcome
    } catch {
      return .failed(error.code)
    }
  }

  let gatedAddress: UInt64 = 0x7000_0000

  /// A cache (explicit invalidation) over a registrar gating `gatedAddress`.
  func gatedCache() -> (GatedRegistrar, RegistrationCache) {
    let gate = GatedRegistrar(gated: gatedAddress)
    return (
      gate,
      RegistrationCache(registrar: gate.registrar, limits: CacheLimits(), monitor: .explicitOnly)
    )
  }

  /// A lookup of the gated range, held in the registrar (checked), and a
  /// second lookup of it started after that.
  func twoLookupsOfTheGatedRange(_ gate: GatedRegistrar, _ cache: RegistrationCache)
    -> (first: Background<Outcome>, second: Background<Outcome>)
  {
    let first = Background { Self.lookUp(cache, self.gatedAddress) }
    #expect(gate.waitUntilHeld())
    return (first, Background { Self.lookUp(cache, self.gatedAddress) })
  }

  @Test func lookupsOfOtherRangesGoOnWhileOneRegisters() throws {
    let (gate, cache) = gatedCache()
    let cached: UInt64 = 0x7100_0000
    try cache.lookup(address: cached, length: page).release()
    let slow = Background { Self.lookUp(cache, self.gatedAddress) }
    #expect(gate.waitUntilHeld())
    // While that registration is held: a hit, and a miss of another range.
    let start = ContinuousClock.now
    let hit = try cache.lookup(address: cached, length: page)
    #expect(hit.lkey == 1)
    hit.release()
    try cache.lookup(address: 0x7200_0000, length: page).release()
    #expect(ContinuousClock.now - start < .seconds(2))
    #expect(cache.statistics.entries == 3)  // the pending one counts
    gate.open()
    #expect(slow.wait() == .handle(lkey: 2, cached: true))
    #expect(gate.calls.load(ordering: .relaxed) == 3)
  }

  @Test func aSecondLookupOfTheSameRangeWaitsForTheOneRegistration() throws {
    let (gate, cache) = gatedCache()
    let (first, second) = twoLookupsOfTheGatedRange(gate, cache)
    #expect(second.wait(seconds: 1) == nil)  // waiting, not registering again
    gate.open()
    #expect(first.wait() == .handle(lkey: 1, cached: true))
    #expect(second.wait() == .handle(lkey: 1, cached: true))
    #expect(gate.calls.load(ordering: .relaxed) == 1)
    let s = cache.statistics
    #expect(s.misses == 1 && s.hits == 1 && s.registrations == 1 && s.liveRegistrations == 1)
  }

  @Test func aWaiterLooksUpAgainWhenTheRegistrationFails() throws {
    let (gate, cache) = gatedCache()
    let (first, second) = twoLookupsOfTheGatedRange(gate, cache)
    #expect(second.wait(seconds: 1) == nil)
    gate.open(failing: true)
    // The first gets its error; the second registers for itself.
    #expect(first.wait() == Outcome.failed(.notMapped))
    #expect(second.wait() == .handle(lkey: 2, cached: true))
    let s = cache.statistics
    #expect(s.registrationFailures == 1 && s.registrations == 1 && s.misses == 2)
    // Two lookups, both missed: the second's search after the failure is
    // not a lookup of its own (it counted as one more, a hit, before).
    #expect(s.lookups == 2 && s.hits == 0)
    #expect(s.entries == 1 && s.cachedBytes == page && s.liveRegistrations == 1)
    #expect(cache.cachedRangesForTesting().map(\.start) == [gatedAddress])
    // The failed entry deregistered nothing.
    #expect(gate.deregistrations.load(ordering: .relaxed) == 0)
  }

  @Test func anInvalidationWhileRegisteringLeavesTheHolderAValidRegistration() throws {
    let (gate, cache) = gatedCache()
    let kept = Kept()
    let holder = Background { () -> Outcome in Self.lookUp(cache, self.gatedAddress, keep: kept) }
    #expect(gate.waitUntilHeld())
    // Does not wait for the registration.
    let start = ContinuousClock.now
    cache.invalidate(address: gatedAddress, length: page)
    #expect(ContinuousClock.now - start < .seconds(2))
    gate.open()
    #expect(holder.wait() == .handle(lkey: 1, cached: false))
    var s = cache.statistics
    #expect(s.entries == 0 && s.invalidations[.explicit] == 1 && s.liveRegistrations == 1)
    #expect(gate.deregistrations.load(ordering: .relaxed) == 0)  // still held
    // The next lookup registers afresh.
    #expect(Self.lookUp(cache, gatedAddress) == .handle(lkey: 2, cached: true))
    cache.close()
    s = cache.statistics
    #expect(s.liveRegistrations == 1)  // the holder's
    #expect(gate.deregistrations.load(ordering: .relaxed) == 1)
    kept.handle.withLock { $0?.release() }
    #expect(cache.statistics.liveRegistrations == 0)
    #expect(gate.deregistrations.load(ordering: .relaxed) == 2)
  }

  final class CacheBox: Sendable {
    let cache = Mutex<RegistrationCache?>(nil)
    let lookupsDuringDeregistration = Mutex<[Bool]>([])
  }

  /// Invalidating or evicting an idle entry deregisters it once the write
  /// lock is released: another thread's lookup made from inside the
  /// deregistration finishes (under the lock it would wait for it).
  @Test func deregistrationsRunWithTheLockReleased() throws {
    let box = CacheBox()
    let other: UInt64 = 0x7300_0000
    let counting = CountingRegistrar()
    let registrar = Registrar(
      register: counting.registrar.register,
      deregistered: { _ in
        guard let cache = box.cache.withLock({ $0 }) else { return }
        let done = Background { () -> Bool in
          (try? cache.lookup(address: other, length: page).release()) != nil
        }
        let finished = done.wait(seconds: 3) ?? false
        box.lookupsDuringDeregistration.withLock { $0.append(finished) }
      })
    let cache = RegistrationCache(
      registrar: registrar, limits: CacheLimits(maxEntries: 2), monitor: .explicitOnly)
    box.cache.withLock { $0 = cache }
    try cache.lookup(address: other, length: page).release()
    try cache.lookup(address: gatedAddress, length: page).release()
    cache.invalidate(address: gatedAddress, length: page)  // one deregistration
    try cache.lookup(address: gatedAddress, length: page).release()
    try cache.lookup(address: other, length: page).release()  // `other` is now newest
    try cache.lookup(address: 0x7400_0000, length: page).release()  // evicts gatedAddress
    box.cache.withLock { $0 = nil }
    #expect(box.lookupsDuringDeregistration.withLock { $0 } == [true, true])
    let s = cache.statistics
    #expect(s.evictions == 1 && s.invalidations[.explicit] == 1 && s.deregistrations == 2)
  }

  @Test func closingWhileRegisteringDeregistersWhenTheHolderReleases() throws {
    let (gate, cache) = gatedCache()
    let holder = Background { () -> Outcome in Self.lookUp(cache, self.gatedAddress) }
    #expect(gate.waitUntilHeld())
    cache.close()
    gate.open()
    #expect(holder.wait() == .handle(lkey: 1, cached: false))
    let s = cache.statistics
    #expect(s.entries == 0 && s.liveRegistrations == 0 && s.deregistrations == 1)
    #expect(gate.deregistrations.load(ordering: .relaxed) == 1)
  }
}
