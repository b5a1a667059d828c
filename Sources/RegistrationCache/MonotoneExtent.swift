/// How far a range can grow on one side when growing it is all-or-nothing
/// beyond some point: `accepts(k)` (grow by k pages) is true up to an
/// unknown largest k and false after it, as `msync(MS_ASYNC)` over mapped pages
/// and `UFFDIO_REGISTER` over watchable ones are. Used by the cache to
/// find the stretch around a miss that can be watched as one.
///
/// Tries one page first, then bisects: a side whose next page is refused
/// (a device's queues or a file mapped right beside a buffer, a hole)
/// costs one call instead of a bisection over the whole limit (9 calls
/// for the pages of a 2 MiB block), and any other side one call more than
/// the bisection alone.
///
/// - Returns: the largest k in `0...limit` with `accepts(k)`, taking
///   `accepts(0)` as true (it is never called with 0).
func largestAcceptedExtent(upTo limit: Int, _ accepts: (Int) -> Bool) -> Int {
  guard limit > 0, accepts(1) else { return 0 }
  // Largest known accepted, and smallest known refused (limit + 1: none).
  var accepted = 1
  var refused = limit + 1  // limit is a page count far below Int.max
  while refused - accepted > 1 {
    let middle = accepted + (refused - accepted) / 2
    if accepts(middle) { accepted = middle } else { refused = middle }
  }
  return accepted
}
