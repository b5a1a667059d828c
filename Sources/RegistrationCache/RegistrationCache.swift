internal import UmemSystem
import Verbs

#if canImport(Glibc)
  import Glibc
#endif

/// Registers memory once and hands the registration out again for every
/// later lookup of the same bytes, as MPI libraries and UCX do, without
/// ever handing out a key for pages the memory no longer maps.
/// Bound to one ``SharedProtectionDomain``.
///
/// ```swift
/// let cache = try RegistrationCache(domain: pd)
/// let handle = try cache.lookup(address: buffer, length: 4096, access: .localWrite)
/// try qp.postSend(.send, handle.scatterGather(address: buffer, count: 4096), id: 1)
/// // ... after the completion:
/// handle.release()
/// ```
///
/// **Staying honest.** A userfaultfd monitor (``CacheMonitor``) learns of
/// `munmap`, `brk` shrinks, `mmap(MAP_FIXED)`, `mremap` and
/// `madvise(MADV_DONTNEED)` on cached ranges and the next lookup drops the
/// entries they touch. Where the kernel refuses userfaultfd the statistics
/// say so and the application must call ``invalidate(address:length:)``.
/// ``CacheLimits/checkFramesOnHit`` adds a page-frame check on hits.
///
/// **Overlap policy: merge.** The index holds disjoint page-aligned ranges.
/// A miss that overlaps cached entries registers the union of its pages and
/// theirs, with the union of the access flags, and replaces them (entries
/// in use stay registered for their holders). Why: a hit is then one binary
/// search for the one range that can cover it; a buffer looked up in
/// sliding, overlapping pieces, or with a stronger access later, converges
/// to one registration instead of re-registering on every alternation (the
/// cost of libfabric's drop-and-register policy); and memory is pinned once,
/// not once per overlapping piece. Adjacent ranges are not merged: touching
/// virtual ranges are usually different buffers, and merging them would
/// grow registrations across a whole heap. A union larger than
/// ``CacheLimits/maxMergedBytes``, or one that fails to register (part of it
/// may have been unmapped without a monitor), falls back to the pages asked
/// for.
///
/// **Concurrency.** Hits take no exclusive lock and, on a thread that
/// owns one of the process's 64 reader slots, no locked instruction at
/// all: they take the index's read lock, whose read side is a plain store
/// to the thread's own stripe and a compiler barrier (writers pay a
/// `membarrier` instead, see ``ReaderWriterLock``); they find the entry in
/// a hash table of first pages (``EntryIndex``); and they count the hold
/// in the entry's owner word when the thread is the entry's owner, the
/// first thread to hit it (``CacheEntry``), else with one atomic add. Two
/// threads hitting different entries write no shared cache line. Misses,
/// evictions and invalidations take the write lock for the index's
/// bookkeeping, but a miss calls `ibv_reg_mr` after releasing it: its entry
/// waits in the index as pending (``CacheEntry``), and a thread that looks
/// up the same range meanwhile takes a hold and waits for that one
/// registration, while lookups of other ranges go on (registering under
/// the write lock would stall every lookup behind each miss, for
/// microseconds to milliseconds). Likewise an invalidation or eviction of
/// an idle entry deregisters it once the lock is released. The monitor
/// thread never takes the lock.
///
/// **Eviction.** Idle entries (no handle out) are evicted least recently
/// used first when a miss would exceed ``CacheLimits/maxEntries``,
/// ``CacheLimits/maxBytes`` or the memlock headroom; a registration that
/// still fails with ENOMEM evicts every idle entry and retries once.
public final class RegistrationCache: @unchecked Sendable {
  // @unchecked: `index` is read under `lock`'s read side and written under
  // its write side; the other `var`s are read and written only under the
  // write side; `frameCheck` is immutable; everything else is atomic or
  // immutable.
  /// The domain registrations are made in; nil for a test registrar.
  public let domain: SharedProtectionDomain?
  public let limits: CacheLimits
  let registrar: Registrar
  let counters: CacheCounters
  private let lock = ReaderWriterLock()
  // Unchecked, like every `var` here: the lock is the exclusivity check,
  // and a dynamic one costs a runtime call per access (the hit path's
  // index; the miss path's other state, about 130 instructions a miss).
  @exclusivity(unchecked) private var index: EntryIndex
  /// Ranges the monitor is known to watch (under the write lock): a miss
  /// inside one skips the `UFFDIO_REGISTER` call. Forgotten on UNMAP and
  /// REMAP events, whose new mappings are not watched.
  @exclusivity(unchecked) private var watchedRanges = RegionIndex<Void>()
  /// This cache's use of the process's one userfaultfd monitor.
  let subscription: MonitorSubscription?
  /// The same, unretained (`subscription` keeps it): the hit path's check
  /// for queued invalidations then costs no retain and release.
  private let pendingCheck: Unmanaged<MonitorSubscription>?
  let monitorState: CacheMonitor
  private let frameCheck: FrameCheck?
  private let pageSize: Int
  private let enforcedByKernel: Bool
  @exclusivity(unchecked) private var closed = false
  /// Entries detached idle under the write lock, deregistered as soon as
  /// it is released (``withWriteLock(_:)``); only its holder touches it.
  @exclusivity(unchecked) private var retireAfterUnlock: [CacheEntry] = []
  /// `RLIMIT_MEMLOCK`'s soft limit when last read, UInt64.max when
  /// unlimited (under the write lock; nil until the first read).
  @exclusivity(unchecked) private var memoryLockSoftLimit: UInt64?
  /// Misses left before the soft limit is read again.
  @exclusivity(unchecked) private var memoryLockRereadIn = 0

  /// A cache over `domain`. The monitor thread (when `monitor` is
  /// `.userfaultfd` and the kernel allows it) starts now and stops with
  /// ``close()`` or when the cache goes away.
  public convenience init(
    domain: SharedProtectionDomain, limits: CacheLimits = CacheLimits(),
    monitor: MonitorChoice = .userfaultfd
  ) {
    self.init(registrar: .verbs(domain), domain: domain, limits: limits, monitor: monitor)
  }

  package init(
    registrar: Registrar, domain: SharedProtectionDomain? = nil, limits: CacheLimits,
    monitor choice: MonitorChoice
  ) {
    self.registrar = registrar
    counters = CacheCounters(deregistered: registrar.deregistered)
    self.domain = domain
    self.limits = limits
    pageSize = PageAlignedBuffer.pageSize
    index = EntryIndex(pageSize: pageSize, expectedCount: limits.maxEntries)
    enforcedByKernel = !ProcessStatus.current().has(capability: ProcessStatus.ipcLock)
    switch choice {
    case .explicitOnly:
      subscription = nil
      monitorState = .explicitOnly(reason: "asked for (MonitorChoice.explicitOnly)")
    case .userfaultfd:
      switch MonitorSubscription.start(ringCapacity: limits.monitorQueueCapacity) {
      case .success(let started):
        subscription = started
        monitorState = .userfaultfd(userModeOnly: started.monitor.userModeOnly)
      case .failure(let why):
        subscription = nil
        monitorState = .explicitOnly(reason: why.description)
      }
    }
    frameCheck = limits.checkFramesOnHit ? FrameCheck() : nil
    pendingCheck = subscription.map { Unmanaged.passUnretained($0) }
  }

  deinit {
    subscription?.end()
    // Handles do not retain their entries: those still held must outlive
    // the index (detach() keeps them until their last release), and idle
    // ones are deregistered now.
    for entry in index.removeAll() where entry.detach() { entry.retire() }
  }

  /// Stops watching (the process's monitor stops with its last cache) and
  /// drops every cached entry (those in use are
  /// deregistered when their last handle goes). Lookups afterwards still
  /// register, but nothing is cached any more (nothing would watch it).
  public func close() {
    withWriteLock {
      closed = true
      subscription?.end()
      dropAll(cause: .explicit)
    }
  }

  /// What the cache has done and holds now.
  public var statistics: CacheStatistics {
    var s = CacheStatistics()
    let c = counters
    // A read section per search; a lookup searches again only after a
    // registration it waited for failed.
    s.lookups = lock.readSections - c.retriedSearches.load(ordering: .relaxed)
    s.misses = c.misses.load(ordering: .relaxed)
    s.hits = s.lookups - s.misses
    s.registrations = c.registrations.load(ordering: .relaxed)
    s.registrationFailures = c.registrationFailures.load(ordering: .relaxed)
    s.deregistrations = c.deregistrations.load(ordering: .relaxed)
    s.deregistrationFailures = c.deregistrationFailures.load(ordering: .relaxed)
    s.retriesAfterNoMemory = c.retriesAfterNoMemory.load(ordering: .relaxed)
    s.evictions = c.evictions.load(ordering: .relaxed)
    for cause in InvalidationCause.allCases { s.invalidations[cause] = c.invalidations(cause) }
    s.staleHits = c.invalidations(.staleFrames)
    s.frameChecks = c.frameChecks.load(ordering: .relaxed)
    s.uncachedRegistrations = c.uncachedRegistrations.load(ordering: .relaxed)
    s.mergedRegistrations = c.mergedRegistrations.load(ordering: .relaxed)
    s.entries = c.cachedEntries.load(ordering: .relaxed)
    s.cachedBytes = c.cachedBytes.load(ordering: .relaxed)
    s.liveRegistrations = c.liveRegistrations.load(ordering: .relaxed)
    s.liveBytes = c.liveBytes.load(ordering: .relaxed)
    s.monitor = monitorState
    s.monitorEvents = subscription?.monitor.eventsRead.load(ordering: .relaxed) ?? 0
    return s
  }

  /// A registration covering `[address, address + length)` with at least
  /// `access`: a cached one when there is one, else a new registration of
  /// the page-aligned range (see the overlap policy above). The C function
  /// on a miss is `ibv_reg_mr`.
  ///
  /// Throws the registration's ``VerbsError`` (for ENOMEM, after evicting
  /// idle entries and retrying once), or `.invalidArgument` for an empty
  /// range or one that wraps past the top of the address space.
  public func lookup(address: UInt64, length: Int, access: MemoryAccess = .localWrite)
    throws(VerbsError) -> CachedRegistration
  {
    CachedRegistration(try acquire(address: address, length: length, access: access))
  }

  /// The same, for a pointer.
  public func lookup(_ memory: UnsafeRawBufferPointer, access: MemoryAccess = .localWrite)
    throws(VerbsError) -> CachedRegistration
  {
    try lookup(
      address: UInt64(UInt(bitPattern: memory.baseAddress)), length: memory.count, access: access)
  }

  /// The same registration as ``lookup(address:length:access:)``, held by
  /// a noncopyable ``RegistrationLease`` instead of an object: no
  /// allocation and no reference counting (an object's retain and release
  /// and its released flag are locked instructions the lease never runs).
  /// For the hot path: the compiler checks that each lease is released
  /// exactly once (``RegistrationLease/release()`` consumes it; dropping it
  /// releases too), and ``RegistrationLease/shared()`` turns one into a
  /// ``CachedRegistration`` where a value must be stored in an array or
  /// shared.
  public func lease(address: UInt64, length: Int, access: MemoryAccess = .localWrite)
    throws(VerbsError) -> RegistrationLease
  {
    RegistrationLease(try acquire(address: address, length: length, access: access))
  }

  /// The same, for a pointer.
  public func lease(_ memory: UnsafeRawBufferPointer, access: MemoryAccess = .localWrite)
    throws(VerbsError) -> RegistrationLease
  {
    try lease(
      address: UInt64(UInt(bitPattern: memory.baseAddress)), length: memory.count, access: access)
  }

  /// The covering entry, acquired once for the caller's handle or lease.
  @inline(__always)
  private func acquire(address: UInt64, length: Int, access: MemoryAccess)
    throws(VerbsError) -> Unmanaged<CacheEntry>
  {
    guard length > 0, UInt64(length) <= UInt64.max - address else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_reg_mr", errno: EINVAL,
        message: "cannot look up \(length) bytes at 0x\(String(address, radix: 16)): the range "
          + "is empty or runs past the top of the address space", checkedBeforeCall: true)
    }
    let end = address + UInt64(length)  // checked just above
    let (tick, found, searched) = search(address: address, end: end, access: access)
    // The hit path ends here, unless another thread's miss is still
    // registering the entry or hits check frames.
    if let held = found, frameCheck == nil, held._withUnsafeGuaranteedRef({ $0.isReady }) {
      return held
    }
    return try acquireSlowly(
      address: address, end: end, access: access, tick: tick, found: found, searched: searched)
  }

  /// The rest of a lookup: waiting for a pending entry, the frame check, the
  /// miss; and looking up again when a registration another thread was
  /// making failed.
  @inline(never)
  private func acquireSlowly(
    address: UInt64, end: UInt64, access: MemoryAccess, tick: Int,
    found: Unmanaged<CacheEntry>?, searched: Int?
  ) throws(VerbsError) -> Unmanaged<CacheEntry> {
    var (tick, found, searched) = (tick, found, searched)
    while true {
      if let held = found {
        // (A hit that fails its frame check leaves `searched` nil: the miss
        // searches.)
        if held._withUnsafeGuaranteedRef({ $0.isReady }) || settled(held) {
          guard let frameCheck else { return held }
          if passesFrameCheck(held, frameCheck) { return held }
        } else {
          (tick, found, searched) = searchAgain(address: address, end: end, access: access)
          continue
        }
      }
      switch try miss(start: address, end: end, access: access, tick: tick, searched: searched) {
      case .found(let held):
        if held._withUnsafeGuaranteedRef({ $0.isReady }) || settled(held) { return held }
        (tick, found, searched) = searchAgain(address: address, end: end, access: access)
      case .registering(let pending):
        return try complete(pending, tick: tick)
      }
    }
  }

  /// The same lookup's search once more, after a registration it waited
  /// for failed: counted, so that the statistics count it as one lookup
  /// (``statistics`` takes the retries from the read sections).
  private func searchAgain(address: UInt64, end: UInt64, access: MemoryAccess)
    -> (tick: Int, found: Unmanaged<CacheEntry>?, searched: Int?)
  {
    counters.retriedSearches.add(1, ordering: .relaxed)
    return search(address: address, end: end, access: access)
  }

  /// A lookup's search: what the monitor queued applied first, then the
  /// covering entry held under the read lock. The index's generation
  /// matters only to a miss: read only when nothing was found. Again after
  /// a registration the lookup waited for failed.
  @inline(__always)
  private func search(address: UInt64, end: UInt64, access: MemoryAccess)
    -> (tick: Int, found: Unmanaged<CacheEntry>?, searched: Int?)
  {
    if let pendingCheck, pendingCheck._withUnsafeGuaranteedRef({ $0.hasPending }) {
      withWriteLock { applyPendingInvalidations() }
    }
    let tick = counters.misses.load(ordering: .relaxed)
    return lock.withReadLock {
      if let held = hit(start: address, end: end, access: access, tick: tick) {
        return (tick, held, nil)
      }
      return (tick, nil, index.generation)
    }
  }

  /// Waits for a hold's pending entry to settle; false (the hold given
  /// back) when its registration failed: the caller looks up again.
  @inline(never)
  private func settled(_ held: Unmanaged<CacheEntry>) -> Bool {
    let entry = held.takeUnretainedValue()
    if entry.waitUntilSettled() { return true }
    entry.release()
    return false
  }

  /// The optional check on a hit: whether the entry's pages are still the
  /// ones registered. When not, gives the hold back and drops the entry
  /// (a stale hit); the caller then misses.
  @inline(never)
  private func passesFrameCheck(_ held: Unmanaged<CacheEntry>, _ frameCheck: FrameCheck) -> Bool {
    // Slow path from here on: a strong reference is fine.
    let entry = held.takeUnretainedValue()
    guard let recorded = entry.frames else { return true }
    counters.frameChecks.add(1, ordering: .relaxed)
    if frameCheck.frames(start: entry.start, length: entry.length, pageSize: pageSize) == recorded {
      return true
    }
    entry.release()
    // Pages replaced since the hit was taken may be reported already, or
    // be in flight: an munmap clears the page table before it queues its
    // event. Give the monitor a moment (about 0.1 s at most; no lock is
    // held and it needs none); only a change it never reported counts as
    // a stale hit.
    if let subscription {
      for _ in 0..<2000 where !subscription.hasPending { usleep(10) }
    }
    withWriteLock {
      applyPendingInvalidations()
      if !entry.isDetached { drop(entry, cause: .staleFrames) }
    }
    return false
  }

  /// Stops serving registrations that share a byte with
  /// `[address, address + length)`: the next lookup registers afresh.
  /// Handles already out stay valid until released. Call it before
  /// unmapping, freeing, moving or `madvise`-discarding cached memory when
  /// ``CacheStatistics/monitor`` is `.explicitOnly`.
  public func invalidate(address: UInt64, length: Int) {
    guard length > 0 else { return }
    // Saturating: a range past the top of the address space is cut there.
    let (sum, overflow) = address.addingReportingOverflow(UInt64(length))
    let end = overflow ? UInt64.max : sum
    withWriteLock {
      applyPendingInvalidations()
      invalidate(start: address, end: end, cause: .explicit)
    }
  }

  // MARK: - Under the read lock

  /// The covering entry, acquired for a handle; unretained (the handle's
  /// count keeps it alive), so a hit does no reference counting.
  @inline(__always)
  private func hit(start: UInt64, end: UInt64, access: MemoryAccess, tick: Int)
    -> Unmanaged<CacheEntry>?
  {
    guard let entry = index.covering(start: start, end: end) else { return nil }
    return entry._withUnsafeGuaranteedRef { entry in
      guard entry.access.isSuperset(of: access) else { return nil }
      entry.acquire(at: tick, claiming: true)
      return Optional(Unmanaged.passUnretained(entry))
    }
  }

  // MARK: - Under the write lock

  /// `body` under the write lock; then, with the lock released,
  /// deregisters the entries it detached idle (``CacheEntry/detach()``),
  /// so that an `ibv_dereg_mr` never holds up other threads' lookups.
  @inline(__always)
  private func withWriteLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    var retiring: [CacheEntry] = []
    defer { for entry in retiring { entry.retire() } }
    return try lock.withWriteLock { () throws(E) -> R in
      defer { if !retireAfterUnlock.isEmpty { swap(&retiring, &retireAfterUnlock) } }
      return try body()
    }
  }

  /// Detaches `entry` (out of the index already, or never in it); when
  /// nobody holds it, it is deregistered once the write lock is released.
  private func detachUnderLock(_ entry: CacheEntry) {
    if entry.detach() { retireAfterUnlock.append(entry) }
  }

  /// What a miss found under the write lock: an entry after all (another
  /// thread's, possibly still pending), or a pending entry of its own to
  /// register outside the lock (``complete(_:tick:)``).
  private enum MissOutcome {
    case found(Unmanaged<CacheEntry>)
    case registering(PendingRegistration)
  }

  /// A miss's own pending entry, indexed and held, and what to register if
  /// it was a union that fails.
  private struct PendingRegistration {
    let entry: CacheEntry
    let merged: Bool
    let fallback: (start: UInt64, end: UInt64, access: MemoryAccess)
  }

  /// `searched`: the index's generation when the read lock found nothing
  /// (the frame check's retry passes nil: it found a stale entry).
  /// `merging`: false for a failed union's fallback.
  private func miss(
    start: UInt64, end: UInt64, access: MemoryAccess, tick: Int, searched: Int?,
    merging: Bool = true
  ) throws(VerbsError) -> MissOutcome {
    try withWriteLock { () throws(VerbsError) -> MissOutcome in
      applyPendingInvalidations()
      // Another thread may have registered it while this one waited (the
      // index changed since the search), or the monitor's news dropped it.
      if index.generation != searched,
        let held = hit(start: start, end: end, access: access, tick: tick)
      {
        return .found(held)
      }
      counters.misses.addUnderWriteLock(1)
      let page = UInt64(pageSize)
      let pageStart = start & ~(page - 1)
      guard end <= UInt64.max - (page - 1) else {
        throw VerbsError(
          .invalidArgument, operation: "ibv_reg_mr", errno: EINVAL,
          message: "the range ends within a page of the top of the address space",
          checkedBeforeCall: true)
      }
      let pageEnd = (end + page - 1) & ~(page - 1)  // checked just above
      // The overlap policy: the union of the overlapping entries' pages and
      // access, unless that grows past maxMergedBytes.
      let overlaps = index.overlapping(start: pageStart, end: pageEnd)
      var union = (start: pageStart, end: pageEnd, access: access)
      for position in overlaps {
        let entry = index.values[position]
        union.start = Swift.min(union.start, entry.start)
        union.end = Swift.max(union.end, entry.end)
        union.access.formUnion(entry.access)
      }
      if !merging || union.end - union.start > UInt64(limits.maxMergedBytes) {
        union = (pageStart, pageEnd, access)
      }
      if !overlaps.isEmpty {
        for entry in index.remove(overlaps) { detach(entry, cause: .overlap) }
      }
      // With the overlaps gone, the new range belongs where they began.
      return try begin(
        start: union.start, end: union.end, access: union.access,
        fallback: (pageStart, pageEnd, access), merged: !overlaps.isEmpty && merging,
        tick: tick, position: overlaps.lowerBound)
    }
  }

  /// Under the write lock: indexes a pending entry for one range, held for
  /// the caller, to be registered once the lock is released (a range the
  /// monitor cannot watch is registered here instead, and handed out
  /// uncached). `position`: where in the index the range belongs (a hint,
  /// checked).
  private func begin(
    start: UInt64, end: UInt64, access: MemoryAccess,
    fallback: (start: UInt64, end: UInt64, access: MemoryAccess), merged: Bool, tick: Int,
    position: Int
  ) throws(VerbsError) -> MissOutcome {
    // Both ends are page-aligned user addresses; a length past Int.max
    // cannot be registered anyway.
    guard let length = Int(exactly: end - start) else {
      throw VerbsError(
        .invalidArgument, operation: "ibv_reg_mr", errno: EINVAL,
        message: "\(end - start) bytes do not fit in Int", checkedBeforeCall: true)
    }
    makeRoom(for: length)
    // Watch before registering: an unmap between the two is then seen
    // (and drops the entry on the next lookup) instead of missed.
    guard !closed, subscription == nil || ensureWatched(start: start, end: end) else {
      return .found(try registerUncached(start: start, length: length, access: access, tick: tick))
    }
    let entry = CacheEntry(pendingStart: start, length: length, access: access, counters: counters)
    // Before anything can detach it: handles do not retain their entry.
    entry.acquire(at: tick, claiming: false)
    index.insert(entry, at: position)
    counters.cachedEntries.addUnderWriteLock(1)
    counters.cachedBytes.addUnderWriteLock(length)
    counters.registrations.addUnderWriteLock(1)
    if merged { counters.mergedRegistrations.addUnderWriteLock(1) }
    return .registering(PendingRegistration(entry: entry, merged: merged, fallback: fallback))
  }

  /// Outside the lock: registers a miss's pending entry and publishes it,
  /// or takes it back out and throws (after registering the range asked
  /// for, when a union failed for a reason other than memory).
  private func complete(_ pending: PendingRegistration, tick: Int) throws(VerbsError)
    -> Unmanaged<CacheEntry>
  {
    let entry = pending.entry
    do {
      let registered = try registerRetryingOnNoMemory(
        start: entry.start, length: entry.length, access: entry.access,
        evictIdleNow: {
          // The evicted are deregistered as the lock is released.
          withWriteLock { () -> Int in
            applyPendingInvalidations()
            return evictAllIdleForRetry()
          }
        })
      entry.publish(
        registered,
        frames: frameCheck?.frames(start: entry.start, length: entry.length, pageSize: pageSize))
      return Unmanaged.passUnretained(entry)
    } catch {
      let fallback = pending.fallback
      let retry =
        pending.merged && error.code != .memoryLockLimit && error.code != .resourceExhausted
        && (fallback.start != entry.start || fallback.end != entry.end)
      withWriteLock { withdraw(entry, merged: pending.merged, failed: !retry) }
      // The miss's own hold; the last one retires the entry (nothing to
      // deregister).
      entry.release()
      guard retry else { throw error }
      // Part of the union may be gone; register what was asked for.
      switch try miss(
        start: fallback.start, end: fallback.end, access: fallback.access, tick: tick,
        searched: nil, merging: false)
      {
      case .found(let held):
        if held._withUnsafeGuaranteedRef({ $0.isReady }) || settled(held) { return held }
        throw error
      case .registering(let next):
        return try complete(next, tick: tick)
      }
    }
  }

  /// Under the write lock: takes a pending entry whose registration failed
  /// back out of the index and the counts, and lets its waiters go.
  private func withdraw(_ entry: CacheEntry, merged: Bool, failed: Bool) {
    entry.fail()
    counters.registrations.addUnderWriteLock(-1)
    if merged { counters.mergedRegistrations.addUnderWriteLock(-1) }
    if failed { counters.registrationFailures.addUnderWriteLock(1) }
    // An invalidation may have detached it already (and counted that).
    guard !entry.isDetached else { return }
    if let position = index.lastStarting(atOrBelow: entry.start), index.values[position] === entry {
      index.remove(position..<(position + 1))
    }
    counters.cachedEntries.addUnderWriteLock(-1)
    counters.cachedBytes.addUnderWriteLock(-entry.length)
    detachUnderLock(entry)
  }

  /// Under the write lock: registers a range the monitor cannot watch and
  /// hands it out once, uncached (detached at once: its last release
  /// deregisters it).
  private func registerUncached(start: UInt64, length: Int, access: MemoryAccess, tick: Int)
    throws(VerbsError) -> Unmanaged<CacheEntry>
  {
    let registered: RegisteredMemory
    do {
      registered = try registerRetryingOnNoMemory(
        start: start, length: length, access: access,
        evictIdleNow: { evictAllIdleForRetry(deregisteringNow: true) })
    } catch {
      counters.registrationFailures.addUnderWriteLock(1)
      throw error
    }
    counters.registrations.addUnderWriteLock(1)
    counters.uncachedRegistrations.addUnderWriteLock(1)
    let frames = frameCheck?.frames(start: start, length: length, pageSize: pageSize)
    let entry = CacheEntry(
      start: start, length: length, access: access, registered: registered, frames: frames,
      counters: counters)
    entry.acquire(at: tick, claiming: false)
    detachUnderLock(entry)
    return Unmanaged.passUnretained(entry)
  }

  /// Whether the monitor watches `[start, end)` (always true without a
  /// monitor: then the application invalidates). Watches the mapped
  /// stretch of the aligned blocks around it, so that neighbouring buffers
  /// cost no further `UFFDIO_REGISTER` (a system call and a VMA split
  /// each; about 60 µs, and the check of what is mapped another 30-100,
  /// under emulation). A block is 2 MiB, or 16 times the range rounded up
  /// to a power of two when that is larger (at most 1 GiB): a 1 MiB miss
  /// watches ahead for 15 neighbours of its size, where a 2 MiB block made
  /// every other one pay the calls (1 MiB misses with the monitor cost 2-2.3
  /// times a plain registration). Blocks are 2 MiB-aligned, so no watch
  /// ends inside a transparent huge page: a VMA split there splits the
  /// huge page's mapping into 512 small ones, for good (the application
  /// loses the huge page; under emulation the call took 10 times as long,
  /// and 1 MiB misses cost 3-4 times a plain registration). The cost of
  /// watching more than the range: an `munmap` or `madvise` there that no
  /// entry cares about still waits for the monitor to read its event.
  ///
  /// When the kernel refuses the stretch (a file or device mapping
  /// in it, such as a device's queues mapped next to the buffers, or
  /// another userfaultfd's range), it watches the range itself and then
  /// widens that as far as the kernel accepts on each side: one call on a
  /// side whose next page is refused, else a bisection (9-18 calls;
  /// once per stretch: without it every neighbour's miss paid the refused
  /// calls again). A range that
  /// cannot be watched at all (a file mapping; EBUSY) costs two calls.
  ///
  /// Only mapped pages are recorded as watched: `UFFDIO_REGISTER` accepts
  /// a range with holes but watches only the mappings present, and a
  /// mapping made in a hole later is not watched (no event says so). So
  /// the stretch is what is mapped around the range
  /// (``mappedStretch(start:end:within:_:)``).
  private func ensureWatched(start: UInt64, end: UInt64) -> Bool {
    guard let monitor = subscription?.monitor else { return true }
    if watchedRanges.covering(start: start, end: end) != nil { return true }
    // `end - start` is at least a page.
    var block: UInt64 = 1 << 21
    while block < 1 << 30, block / 16 < end - start { block <<= 1 }
    // Rounded out to whole blocks; the range alone (nil) where rounding up
    // would pass the top of the address space.
    let (roundedUp, overflow) = end.addingReportingOverflow(block - 1)
    let stretch =
      overflow
      ? nil
      : mappedStretch(
        start: start, end: end, within: start & ~(block - 1), roundedUp & ~(block - 1))
    if let stretch, stretch != (start, end),
      monitor.watch(start: stretch.start, length: stretch.end - stretch.start) == nil
    {
      rememberWatched(stretch.start, stretch.end)
      return true
    }
    guard monitor.watch(start: start, length: end - start) == nil else { return false }
    guard let stretch, stretch != (start, end) else {
      rememberWatched(start, end)
      return true
    }
    // Widen within the mapped stretch: watching a part is watching a
    // subset, so success is monotone in each bound. A side whose first
    // page is refused costs one call.
    let page = UInt64(pageSize)
    let left = largestAcceptedExtent(upTo: Int((start - stretch.start) / page)) { pages in
      monitor.watch(start: start - UInt64(pages) * page, length: UInt64(pages) * page) == nil
    }
    let right = largestAcceptedExtent(upTo: Int((stretch.end - end) / page)) { pages in
      monitor.watch(start: end, length: UInt64(pages) * page) == nil
    }
    // Both within the blocks around the range.
    rememberWatched(start - UInt64(left) * page, end + UInt64(right) * page)
    return true
  }

  /// The largest page range inside `[low, high)` that contains
  /// `[start, end)` and is mapped throughout, found with
  /// `msync(MS_ASYNC)`, which fails with ENOMEM where part of a range is
  /// unmapped and otherwise does nothing (since Linux 2.6.19): it walks
  /// the VMAs, not the pages, as `mincore` did (a 2 MiB `mincore` cost
  /// 70-100 µs under emulation, a page's 30). One call when the whole
  /// window is mapped, else a search on each side
  /// (``largestAcceptedExtent(upTo:_:)``: one call where the next page is
  /// a hole, else a bisection of up to 18).
  /// Nil when `[start, end)` itself is not all mapped.
  private func mappedStretch(start: UInt64, end: UInt64, within low: UInt64, _ high: UInt64)
    -> (start: UInt64, end: UInt64)?
  {
    let page = UInt64(pageSize)
    func mapped(_ from: UInt64, _ to: UInt64) -> Bool {
      guard from < to else { return true }
      // Page-aligned bounds, as msync wants; a length past Int.max cannot
      // be all mapped.
      guard let length = Int(exactly: to - from) else { return false }
      return msync(UnsafeMutableRawPointer(bitPattern: UInt(from)), length, MS_ASYNC) == 0
    }
    if mapped(low, high) { return (low, high) }
    guard mapped(start, end) else { return nil }
    // On each side, the most pages next to the range that are mapped
    // throughout (a monotone test).
    let left = largestAcceptedExtent(upTo: Int((start - low) / page)) { pages in
      mapped(start - UInt64(pages) * page, start)
    }
    let right = largestAcceptedExtent(upTo: Int((high - end) / page)) { pages in
      mapped(end, end + UInt64(pages) * page)
    }
    // left and right are at most the pages between the range and the
    // blocks' ends: both results stay inside [low, high).
    return (start - UInt64(left) * page, end + UInt64(right) * page)
  }

  /// Records `[start, end)` as watched, merged with the watched ranges it
  /// overlaps or touches (so that a range across the boundary of two is
  /// found covered).
  private func rememberWatched(_ start: UInt64, _ end: UInt64) {
    // Saturating: a watched range is never at address 0 or at the top.
    let overlaps = watchedRanges.overlapping(
      start: start == 0 ? 0 : start - 1, end: end == .max ? end : end + 1)
    var union = (start: start, end: end)
    for position in overlaps {
      let range = watchedRanges.range(at: position)
      union = (Swift.min(union.start, range.start), Swift.max(union.end, range.end))
    }
    watchedRanges.remove(overlaps)
    watchedRanges.insert(start: union.start, end: union.end, value: ())
  }

  /// One registration, and on ENOMEM (memlock or resources) one retry
  /// after `evictIdleNow` evicted every idle entry, their pages unpinned by
  /// the time it returns; it returns how many it evicted (none: the error
  /// is thrown).
  @inline(__always)
  private func registerRetryingOnNoMemory(
    start: UInt64, length: Int, access: MemoryAccess, evictIdleNow: () -> Int
  ) throws(VerbsError) -> RegisteredMemory {
    do {
      return try registrar.register(start, length, access)
    } catch {
      guard error.code == .memoryLockLimit || error.code == .resourceExhausted,
        evictIdleNow() > 0
      else { throw error }
      return try registrar.register(start, length, access)
    }
  }

  /// Under the write lock: evicts every idle entry for an ENOMEM retry
  /// and counts the retry. `deregisteringNow` for a retry under the lock,
  /// which needs the pages unpinned before the lock is released (a rare
  /// path: an uncached range at the limit).
  private func evictAllIdleForRetry(deregisteringNow: Bool = false) -> Int {
    let evicted = evictIdle(bytes: Int.max, entries: Int.max)
    if deregisteringNow {
      for entry in retireAfterUnlock { entry.retire() }
      retireAfterUnlock.removeAll()
    }
    if evicted > 0 { counters.retriesAfterNoMemory.addUnderWriteLock(1) }
    return evicted
  }

  /// Evicts idle entries, least recently used first, until one more entry
  /// of `length` bytes fits the limits and the memlock headroom.
  @inline(__always)
  private func makeRoom(for length: Int) {
    let entriesOver = index.count + 1 - limits.maxEntries
    var bytesOver = 0
    if let maxBytes = limits.maxBytes {
      let cached = counters.cachedBytes.load(ordering: .relaxed)
      bytesOver = cached > maxBytes - length ? cached - (maxBytes - length) : 0
    }
    bytesOver = Swift.max(bytesOver, memoryLockShortfall(for: length))
    if entriesOver > 0 || bytesOver > 0 {
      evictIdle(bytes: bytesOver, entries: entriesOver)
    }
  }

  /// How many more bytes must be unpinned for `length` more to fit under
  /// `RLIMIT_MEMLOCK`, per ``CacheLimits/memoryLock``. `VmPin` is read only
  /// once this cache's own registrations reach half the limit, so misses
  /// far below it do not pay for reading `/proc/self/status`; nor do most
  /// call `getrlimit`: the soft limit last read is trusted for 256 misses,
  /// or until this cache's registrations reach half of it, whichever comes
  /// first (a limit lowered in between that the kernel enforces shows as
  /// ENOMEM, which evicts and retries).
  @inline(__always)
  private func memoryLockShortfall(for length: Int) -> Int {
    switch limits.memoryLock {
    case .never: return 0
    case .whenEnforced where !enforcedByKernel: return 0
    default: break
    }
    let ours = UInt64(Swift.max(0, counters.liveBytes.load(ordering: .relaxed)))
    // ours and length are byte counts of registered memory, far below 2^63.
    memoryLockRereadIn &-= 1  // reset to 256 at each read: never near Int.min
    if let seen = memoryLockSoftLimit, memoryLockRereadIn > 0, ours + UInt64(length) < seen / 2 {
      return 0
    }
    return memoryLockShortfallNearTheLimit(ours: ours, length: length)
  }

  @inline(never)
  private func memoryLockShortfallNearTheLimit(ours: UInt64, length: Int) -> Int {
    // Unlimited reads as UInt64.max: never near it.
    let soft = MemoryLockLimit.current().soft ?? .max
    memoryLockSoftLimit = soft
    memoryLockRereadIn = 256
    guard ours + UInt64(length) >= soft / 2 else { return 0 }
    let pinned = ProcessStatus.current().pinnedBytes
    let wanted = pinned + UInt64(length)  // both far below 2^63
    return wanted > soft ? Int(clamping: wanted - soft) : 0
  }

  /// Evicts idle entries, oldest last use first, until `bytes` bytes and
  /// `entries` entries are gone or none idle is left. Returns how many.
  ///
  /// - Complexity: O(n log n) to order the idle entries; misses over the
  ///   limits pay it.
  @discardableResult
  private func evictIdle(bytes: Int, entries: Int) -> Int {
    let idle = index.values.filter(\.isIdle).sorted {
      $0.lastUse.load(ordering: .relaxed) < $1.lastUse.load(ordering: .relaxed)
    }
    var freedBytes = 0
    var evicted = 0
    for entry in idle where freedBytes < bytes || evicted < entries {
      guard let position = index.lastStarting(atOrBelow: entry.start) else { continue }
      index.remove(position..<(position + 1))
      counters.cachedEntries.addUnderWriteLock(-1)
      counters.cachedBytes.addUnderWriteLock(-entry.length)
      detachUnderLock(entry)
      counters.evictions.addUnderWriteLock(1)
      freedBytes += entry.length
      evicted += 1
    }
    return evicted
  }

  /// Applies what the monitor queued since the last lookup. Inline the
  /// check that anything is queued (what a hit checks too); the drain
  /// only when it is.
  @inline(__always)
  private func applyPendingInvalidations() {
    guard let pendingCheck, pendingCheck._withUnsafeGuaranteedRef({ $0.hasPending }) else {
      return
    }
    drainPendingInvalidations()
  }

  @inline(never)
  private func drainPendingInvalidations() {
    guard let subscription else { return }
    let lost = subscription.drain { slot in
      invalidate(start: slot.start, end: slot.end, cause: slot.cause)
    }
    if lost {
      // Lost events may have unmapped watched ranges too.
      watchedRanges = RegionIndex()
      dropAll(cause: .monitorOverflow)
    }
  }

  private func invalidate(start: UInt64, end: UInt64, cause: InvalidationCause) {
    if cause == .unmap || cause == .remap {
      watchedRanges.remove(watchedRanges.overlapping(start: start, end: end))
    }
    let positions = index.overlapping(start: start, end: end)
    for entry in index.remove(positions) { detach(entry, cause: cause) }
  }

  private func drop(_ entry: CacheEntry, cause: InvalidationCause) {
    guard let position = index.lastStarting(atOrBelow: entry.start),
      index.values[position] === entry
    else { return }
    index.remove(position..<(position + 1))
    detach(entry, cause: cause)
  }

  private func dropAll(cause: InvalidationCause) {
    for entry in index.removeAll() { detach(entry, cause: cause) }
  }

  private func detach(_ entry: CacheEntry, cause: InvalidationCause) {
    counters.cachedEntries.addUnderWriteLock(-1)
    counters.cachedBytes.addUnderWriteLock(-entry.length)
    counters.invalidated(cause)
    detachUnderLock(entry)
  }

  // MARK: - For tests

  /// Runs `body` holding the write lock, as a miss does; for tests that
  /// check the monitor never waits for it.
  package func withWriteLockForTesting<R>(_ body: () -> R) -> R {
    lock.withWriteLock { body() }
  }

  /// `body` on the cached entry covering the page at `address`, under the
  /// write lock (the read side would count as a lookup); nil when none does.
  func withEntryForTesting<R>(covering address: UInt64, _ body: (CacheEntry) -> R) -> R? {
    withWriteLock {
      index.covering(start: address, end: address + 1).map { body($0.takeUnretainedValue()) }
    }
  }

  /// The cached ranges, in address order; checks the index's invariants.
  package func cachedRangesForTesting() -> [(start: UInt64, end: UInt64, access: MemoryAccess)] {
    lock.withReadLock {
      index.checkInvariants()
      return index.values.map { ($0.start, $0.end, $0.access) }
    }
  }
}
