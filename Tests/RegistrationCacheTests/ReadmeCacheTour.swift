import RegistrationCache
import Verbs

// The README's registration-cache tour, compiled here and run on rxe by
// RegistrationCacheOnDevice.readmeTourWritesThroughTheCache;
// ci/lib/check-readme.sh checks the two stay identical.
// README-BEGIN
/// One cache per protection domain, for the life of the program; it starts
/// a userfaultfd monitor where the kernel allows one.
func makeCache(_ pd: SharedProtectionDomain) -> RegistrationCache {
  RegistrationCache(domain: pd, limits: CacheLimits(maxEntries: 1024, maxBytes: 1 << 30))
}

/// Write any buffer to a peer without registering it by hand: the first
/// write registers its pages, later ones reuse the registration, and the
/// monitor drops it if the memory is unmapped, moved or discarded.
func writeThroughTheCache(
  _ cache: RegistrationCache, _ qp: SharedQueuePair, _ cq: SharedCompletionQueue,
  _ bytes: UnsafeRawBufferPointer, to peer: RemoteBuffer
) throws {
  let address = UInt64(UInt(bitPattern: bytes.baseAddress))
  let handle = try cache.lookup(address: address, length: bytes.count, access: .localWrite)
  defer { handle.release() }  // after the completion: its keys stay valid until then
  try qp.postSend(
    .write(to: peer), handle.scatterGather(address: address, count: bytes.count), id: 1)
  try cq.wait(for: 1)[0].checkSuccess()
  print(cache.statistics.hits, cache.statistics.monitor)  // e.g. "1 userfaultfd"
}
// README-END
