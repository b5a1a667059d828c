import Synchronization
import Verbs

extension RegistrationCache {
  /// A cache whose registrations are a counter: no device, no pinning. For
  /// timing the index, lock and handles alone (`umem cache-bench
  /// --registrar counter`); its handles carry made-up keys.
  package static func countingForBenchmarks(limits: CacheLimits, monitor: MonitorChoice)
    -> RegistrationCache
  {
    let counter = KeyCounter()
    let registrar = Registrar { start, _, _ throws(VerbsError) in
      let key = counter.next.add(1, ordering: .relaxed).newValue
      return RegisteredMemory(lkey: key, rkey: key, iova: start, region: nil)
    }
    return RegistrationCache(registrar: registrar, limits: limits, monitor: monitor)
  }
}

private final class KeyCounter: Sendable {
  let next = Atomic<UInt32>(0)
}
