import Synchronization
import Testing
import Verbs

@testable import RegistrationCache

#if canImport(Glibc)
  import Glibc
#endif

/// The benchmarks' timing registrar (`Registrar.timed(into:)`, what `umem
/// cache-bench --split-miss` splits a miss with): it counts every call,
/// adds the time spent inside each, and passes results, errors and the
/// deregistration callback through unchanged.
@Suite struct TimedRegistrarTests {
  @Test func addsTheTimeInsideEachCallAndPassesTheResultThrough() throws {
    let counting = CountingRegistrar()
    let inner = counting.registrar
    let slow = Registrar { start, length, access throws(VerbsError) in
      usleep(2_000)
      return try inner.register(start, length, access)
    }
    let timer = RegistrationTimer()
    let timed = slow.timed(into: timer)
    let first = try timed.register(0x1000, page, .localWrite)
    #expect(first.iova == 0x1000 && first.lkey == 1)
    #expect(timer.count.load(ordering: .relaxed) == 1)
    #expect(timer.nanoseconds.load(ordering: .relaxed) >= 2_000_000)
    _ = try timed.register(0x2000, page, .localWrite)
    #expect(timer.count.load(ordering: .relaxed) == 2)
    #expect(timer.nanoseconds.load(ordering: .relaxed) >= 4_000_000)
    #expect(counting.count == 2)
  }

  @Test func countsAFailedCallAndRethrowsItsError() {
    let counting = CountingRegistrar(failure: .memoryLockLimit)
    counting.failuresLeft.store(1, ordering: .relaxed)
    let timer = RegistrationTimer()
    let timed = counting.registrar.timed(into: timer)
    #expect {
      _ = try timed.register(0x1000, page, .localWrite)
    } throws: { error in
      (error as? VerbsError)?.code == .memoryLockLimit
    }
    #expect(timer.count.load(ordering: .relaxed) == 1)
    #expect(counting.count == 0)
  }

  @Test func keepsTheDeregistrationCallback() {
    let ended = Atomic<Int>(0)
    let plain = Registrar(
      register: { start, _, _ throws(VerbsError) in
        RegisteredMemory(lkey: 7, rkey: 7, iova: start, region: nil)
      },
      deregistered: { _ in ended.add(1, ordering: .relaxed) })
    let timed = plain.timed(into: RegistrationTimer())
    timed.deregistered?(RegisteredMemory(lkey: 7, rkey: 7, iova: 0, region: nil))
    #expect(ended.load(ordering: .relaxed) == 1)
  }

  @Test func aCacheOverItTimesItsMissesAndNotItsHits() throws {
    let counting = CountingRegistrar()
    let timer = RegistrationTimer()
    let cache = RegistrationCache(
      registrar: counting.registrar.timed(into: timer), limits: CacheLimits(),
      monitor: .explicitOnly)
    try cache.lookup(address: 0x10_0000, length: 100).release()
    try cache.lookup(address: 0x10_0040, length: 100).release()
    try cache.lookup(address: 0x20_0000, length: 100).release()
    #expect(timer.count.load(ordering: .relaxed) == 2)
    #expect(counting.count == 2)
    cache.close()
  }
}
