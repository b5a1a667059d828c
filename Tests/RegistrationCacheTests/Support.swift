import Foundation
import Synchronization
import Verbs

@testable import RegistrationCache

#if canImport(Glibc)
  import Glibc
#endif

/// A registrar that registers nothing: it counts, and gives each
/// registration a distinct key, so the cache's index, LRU and policies run
/// on the host. `failures` makes the next calls throw (ENOMEM by default).
final class CountingRegistrar: Sendable {
  let calls = Atomic<Int>(0)
  let failuresLeft = Atomic<Int>(0)
  let failure: VerbsError.Code
  let log = Mutex<[(start: UInt64, length: Int, access: MemoryAccess)]>([])

  init(failure: VerbsError.Code = .memoryLockLimit) { self.failure = failure }

  var registrar: Registrar {
    Registrar { start, length, access throws(VerbsError) in
      if self.failuresLeft.load(ordering: .relaxed) > 0 {
        self.failuresLeft.subtract(1, ordering: .relaxed)
        throw VerbsError(
          self.failure, operation: "ibv_reg_mr", errno: ENOMEM, message: "test double refused")
      }
      let n = self.calls.add(1, ordering: .relaxed).newValue
      self.log.withLock { $0.append((start, length, access)) }
      return RegisteredMemory(lkey: UInt32(n), rkey: UInt32(n), iova: start, region: nil)
    }
  }

  var count: Int { calls.load(ordering: .relaxed) }
}

/// A cache over a ``CountingRegistrar``.
func countingCache(
  limits: CacheLimits = CacheLimits(), monitor: MonitorChoice = .explicitOnly
) -> (RegistrationCache, CountingRegistrar) {
  let counting = CountingRegistrar()
  return (
    RegistrationCache(registrar: counting.registrar, limits: limits, monitor: monitor), counting
  )
}

let page = 4096

/// Anonymous read-write memory, touched so every page is present.
func mapAnonymous(_ length: Int, at address: UInt64? = nil) -> UInt64 {
  let hint = address.flatMap { UnsafeMutableRawPointer(bitPattern: UInt($0)) }
  let flags = MAP_PRIVATE | MAP_ANONYMOUS | (address == nil ? 0 : MAP_FIXED)
  let raw = mmap(hint, length, PROT_READ | PROT_WRITE, flags, -1, 0)
  precondition(raw != MAP_FAILED, "mmap failed: \(errno)")
  memset(raw!, 0x5a, length)
  return UInt64(UInt(bitPattern: raw!))
}

func unmap(_ address: UInt64, _ length: Int) {
  munmap(UnsafeMutableRawPointer(bitPattern: UInt(address)), length)
}

/// GNU functions Swift's Glibc module does not import (declared only under
/// `_GNU_SOURCE`), found at run time.
enum GNU {
  static let mayMove: Int32 = 1  // MREMAP_MAYMOVE

  /// `mremap(old, oldSize, newSize, flags)`; variadic in C, but the fifth
  /// argument is read only with MREMAP_FIXED, which the tests do not use.
  static let mremap = unsafeBitCast(
    dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mremap")!,
    to: (@convention(c) (UnsafeMutableRawPointer?, Int, Int, Int32) -> UnsafeMutableRawPointer?)
      .self)

  /// `malloc_trim(pad)`.
  static let mallocTrim = unsafeBitCast(
    dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim")!,
    to: (@convention(c) (Int) -> Int32).self)
}

/// Runs `step` over and over on a thread of its own (an invalidator beside
/// the threads under test) until ``stop()``, which returns once the thread
/// has finished its last step.
final class RepeatingThread: Sendable {
  private let stopping = Atomic<Bool>(false)
  private let done = Atomic<Bool>(false)

  init(_ step: @escaping @Sendable (inout SystemRandomNumberGenerator) -> Void) {
    Thread.detachNewThread { [self] in
      var rng = SystemRandomNumberGenerator()
      while !stopping.load(ordering: .relaxed) { step(&rng) }
      done.store(true, ordering: .releasing)
    }
  }

  func stop() {
    stopping.store(true, ordering: .relaxed)
    while !done.load(ordering: .acquiring) { usleep(1000) }
  }
}
