import ArgumentParser
import Foundation
import RegistrationCache
import Synchronization
import ToolSupport
import Verbs

/// `umem cache-bench`: register N buffers through a ``RegistrationCache``,
/// then look them up M times in random order, each lookup followed by
/// releasing its handle (as an application would, and as the C anchors
/// are timed), and report the hit and miss costs and the statistics.
struct CacheBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cache-bench",
    abstract: "Measure registration-cache hits and misses over N buffers and M lookups.")

  @Option(help: "Buffers to register through the cache.") var regions: Int = 1000
  @Option(help: "Timed lookups in all (each followed by a release).") var lookups: Int = 1_000_000
  @Option(help: "Threads sharing the lookups (and the cache).") var threads: Int = 1
  @Option(
    help:
      "Times each thread runs its share of the lookups, each timed; a thread's hit cost is the median (as the C anchors' --repeats)."
  )
  var repeats: Int = 1
  @Option(help: "Bytes per buffer: 4096, 64K, 1M.") var size: String = "4096"
  @Option(
    help:
      "Misses (each beside a plain registration) on spare buffers before the fill, then invalidated: the fill's misses are then warm. The first is reported as the cold miss. 0 makes the fill's first miss the cold one."
  )
  var warmup: Int = 16
  @Option(help: "Device name (default: the first device).") var device: String?
  @Option(
    help:
      "verbs: real registrations (ibv_reg_mr). counter: registration replaced by a counter, to time the cache without a device. index: the lookup structure alone (searches only, no lock or handles)."
  )
  var registrar: RegistrarKind = .verbs
  @Option(help: "userfaultfd (falls back to explicit where refused) or explicit.")
  var monitor: MonitorKind = .userfaultfd
  @Option(
    help:
      "What each timed lookup returns: lease (RegistrationCache.lease, a noncopyable value) or object (RegistrationCache.lookup, a CachedRegistration)."
  )
  var handle: HandleKind = .lease
  @Flag(
    help:
      "Also time each ibv_reg_mr inside the cache's misses (two more clock reads per miss), to split a miss into the registration and the cache's own work: the mean of each, and the median of each miss's own part against the median plain registration."
  )
  var splitMiss = false
  @Flag(
    help:
      "Close each paired plain registration right after its pair instead of keeping it until the fill ends (as the cache keeps its own)."
  )
  var closePlain = false
  @Flag(
    help:
      "While the timed lookups run, one more thread misses over and over (looks up one of 64 spare buffers, invalidates it while held, releases it): how much other threads' misses slow hits."
  )
  var backgroundMisses = false
  @Flag(
    help:
      "Back every buffer with small pages (madvise MADV_NOHUGEPAGE before touching them), as with transparent huge pages in madvise mode, the default of many distributions, for memory that did not ask for them: each registration then pins each 4 KiB page on its own."
  )
  var smallPages = false
  @Flag(help: "Print one JSON object.") var json = false

  enum RegistrarKind: String, ExpressibleByArgument, CaseIterable { case verbs, counter, index }
  enum MonitorKind: String, ExpressibleByArgument, CaseIterable { case userfaultfd, explicit }
  enum HandleKind: String, ExpressibleByArgument, CaseIterable { case lease, object }

  func validate() throws {
    guard let bytes = parseSize(size), bytes > 0, bytes <= 1 << 30 else {
      throw ValidationError("--size '\(size)' is not a size from 1 byte to 1G")
    }
    guard regions >= 1, regions <= 10_000_000 else {
      throw ValidationError("--regions must be 1 to 10,000,000")
    }
    // Bounded like the C anchors' --lookups, so that lookups x repeats
    // (and each thread's order array) stays far inside Int.
    guard lookups >= 1, lookups <= 1_000_000_000 else {
      throw ValidationError("--lookups must be 1 to 1,000,000,000")
    }
    guard repeats >= 1, repeats <= 1000 else {
      throw ValidationError("--repeats must be 1 to 1000")
    }
    guard warmup >= 0, warmup <= 10_000 else {
      throw ValidationError("--warmup must be 0 to 10,000")
    }
    guard threads >= 1, threads <= 1024 else {
      throw ValidationError("--threads must be 1 to 1024")
    }
    // The buffers are one mapping of regions x the page-rounded size.
    guard bytes * UInt64(regions) <= 1 << 40 else {
      throw ValidationError("--regions x --size must stay within 1 TiB")
    }
  }

  struct IndexReport: Encodable {
    var registrar = "index"
    var regions: Int
    var lookups: Int
    /// Mean per covering search, without lock, statistics or handles.
    var searchNanoseconds: Double
    /// The same in the thread's CPU time.
    var searchThreadCPUNanoseconds: Double
  }

  struct Report: Encodable {
    var registrar: String
    var device: String?
    var regions: Int
    var lookups: Int
    var threads: Int
    /// Timed runs of each thread's lookups; the hit costs are medians.
    var repeats: Int
    var size: Int
    /// What the timed lookups returned: "lease" or "object".
    var handle: String
    var hits: Int
    var misses: Int
    var registrationsAvoided: Int
    /// Mean per lookup+release over the timed loop (each thread's median
    /// run), averaged over the threads.
    var hitNanoseconds: Double
    /// The same in the threads' CPU time (`CLOCK_THREAD_CPUTIME_ID`): what
    /// a hit costs when the machine is shared and threads wait for a core.
    var hitThreadCPUNanoseconds: Double
    /// Mean per miss (registration through the cache) while filling it.
    var missNanoseconds: Double
    /// Mean per plain registration without the cache (`ibv_reg_mr` through
    /// SharedProtectionDomain, kept until the fill ends and deregistered
    /// untimed; `--close-plain`: closed after its pair) of up to 1,000
    /// buffers of the same size in a mapping of their own, each right next
    /// to a miss spread over the fill (before it in every other pair, after
    /// it in the rest).
    var plainRegisterNanoseconds: Double?
    /// Mean per miss of the buffers those were paired with.
    var pairedMissNanoseconds: Double?
    /// pairedMissNanoseconds / plainRegisterNanoseconds.
    var missOverPlain: Double?
    /// The median over those buffers of each one's miss / its plain
    /// registration: the two ran back to back, so a stall of the machine
    /// that spoils one pair does not move it, where it moves the means.
    var missOverPlainMedian: Double?
    /// The median over those buffers of each one's miss minus its plain
    /// registration: what a miss adds, in nanoseconds, whatever a
    /// registration costs in the process (the C anchors report the same).
    var missMinusPlainMedianNanoseconds: Double?
    /// How many buffers the two means above are over.
    var plainSamples: Int
    /// Mean per plain registration when all are kept registered at once
    /// (the plain buffers, up to 1,000), and the miss against it.
    var plainKeptRegisterNanoseconds: Double?
    var missOverPlainKept: Double?
    /// Misses (and plain registrations) on spare buffers before the fill
    /// (`--warmup`); the statistics count them, the means above do not.
    var warmup: Int
    /// Whether the buffers were advised to small pages (`--small-pages`).
    var smallPages: Bool
    /// Whether each plain registration was closed after its pair
    /// (`--close-plain`) rather than kept until the fill ended.
    var plainClosedAtOnce: Bool
    /// Misses the background thread made while the lookups were timed
    /// (`--background-misses`; nil without it). The statistics count them.
    var backgroundMisses: Int?
    /// With --split-miss: mean time inside ibv_reg_mr per registration the
    /// fill's misses made; the rest of missNanoseconds is the cache's.
    var missRegistrationNanoseconds: Double?
    /// With --split-miss: the median over the fill's misses of each miss
    /// minus the `ibv_reg_mr` inside it: the cache's own work per miss
    /// (with one of the two extra clock reads), free of the registration's
    /// own spread, which the pairs' figures carry.
    var missOwnMedianNanoseconds: Double?
    /// With --split-miss: the median of the paired plain registrations.
    var plainRegisterMedianNanoseconds: Double?
    /// With --split-miss: 1 + missOwnMedian / plainRegisterMedian, the
    /// miss/plain ratio a registration of the median cost would show.
    var missOwnOverPlainMedian: Double?
    /// With --split-miss: the median of the `ibv_reg_mr` inside each of the
    /// fill's misses (against plainInnerMedianNanoseconds: whether a
    /// registration made by the cache costs what a plain one does).
    var missRegistrationMedianNanoseconds: Double?
    /// With --split-miss: the median of the paired plain registrations'
    /// `ibv_reg_mr` alone, timed inside by the same two clock reads as the
    /// one inside each miss (the plain ones go through the same timing
    /// registrar).
    var plainInnerMedianNanoseconds: Double?
    /// With --split-miss: the median over the plain registrations of each
    /// one's time less its `ibv_reg_mr` (as missOwnMedian, with no cache
    /// work): what the split's clock reads and the call through the
    /// registrar put into missOwnMedian.
    var splitOverheadMedianNanoseconds: Double?
    /// With --split-miss: missOwnMedian less splitOverheadMedian, the
    /// cache's own work per miss without the measurement's.
    var missOwnNetMedianNanoseconds: Double?
    /// With --split-miss: 1 + missOwnNetMedian / plainInnerMedian.
    var missOwnNetOverPlainMedian: Double?
    /// The process's first miss and first plain registration (the first
    /// warm-up pair; with `--warmup 0`, the fill's first miss alone).
    var coldMissNanoseconds: Double?
    var coldPlainRegisterNanoseconds: Double?
    var statistics: CacheStatistics
  }

  func run() throws {
    let bytes = Int(parseSize(size)!)
    let page = PageAlignedBuffer.pageSize
    let stride = (bytes + page - 1) / page * page  // bytes <= 1 GiB: no overflow
    if registrar == .index {
      let (nanoseconds, cpu) = RegistrationCache.benchmarkIndex(
        regions: regions, stride: stride, lookups: lookups)
      if json {
        let report = IndexReport(
          regions: regions, lookups: lookups, searchNanoseconds: nanoseconds,
          searchThreadCPUNanoseconds: cpu)
        print(String(decoding: (try? JSONEncoder().encode(report)) ?? Data(), as: UTF8.self))
      } else {
        print(
          "index       \(regions) ranges, \(lookups) searches: \(format(nanoseconds)) per search, "
            + "\(format(cpu)) of thread CPU time")
      }
      return
    }
    do {
      let choice: MonitorChoice = monitor == .userfaultfd ? .userfaultfd : .explicitOnly
      let limits = CacheLimits(maxEntries: max(regions, 4096))
      let cache: RegistrationCache
      var pd: SharedProtectionDomain?
      var timer: RegistrationTimer?
      switch registrar {
      case .verbs:
        let context = try SharedDeviceContext.open(name: device)
        pd = try context.allocateProtectionDomain()
        if splitMiss {
          (cache, timer) = RegistrationCache.timingRegistrationsForBenchmarks(
            domain: pd!, limits: limits, monitor: choice)
        } else {
          cache = RegistrationCache(domain: pd!, limits: limits, monitor: choice)
        }
      case .counter, .index:
        cache = RegistrationCache.countingForBenchmarks(limits: limits, monitor: choice)
      }
      let access: MemoryAccess = [.localWrite, .remoteRead]
      // A plain local: reading an option's wrapper inside a timed interval
      // costs a generic metadata lookup in ArgumentParser (about 300
      // instructions and a dozen calls, which the fill's misses paid
      // until 2026-12-02).
      let handleKind = handle
      // Warm-up, untimed in the means: a process's first miss and first
      // plain registration pay one-time costs that are not the cache's
      // (code paged in, over 9p in the lab's VM; the runtime's first use
      // of each path; the monitor's first watch). They run on buffers of
      // their own, each miss beside a plain registration, and are then
      // invalidated and unmapped, so the fill starts with an empty cache.
      // The first pair is reported on its own (the cold miss).
      var cold: (miss: Duration, plain: Duration?)?
      if warmup > 0 {
        let spare = try SharedBuffer(byteCount: stride * warmup)
        touch(spare)
        for k in 0..<warmup {
          let address = spare.address + UInt64(k * stride)
          let start = ContinuousClock.now
          try cache.lease(address: address, length: bytes, access: access).release()
          let miss = ContinuousClock.now - start
          var plainTook: Duration?
          if let pd {
            let start = ContinuousClock.now
            let region = try pd.unsafeRegister(
              UnsafeMutableRawBufferPointer(start: spare.baseAddress + k * stride, count: bytes),
              access: access)
            plainTook = ContinuousClock.now - start
            try region.close()
          }
          if cold == nil { cold = (miss, plainTook) }
        }
        cache.invalidate(address: spare.address, length: stride * warmup)
      }
      let memory = try SharedBuffer(byteCount: stride * regions)
      touch(memory)
      let base = memory.address
      // Fill: one miss per buffer. With a device, up to 1,000 of them,
      // spread evenly over the fill, are paired with a plain registration
      // of a buffer like it (timed), so that each pair sees the same
      // machine and the same number of live registrations: an emulated
      // machine is too noisy to compare two separate loops, and
      // registering gets slower as registrations accumulate. The plain
      // registrations are kept until the fill ends, as the cache keeps its
      // own: one closed at once hands its kernel memory (the MR, its page
      // map, the umem) to the next registration from warm slab caches,
      // which a miss, whose registration stays, never gets; that made the
      // same ibv_reg_mr 15-25% cheaper on the plain side under rxe
      // (`--split-miss` times the one inside each miss). `--close-plain`
      // closes each at once instead.
      let plainEvery = (regions + 999) / 1000  // regions <= 10,000,000
      let plainCount = pd == nil ? 0 : (regions + plainEvery - 1) / plainEvery
      var plainTotal = Duration.zero
      var pairedMissTotal = Duration.zero
      var missTotal = Duration.zero
      var pairRatios: [Double] = []
      var pairDifferences: [Double] = []
      var plainTimes: [Double] = []
      // With --split-miss: each miss less the registration inside it.
      var ownParts: [Double] = []
      // And the ibv_reg_mr inside each.
      var missInnerTimes: [Double] = []
      if timer != nil {
        ownParts.reserveCapacity(regions)
        missInnerTimes.reserveCapacity(regions)
      }
      var firstMiss: Duration?
      var plainHeld: [SharedMemoryRegion] = []
      // The plain registrations get buffers of their own (one mapping
      // like the cache's, touched the same way): a second registration of
      // the same page finds it pinned and runs faster, whichever side goes
      // second.
      let plainMemory = try SharedBuffer(byteCount: stride * max(plainCount, 1))
      touch(plainMemory)
      // With --split-miss the plain registrations go through a timing
      // registrar like the cache's (its own timer), so that both sides
      // carry the same clock reads and the same call, and the plain side
      // measures what those add (`splitOverheadMedianNanoseconds`).
      let plainTimer = timer == nil ? nil : RegistrationTimer()
      let timedPlain = pd.flatMap { pd in plainTimer.map { Registrar.timing(pd, into: $0) } }
      var plainInnerTimes: [Double] = []
      var splitOverheads: [Double] = []
      /// Plain registration number `k`, timed; closed by the caller.
      func plainRegistration(_ k: Int, _ pd: SharedProtectionDomain) throws -> (
        Duration, SharedMemoryRegion
      ) {
        let address = plainMemory.baseAddress + k * stride
        if let timedPlain, let plainTimer {
          let before = plainTimer.nanoseconds.load(ordering: .relaxed)
          let start = ContinuousClock.now
          let made = try timedPlain.register(
            UInt64(UInt(bitPattern: address)), bytes, access)
          let took = ContinuousClock.now - start
          // Nanosecond sums of this process's registrations: no overflow.
          let inner = Double(plainTimer.nanoseconds.load(ordering: .relaxed) - before)
          // The verbs registrar always makes a region.
          if let region = made.region {
            plainInnerTimes.append(inner)
            splitOverheads.append(took.nanoseconds - inner)
            return (took, region)
          }
        }
        let start = ContinuousClock.now
        let region = try pd.unsafeRegister(
          UnsafeMutableRawBufferPointer(start: address, count: bytes), access: access)
        return (ContinuousClock.now - start, region)
      }
      let timedBefore = timer.map {
        ($0.nanoseconds.load(ordering: .relaxed), $0.count.load(ordering: .relaxed))
      }
      for i in 0..<regions {
        let address = base + UInt64(i * stride)
        let paired = pd != nil && i % plainEvery == 0
        // Pairs alternate which goes first, so neither side always
        // follows the other's work.
        let k = i / plainEvery
        let plainFirst = k % 2 == 0
        var plainRun: (Duration, SharedMemoryRegion)?
        if let pd, paired, plainFirst { plainRun = try plainRegistration(k, pd) }
        // The same kind of hold the timed lookups take.
        let registeringBefore = timer?.nanoseconds.load(ordering: .relaxed)
        let start = ContinuousClock.now
        switch handleKind {
        case .lease: try cache.lease(address: address, length: bytes, access: access).release()
        case .object: try cache.lookup(address: address, length: bytes, access: access).release()
        }
        let took = ContinuousClock.now - start
        if i == 0 { firstMiss = took }
        if let timer, let registeringBefore {
          // Nanosecond sums of this process's registrations: no overflow.
          let inner = timer.nanoseconds.load(ordering: .relaxed) - registeringBefore
          ownParts.append(took.nanoseconds - Double(inner))
          missInnerTimes.append(Double(inner))
        }
        if let pd, paired, !plainFirst { plainRun = try plainRegistration(k, pd) }
        missTotal += took
        if let (plainTook, region) = plainRun {
          if closePlain { try region.close() } else { plainHeld.append(region) }
          plainTotal += plainTook
          pairedMissTotal += took
          if plainTook > .zero { pairRatios.append(took.nanoseconds / plainTook.nanoseconds) }
          pairDifferences.append(took.nanoseconds - plainTook.nanoseconds)
          plainTimes.append(plainTook.nanoseconds)
        }
      }
      for region in plainHeld { try region.close() }
      plainHeld = []
      let missNanoseconds = missTotal.nanoseconds / Double(regions)
      var missRegistration: Double?
      if let timer, let (ns, n) = timedBefore {
        let count = timer.count.load(ordering: .relaxed) - n
        if count > 0 {
          missRegistration = Double(timer.nanoseconds.load(ordering: .relaxed) - ns) / Double(count)
        }
      }
      let plain = plainCount > 0 ? plainTotal.nanoseconds / Double(plainCount) : nil
      let pairedMiss = plainCount > 0 ? pairedMissTotal.nanoseconds / Double(plainCount) : nil
      let medianPairRatio = median(pairRatios)
      let medianPairDifference = median(pairDifferences)
      let ownMedian = median(ownParts)
      let missInnerMedian = median(missInnerTimes)
      let plainMedian = timer == nil ? nil : median(plainTimes)
      let plainInnerMedian = median(plainInnerTimes)
      let overheadMedian = median(splitOverheads)
      let ownNetMedian = ownMedian.flatMap { own in overheadMedian.map { own - $0 } }
      // Plain registrations kept, as the cache keeps its entries: whether a
      // miss's extra is the kernel's cost of many live MRs, not the cache's.
      // On the plain buffers (the cache's are pinned by its own entries).
      var plainKept: Double?
      if let pd, plainCount > 0 {
        var kept: [SharedMemoryRegion] = []
        let start = ContinuousClock.now
        for k in 0..<plainCount {
          kept.append(
            try pd.unsafeRegister(
              UnsafeMutableRawBufferPointer(
                start: plainMemory.baseAddress + k * stride, count: bytes),
              access: access))
        }
        plainKept = (ContinuousClock.now - start).nanoseconds / Double(kept.count)
        for region in kept { try region.close() }
      }
      let before = cache.statistics
      // Plain locals: the closures below must not read the option wrappers.
      let threadCount = threads
      let regionCount = regions
      let repeatCount = repeats
      let perThread = max(lookups / threadCount, 1)
      let elapsed = Mutex<[Duration]>([])
      let cpu = Mutex<[Double]>([])
      let failure = Mutex<String?>(nil)
      let group = DispatchGroup()
      let ready = Atomic<Int>(0)
      for t in 0..<threadCount {
        group.enter()
        Thread.detachNewThread {
          // Random order, drawn before the clock starts.
          var generator = SplitMix(seed: UInt64(t) &+ 0x9e37_79b9)
          let order = (0..<perThread).map { _ in
            base + UInt64(Int(generator.next() % UInt64(regionCount)) * stride)
          }
          ready.add(1, ordering: .acquiringAndReleasing)
          while ready.load(ordering: .acquiring) < threadCount {}
          var runs: [(wall: Duration, cpu: Double)] = []
          do {
            for _ in 0..<repeatCount {
              let cpuStart = threadCPUNanoseconds()
              let start = ContinuousClock.now
              switch handleKind {
              case .lease:
                for address in order {
                  try cache.lease(address: address, length: bytes, access: access).release()
                }
              case .object:
                for address in order {
                  try cache.lookup(address: address, length: bytes, access: access).release()
                }
              }
              runs.append((ContinuousClock.now - start, threadCPUNanoseconds() - cpuStart))
            }
          } catch {
            failure.withLock { $0 = "\(error)" }
          }
          if !runs.isEmpty {
            // The median run (by wall-clock time) and its CPU time.
            let median = runs.sorted { $0.wall < $1.wall }[runs.count / 2]
            elapsed.withLock { $0.append(median.wall) }
            cpu.withLock { $0.append(median.cpu) }
          }
          group.leave()
        }
      }
      // Misses beside the timed lookups (--background-misses): each takes
      // the write lock, registers and is invalidated while held, so its
      // deregistration runs at release, outside the lock.
      let stopBackground = Atomic<Bool>(false)
      let backgroundDone = DispatchGroup()
      let backgroundCount = Atomic<Int>(0)
      var backgroundSpare: SharedBuffer?
      if backgroundMisses {
        let spare = try SharedBuffer(byteCount: stride * 64)
        touch(spare)
        backgroundSpare = spare
        let spareBase = spare.address
        backgroundDone.enter()
        Thread.detachNewThread {
          var k = 0
          while !stopBackground.load(ordering: .relaxed) {
            // k % 64 x stride (at most 1 GiB + a page) stays inside the
            // spare mapping just made: no overflow.
            let address = spareBase + UInt64(k % 64 * stride)
            do {
              let lease = try cache.lease(address: address, length: bytes, access: access)
              cache.invalidate(address: address, length: bytes)
              lease.release()
            } catch {
              failure.withLock { $0 = "background miss: \(error)" }
              break
            }
            backgroundCount.add(1, ordering: .relaxed)
            k &+= 1
          }
          backgroundDone.leave()
        }
      }
      group.wait()
      stopBackground.store(true, ordering: .relaxed)
      backgroundDone.wait()
      let backgroundMade = backgroundMisses ? backgroundCount.load(ordering: .relaxed) : nil
      if let backgroundSpare {
        cache.invalidate(address: backgroundSpare.address, length: stride * 64)
      }
      if let message = failure.withLock({ $0 }) {
        printError("umem cache-bench: \(message)")
        throw ExitCode(1)
      }
      let after = cache.statistics
      let times = elapsed.withLock { $0 }
      let hitNanoseconds =
        times.reduce(0) { $0 + $1.nanoseconds } / Double(times.count) / Double(perThread)
      let cpuTimes = cpu.withLock { $0 }
      let hitCPU = cpuTimes.reduce(0, +) / Double(cpuTimes.count) / Double(perThread)
      cache.close()
      let report = Report(
        registrar: registrar.rawValue, device: pd?.context.name, regions: regions,
        lookups: perThread * threads * repeats, threads: threads, repeats: repeats, size: bytes,
        handle: handle.rawValue,
        hits: after.hits - before.hits, misses: after.misses - before.misses,
        registrationsAvoided: after.registrationsAvoided, hitNanoseconds: hitNanoseconds,
        hitThreadCPUNanoseconds: hitCPU,
        missNanoseconds: missNanoseconds, plainRegisterNanoseconds: plain,
        pairedMissNanoseconds: pairedMiss,
        missOverPlain: plain.flatMap { p in pairedMiss.map { $0 / p } },
        missOverPlainMedian: medianPairRatio,
        missMinusPlainMedianNanoseconds: medianPairDifference, plainSamples: plainCount,
        plainKeptRegisterNanoseconds: plainKept,
        missOverPlainKept: plainKept.map { missNanoseconds / $0 }, warmup: warmup,
        smallPages: smallPages,
        plainClosedAtOnce: closePlain, backgroundMisses: backgroundMade,
        missRegistrationNanoseconds: missRegistration,
        missOwnMedianNanoseconds: ownMedian,
        plainRegisterMedianNanoseconds: plainMedian,
        missOwnOverPlainMedian: ownMedian.flatMap { own in plainMedian.map { 1 + own / $0 } },
        missRegistrationMedianNanoseconds: missInnerMedian,
        plainInnerMedianNanoseconds: plainInnerMedian,
        splitOverheadMedianNanoseconds: overheadMedian,
        missOwnNetMedianNanoseconds: ownNetMedian,
        missOwnNetOverPlainMedian: ownNetMedian.flatMap { net in
          plainInnerMedian.map { 1 + net / $0 }
        },
        coldMissNanoseconds: (cold?.miss ?? firstMiss).map(\.nanoseconds),
        coldPlainRegisterNanoseconds: cold?.plain.map(\.nanoseconds),
        statistics: cache.statistics)
      if json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(report), as: UTF8.self))
      } else {
        print("registrar   \(report.registrar)\(report.device.map { " on \($0)" } ?? "")")
        print("monitor     \(report.statistics.monitor)")
        print(
          "regions     \(regions) x \(bytes) B, \(report.lookups) lookups on \(threads) thread(s), "
            + "each a \(handle.rawValue)")
        print(
          "hits        \(report.hits) (\(format(hitNanoseconds)) per lookup+release, "
            + "\(format(hitCPU)) of thread CPU time)")
        print("misses      \(report.misses) while timed; fill \(format(missNanoseconds)) per miss")
        if let coldMiss = report.coldMissNanoseconds {
          print(
            "cold miss   \(format(coldMiss)) (the process's first)"
              + (report.coldPlainRegisterNanoseconds.map { ", first plain \(format($0))" } ?? "")
              + (warmup > 0 ? "; \(warmup) warm-up misses before the fill" : ""))
        }
        if let plain {
          print(
            "plain reg   \(format(plain)) per ibv_reg_mr, miss/plain "
              + String(format: "%.2f", report.missOverPlain ?? .nan)
              + " over the same \(plainCount) buffers (median of pairs "
              + String(format: "%.2f", report.missOverPlainMedian ?? .nan) + "; "
              + format(report.missMinusPlainMedianNanoseconds ?? .nan) + " added, median)")
        }
        if let ownMedian {
          print(
            "own part    \(format(ownMedian)) per miss besides its ibv_reg_mr (median)"
              + (report.missOwnOverPlainMedian.map {
                ", 1 + own/plain median " + String(format: "%.3f", $0)
              } ?? ""))
        }
        if let overheadMedian, let ownNetMedian, let ratio = report.missOwnNetOverPlainMedian {
          print(
            "own net     \(format(ownNetMedian)) per miss less the split's own "
              + "\(format(overheadMedian)) (median over the plain registrations timed alike), "
              + "1 + net/plain median " + String(format: "%.3f", ratio))
        }
        if let plainKept {
          print(
            "plain kept  \(format(plainKept)) per ibv_reg_mr with all kept, miss/kept "
              + String(format: "%.2f", missNanoseconds / plainKept))
        }
        print("avoided     \(report.registrationsAvoided) registrations")
      }
    } catch let exit as ExitCode {
      throw exit
    } catch {
      printError("umem cache-bench: \(error)")
      throw ExitCode(1)
    }
  }
}

extension CacheBench {
  /// Writes every byte of `buffer` (so that registering finds its pages
  /// present), after asking for small pages with `--small-pages`.
  func touch(_ buffer: SharedBuffer) {
    buffer.withUnsafeMutableBytes { bytes in
      if smallPages, let base = bytes.baseAddress {
        // Advice only: where the kernel has no THP it fails, and the
        // pages are small anyway.
        _ = madvise(base, bytes.count, MADV_NOHUGEPAGE)
      }
      _ = bytes.initializeMemory(as: UInt8.self, repeating: 1)
    }
  }

  func format(_ nanoseconds: Double) -> String {
    nanoseconds >= 10_000
      ? "\((nanoseconds / 1000 * 10).rounded() / 10) µs"
      : "\((nanoseconds * 10).rounded() / 10) ns"
  }
}

/// The middle value of `values` (the upper one of the two middle values
/// when there is an even number); nil when there are none.
func median(_ values: [Double]) -> Double? {
  values.isEmpty ? nil : values.sorted()[values.count / 2]
}

/// The calling thread's CPU time so far, in nanoseconds.
func threadCPUNanoseconds() -> Double {
  var now = timespec()
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
  return Double(now.tv_sec) * 1e9 + Double(now.tv_nsec)
}

/// A small deterministic generator (SplitMix64), so runs are repeatable.
struct SplitMix {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    var z = state
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }
}
