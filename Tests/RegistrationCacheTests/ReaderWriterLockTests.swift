import CThreadSlots
import Foundation
import Synchronization
import TestSupport
import Testing

@testable import RegistrationCache

/// The cache's read lock: readers on owned slots (plain stores and
/// membarrier) and on hashed stripes (more threads than slots) never run
/// beside a writer, and every read section is counted.
@Suite struct ReaderWriterLockTests {
  final class Shared: @unchecked Sendable {
    // @unchecked: `value` is written only under the write lock and read
    // under the read lock; a torn or reordered access is what the test
    // looks for.
    var value = (0, 0)
    let readersInside = Atomic<Int>(0)
    let violations = Atomic<Int>(0)
  }

  /// `threads` readers (all alive at once, so beyond 64 some use hashed
  /// stripes) and one writer that keeps a pair of words equal; a reader
  /// that sees them differ, or a writer that finds a reader inside, is a
  /// violation.
  func exclusion(threads: Int, readsEach: Int) {
    let lock = ReaderWriterLock()
    let shared = Shared()
    let stop = Atomic<Bool>(false)
    let writerDone = Atomic<Bool>(false)
    Thread.detachNewThread {
      var n = 0
      while !stop.load(ordering: .relaxed) {
        lock.withWriteLock {
          if shared.readersInside.load(ordering: .relaxed) != 0 {
            shared.violations.add(1, ordering: .relaxed)
          }
          n += 1
          shared.value.0 = n
          shared.value.1 = n
        }
      }
      writerDone.store(true, ordering: .releasing)
    }
    let ready = Atomic<Int>(0)
    runOnThreads(threads) { _ in
      // Every thread claims before any leaves, so slots run out.
      _ = lock.withReadLock { 0 }
      ready.add(1, ordering: .relaxed)
      while ready.load(ordering: .relaxed) < threads { sched_yield() }
      for _ in 0..<readsEach {
        lock.withReadLock {
          shared.readersInside.add(1, ordering: .relaxed)
          let (a, b) = shared.value
          if a != b { shared.violations.add(1, ordering: .relaxed) }
          shared.readersInside.subtract(1, ordering: .relaxed)
        }
      }
    }
    stop.store(true, ordering: .relaxed)
    while !writerDone.load(ordering: .acquiring) { usleep(100) }
    #expect(shared.violations.load(ordering: .relaxed) == 0)
    #expect(lock.readSections == threads * (readsEach + 1))
  }

  @Test func ownedSlotsExcludeTheWriter() { exclusion(threads: 4, readsEach: 20_000) }

  @Test func moreThreadsThanSlotsShareHashedStripes() { exclusion(threads: 72, readsEach: 500) }

  /// A thread's slot goes back when it exits: after 72 threads came and
  /// went, a new thread still gets one.
  @Test func slotsAreGivenBackWhenThreadsExit() {
    exclusion(threads: 72, readsEach: 1)
    var owned = false
    for _ in 0..<200 where !owned {
      let got = Atomic<Int32>(0)
      runOnThreads(1) { _ in got.store(CTS_claim(), ordering: .relaxed) }
      owned = got.load(ordering: .relaxed) > 0
      if !owned { usleep(10_000) }
    }
    #expect(owned)
  }
}
