import Foundation
import Synchronization
import TestSupport
import Testing
import Verbs

@testable import RegistrationCache

/// The biased hold counts (``CacheEntry``): holds taken on one thread and
/// given back on another, by an entry's owner thread and by others, while
/// entries are invalidated. A registration is never deregistered while a
/// hold on it is out, and always once the last hold is back.
@Suite struct HoldCountTests {
  /// Which registrations (by key) are live, as the registrar sees them.
  final class Ledger: Sendable {
    let live = Mutex<Set<UInt32>>([])
    let next = Atomic<UInt32>(0)
    let deregisteredTwice = Atomic<Int>(0)

    var registrar: Registrar {
      Registrar(
        register: { start, _, _ throws(VerbsError) in
          let key = self.next.add(1, ordering: .relaxed).newValue
          self.live.withLock { _ = $0.insert(key) }
          return RegisteredMemory(lkey: key, rkey: key, iova: start, region: nil)
        },
        deregistered: { registered in
          if self.live.withLock({ $0.remove(registered.lkey) }) == nil {
            self.deregisteredTwice.add(1, ordering: .relaxed)
          }
        })
    }

    func isLive(_ key: UInt32) -> Bool { live.withLock { $0.contains(key) } }
  }

  /// A box for moving a handle between threads.
  final class Mailbox: Sendable {
    let handles = Mutex<[CachedRegistration]>([])
  }

  /// The owner (the first thread to hit) takes a lease; the entry is
  /// invalidated; another thread gives the hold back: deregistered then,
  /// once. And the reverse: another thread's hold, the owner's release.
  @Test func holdsGivenBackOnAnotherThread() throws {
    let ledger = Ledger()
    let cache = RegistrationCache(
      registrar: ledger.registrar, limits: CacheLimits(), monitor: .explicitOnly)
    try cache.lookup(address: 0x40_0000, length: page).release()  // the miss
    let mailbox = Mailbox()
    runOnThreads(1) { _ in
      // This thread's hit claims the entry.
      mailbox.handles.withLock { $0.append(try! cache.lookup(address: 0x40_0000, length: page)) }
    }
    let handle = mailbox.handles.withLock { $0.removeFirst() }
    cache.invalidate(address: 0x40_0000, length: page)
    #expect(ledger.isLive(handle.lkey))
    handle.release()  // here, not on the owner thread
    #expect(!ledger.isLive(handle.lkey))
    // This thread hits first now (it owns the new entry); a hold taken
    // elsewhere is given back here after the invalidation.
    try cache.lookup(address: 0x40_0000, length: page).release()
    try cache.lookup(address: 0x40_0000, length: page).release()
    runOnThreads(1) { _ in
      mailbox.handles.withLock { $0.append(try! cache.lookup(address: 0x40_0000, length: page)) }
    }
    let other = mailbox.handles.withLock { $0.removeFirst() }
    let mine = try cache.lookup(address: 0x40_0000, length: page)
    cache.invalidate(address: 0x40_0000, length: page)
    mine.release()
    #expect(ledger.isLive(other.lkey))
    other.release()
    #expect(!ledger.isLive(other.lkey))
    #expect(ledger.deregisteredTwice.load(ordering: .relaxed) == 0)
    #expect(cache.statistics.liveRegistrations == 0)
  }

  /// 6 threads take holds on 64 ranges, keep some and pass some to the
  /// next thread to give back, checking each registration is live when
  /// they use it; a seventh thread invalidates at random.
  @Test func neverDeregisteredWhileHeld() throws {
    let ledger = Ledger()
    let cache = RegistrationCache(
      registrar: ledger.registrar, limits: CacheLimits(), monitor: .explicitOnly)
    let base: UInt64 = 0x6000_0000
    let ranges = 64
    let threads = 6
    let mailboxes = (0..<threads).map { _ in Mailbox() }
    let dead = Atomic<Int>(0)
    let invalidator = RepeatingThread { rng in
      let r = Int.random(in: 0..<ranges, using: &rng)
      cache.invalidate(address: base + UInt64(r * page), length: page)
      usleep(UInt32.random(in: 0..<50, using: &rng))
    }
    runOnThreads(threads) { t in
      var rng = SystemRandomNumberGenerator()
      for step in 0..<20_000 {
        let address = base + UInt64(Int.random(in: 0..<ranges, using: &rng) * page)
        do {
          switch step % 3 {
          case 0:
            let lease = try cache.lease(address: address, length: page)
            let key = lease.lkey
            if !ledger.isLive(key) { dead.add(1, ordering: .relaxed) }
            lease.release()
          case 1:
            let handle = try cache.lookup(address: address, length: page)
            if !ledger.isLive(handle.lkey) { dead.add(1, ordering: .relaxed) }
            mailboxes[(t + 1) % threads].handles.withLock { $0.append(handle) }
          default:
            let passed = mailboxes[t].handles.withLock { box in
              defer { box.removeAll() }
              return box
            }
            for handle in passed {
              if !ledger.isLive(handle.lkey) { dead.add(1, ordering: .relaxed) }
              handle.release()
            }
          }
        } catch {
          dead.add(1_000_000, ordering: .relaxed)
        }
      }
    }
    for mailbox in mailboxes {
      for handle in mailbox.handles.withLock({ $0 }) {
        if !ledger.isLive(handle.lkey) { dead.add(1, ordering: .relaxed) }
        handle.release()
      }
    }
    invalidator.stop()
    #expect(dead.load(ordering: .relaxed) == 0)
    #expect(ledger.deregisteredTwice.load(ordering: .relaxed) == 0)
    let s = cache.statistics
    // Every detached entry went when its last hold did: only cached ones live.
    #expect(s.liveRegistrations == s.entries)
    #expect(ledger.live.withLock { $0.count } == s.entries)
    #expect(s.invalidations[.explicit, default: 0] > 0 && s.hits > 0)
    cache.close()
    #expect(ledger.live.withLock { $0.count } == 0)
  }
}
