import ArgumentParser
import Phyr
import ToolSupport
import Umem
import Verbs

#if canImport(Glibc)
  import Glibc
#endif

/// `umem inspect`: allocate a buffer, pin it, read where it lives physically,
/// plan its registration, and optionally register it (issue 4).
///
///     umem inspect --size SIZE [--backing plain|thp|hugetlb-2m|hugetlb-1g]
///                  [--offset BYTES] [--page-sizes BITMAP | --device NAME]
///                  [--iova auto|va|zero] [--register] [--json]
///                  [--rules current|newest|6.15|before-6.15] [--max-segment-size BYTES]
///
/// The JSON holds the full byte-exact phyr list as hex `[addr, len]` pairs
/// with `address`, `length`, `iova` and `pageSizes`, so `umem plan` can
/// recompute the plan fields (same names as `umem plan --json`).
struct Inspect: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Pin a buffer and show its phyr list, backing pages and registration plan.",
    discussion: """
      The buffer starts --offset bytes into an allocation aligned for its backing. Page \
      sizes come from --page-sizes, else from --device's page_size_cap, else 0xfffff000. \
      Physical addresses need CAP_SYS_ADMIN; without it the report says so and gives the \
      virtual layout and backing page sizes only.
      """)

  @Option(help: "Buffer size: 4096, 0x1000, 64K, 16M, 1G.") var size: String
  @Option(help: "plain, thp, hugetlb-2m or hugetlb-1g.") var backing = "plain"
  @Option(help: "Start this many bytes into the aligned allocation.") var offset = "0"
  @Option(help: "HCA page sizes as a bitmap (page_size_cap), e.g. 0xfffff000.") var pageSizes:
    String?
  @Option(help: "Device whose page_size_cap to plan for, and to register on.") var device: String?
  @Option(help: "IOVA policy: auto (planner's choice), va (the address), zero.") var iova = "auto"
  @Option(help: "Access flags for pinning and registration.") var access =
    "local-write,remote-read,remote-write"
  @Flag(help: "Register the buffer on the device with the plan and report keys and timings.")
  var register = false
  @Flag(help: "Print one JSON object.") var json = false
  @Option(help: "Kernel rule set: \(RulesChoice.names) (default: the running kernel's).")
  var rules = "current"
  @Option(
    help:
      "The device's scatter-list segment limit in bytes (default 0xffffffff, rxe's); only the rules before 6.15 use it."
  )
  var maxSegmentSize: String?
  @Option(help: .hidden) var bench: Int?
  @Flag(help: .hidden) var forkCheck = false

  func validate() throws {
    guard let bytes = parseSize(size), bytes > 0, bytes <= UInt64(Int.max) / 2 else {
      throw ValidationError("--size '\(size)' is not a positive size such as 4096, 64K, 16M or 1G")
    }
    // With --size at most 2^62, this bound keeps size + offset below 2^63,
    // so the Int arithmetic below cannot overflow.
    guard let start = parseSize(offset), start <= UInt64(Int.max) - bytes else {
      throw ValidationError(
        "--offset '\(offset)' is not a size, or --size plus --offset reaches 2^63 bytes")
    }
    guard UmemBuffer.Backing(rawValue: backing) != nil else {
      throw ValidationError("--backing must be plain, thp, hugetlb-2m or hugetlb-1g")
    }
    if let pageSizes, parseNumber(pageSizes) == nil {
      throw ValidationError("--page-sizes '\(pageSizes)' is not a number (hex 0x... or decimal)")
    }
    if let pageSizes, parseNumber(pageSizes) == 0 {
      throw ValidationError(
        "--page-sizes 0 offers no page size; give the device's page_size_cap, such as 0xfffff000")
    }
    if pageSizes != nil && device != nil {
      throw ValidationError("give --page-sizes or --device, not both")
    }
    guard ["auto", "va", "zero"].contains(iova) else {
      throw ValidationError("--iova must be auto, va or zero")
    }
    do {
      _ = try RulesChoice.parse(rules: rules, maxSegmentSize: maxSegmentSize)
    } catch {
      throw ValidationError("\(error)")
    }
    guard MemoryAccess(parsing: access) != nil else {
      throw ValidationError("--access '\(access)' has an unknown flag")
    }
    if let bench, bench < 1 { throw ValidationError("--bench needs at least 1 run") }
  }

  func run() throws {
    do {
      if let bench {
        try runBenchmark(runs: bench)
      } else {
        try inspect()
      }
    } catch let error as UmemError {
      printError("umem inspect: \(error)")
      throw ExitCode(1)
    } catch let error as VerbsError {
      printError("umem inspect: \(error)")
      throw ExitCode(1)
    }
  }

  // Both checked in validate(): below 2^63 together.
  var bytes: Int { Int(parseSize(size)!) }
  var start: Int { Int(parseSize(offset)!) }
  var flags: MemoryAccess { MemoryAccess(parsing: access)! }
  var choice: RulesChoice { try! RulesChoice.parse(rules: rules, maxSegmentSize: maxSegmentSize) }

  func policy(address: UInt64) -> IOVAPolicy {
    switch iova {
    case "va": .keep(address)
    case "zero": .zeroBased
    default: .any
    }
  }

  func inspect() throws {
    let kind = UmemBuffer.Backing(rawValue: backing)!
    let buffer = try UmemBuffer(byteCount: bytes + start, backing: kind)
    let clock = ContinuousClock()
    let t0 = clock.now
    let umem = try Umem(pinning: buffer, offset: start, length: bytes, access: flags)
    let t1 = clock.now
    let layout = try umem.resolve()
    let t2 = clock.now
    let backingReport = try umem.backing()
    let obtained = try buffer.obtained()
    var bitmap = pageSizes.flatMap(parseNumber) ?? 0xffff_f000
    var deviceName: String? = nil
    var registration: [(String, JSON)]? = nil
    var fork: [(String, JSON)]? = nil
    if device != nil || register {
      let context = try DeviceContext.open(name: device)
      deviceName = context.name
      if pageSizes == nil { bitmap = try context.attributes().pageSizeCapability }
      if register {
        let pd = try context.allocateProtectionDomain()
        registration = try registerTwice(pd: pd, umem: umem, layout: layout, pageSizes: bitmap)
        if forkCheck {
          fork = try registerAndFork(pd: pd, umem: umem, buffer: buffer, layout: layout)
        }
      }
    }
    if forkCheck && fork == nil {
      fork = try forkReport(umem: umem, buffer: buffer, layout: layout, registered: false)
    }
    let t3 = clock.now
    let plan =
      try layout.phyrs == nil
      ? nil
      : layout.plan(
        pageSizes: PageSizes(pageSizeCap: bitmap), iova: policy(address: umem.address),
        rules: choice.rules, maxSegmentSize: choice.maxSegmentSize)
    let t4 = clock.now
    let timings: [(String, JSON)] = [
      ("pinNanoseconds", .double((t1 - t0).nanoseconds)),
      ("resolveNanoseconds", .double((t2 - t1).nanoseconds)),
      ("planNanoseconds", .double((t4 - t3).nanoseconds)),
    ]
    if json {
      var fields = Self.jsonFields(
        layout: layout, plan: plan, pageSizes: bitmap, policy: iova, backing: backingReport,
        obtained: obtained)
      if plan != nil { fields += Plan.rulesFields(choice) }
      if let deviceName { fields.append(("device", .string(deviceName))) }
      fields.append(("timings", .object(timings)))
      if let registration { fields.append(("register", .object(registration))) }
      if let fork { fields.append(("fork", .object(fork))) }
      print(JSON.object(fields).text)
    } else {
      printReport(
        layout: layout, plan: plan, bitmap: bitmap, backing: backingReport, obtained: obtained,
        timings: (t1 - t0, t2 - t1, t4 - t3), registration: registration, fork: fork)
    }
  }

  // MARK: - Registration

  /// Registers without a plan, then with one, and reports both.
  func registerTwice(
    pd: borrowing ProtectionDomain, umem: borrowing Umem, layout: UmemLayout, pageSizes: UInt64
  ) throws -> [(String, JSON)] {
    let clock = ContinuousClock()
    let t0 = clock.now
    let plain = try pd.register(umem, access: flags)
    let t1 = clock.now
    try plain.deregister()
    let t2 = clock.now
    // The planned path as a caller would use it: resolve, plan, register.
    let fresh = try umem.resolve()
    let plan = try fresh.plan(
      pageSizes: PageSizes(pageSizeCap: pageSizes), iova: policy(address: umem.address))
    let t3 = clock.now
    let planned = try pd.register(umem, plan: plan, access: flags)
    let t4 = clock.now
    let result: [(String, JSON)] = [
      ("lkey", .string(hex(UInt64(planned.region.lkey)))),
      ("rkey", .string(hex(UInt64(planned.region.rkey)))),
      ("iova", .string(hex(planned.region.iova))),
      ("registerNanoseconds", .double((t1 - t0).nanoseconds)),
      ("deregisterNanoseconds", .double((t2 - t1).nanoseconds)),
      ("resolveAndPlanNanoseconds", .double((t3 - t2).nanoseconds)),
      ("plannedRegisterNanoseconds", .double((t4 - t3).nanoseconds)),
      ("planOverheadPercent", .double((t3 - t2).nanoseconds / (t1 - t0).nanoseconds * 100)),
    ]
    try planned.deregister()
    return result
  }

  /// Registers (a long-term DMA pin in the kernel), then forks.
  func registerAndFork(
    pd: borrowing ProtectionDomain, umem: borrowing Umem, buffer: borrowing UmemBuffer,
    layout: UmemLayout
  ) throws -> [(String, JSON)] {
    let region = try pd.register(umem, access: flags)
    let report = try forkReport(umem: umem, buffer: buffer, layout: layout, registered: true)
    try region.deregister()
    return report
  }

  // MARK: - Fork

  /// Forks a child that reads its own page frames for the buffer and compares
  /// them with the parent's; then the parent writes every page while the
  /// child lives and checks whether its own frames moved.
  func forkReport(
    umem: borrowing Umem, buffer: borrowing UmemBuffer, layout: UmemLayout, registered: Bool
  ) throws -> [(String, JSON)] {
    var toParent: [Int32] = [0, 0]
    var toChild: [Int32] = [0, 0]
    guard pipe(&toParent) == 0, pipe(&toChild) == 0 else {
      throw UmemError(
        .other, operation: "pipe", errno: errno, message: "no pipe for the fork check")
    }
    let pid = Glibc.fork()
    if pid == 0 {
      // Child: compare frames, report "shared copied locked", wait, leave.
      var shared = 0
      var copied = 0
      if let parentPhyrs = layout.phyrs, let mine = try? umem.resolve(), let own = mine.phyrs {
        let a = Self.frames(parentPhyrs, layout)
        let b = Self.frames(own, mine)
        for (x, y) in zip(a, b) { if x == y { shared += 1 } else { copied += 1 } }
      }
      let locked = MemoryLockStatus.current().lockedBytes
      let line = Array("\(shared) \(copied) \(locked)\n".utf8)
      _ = line.withUnsafeBytes { write(toParent[1], $0.baseAddress, $0.count) }
      var byte: UInt8 = 0
      _ = read(toChild[0], &byte, 1)
      _exit(0)
    }
    guard pid > 0 else {
      throw UmemError(.other, operation: "fork", errno: errno, message: "fork failed")
    }
    close(toParent[1])
    close(toChild[0])
    var answer = [UInt8](repeating: 0, count: 128)
    let n = answer.withUnsafeMutableBytes { read(toParent[0], $0.baseAddress, $0.count) }
    let parts = String(decoding: answer[0..<max(n, 0)], as: UTF8.self)
      .split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int($0) }
    // Write one byte in every page while the child still shares them.
    buffer.withUnsafeMutableBytes { bytes in
      var i = Int(umem.address - buffer.address)
      while i < bytes.count {
        bytes[i] &+= 1
        i += 4096
      }
    }
    let moved = layout.phyrs == nil ? [] : try umem.verify(layout)
    var done: UInt8 = 1
    _ = write(toChild[1], &done, 1)
    var status: Int32 = 0
    _ = waitpid(pid, &status, 0)
    close(toParent[0])
    close(toChild[1])
    return [
      ("registered", .bool(registered)),
      ("forkProtection", .string(ForkProtection.current.description)),
      ("pages", .number(Int64(layout.pageCount))),
      ("childSharedPages", .number(Int64(parts.count == 3 ? parts[0] : -1))),
      ("childCopiedPages", .number(Int64(parts.count == 3 ? parts[1] : -1))),
      ("childLockedBytes", .number(Int64(parts.count == 3 ? parts[2] : -1))),
      ("parentMovedPagesAfterWrite", .number(Int64(moved.count))),
    ]
  }

  /// The frame of each page according to a layout's phyrs. The layout is
  /// one this process pinned and resolved, so its addresses and run offsets
  /// stay below 2^64.
  static func frames(_ phyrs: PhyrList, _ layout: UmemLayout) -> [UInt64] {
    var out: [UInt64] = []
    let start = layout.address & ~4095
    var page = start
    var runs = phyrs.makeIterator()
    var run = runs.next()
    var used: UInt64 = 0
    while let current = run, page < layout.address + layout.length {
      out.append((current.address + used) >> 12)
      let lo = max(layout.address, page)
      let hi = min(layout.address + layout.length, page + 4096)
      used += hi - lo
      if used >= current.length {
        run = runs.next()
        used = 0
      }
      page += 4096
    }
    return out
  }

  // MARK: - Benchmark

  /// Pin + pagemap + coalesce, `runs` times after one warm-up; prints one
  /// line per run set (best and median), like `pin_ref`.
  func runBenchmark(runs: Int) throws {
    let kind = UmemBuffer.Backing(rawValue: backing)!
    let buffer = try UmemBuffer(byteCount: bytes + start, backing: kind)
    // Warm-up: fault everything in once (not timed).
    do {
      let warm = try Umem(pinning: buffer, offset: start, length: bytes, access: flags)
      try warm.unpin()
    }
    let clock = ContinuousClock()
    var times: [Double] = []
    var runCount = 0
    var total: UInt64 = 0
    for _ in 0..<runs {
      let t0 = clock.now
      let umem = try Umem(pinning: buffer, offset: start, length: bytes, access: flags)
      let layout = try umem.resolve()
      let t1 = clock.now
      try umem.unpin()
      times.append((t1 - t0).nanoseconds)
      runCount = layout.phyrs?.count ?? -1
      total = layout.phyrs?.totalLength ?? 0
    }
    times.sort()
    let best = times[0]
    let median = times[times.count / 2]
    let gib = Double(bytes) / Double(1 << 30)
    let obtained = try buffer.obtained()
    if json {
      print(
        JSON.object([
          ("impl", .string("swift")), ("backing", .string(backing)),
          ("length", .unsigned(UInt64(bytes))), ("runs", .number(Int64(runCount))),
          ("phyrBytes", .unsigned(total)), ("bestNanoseconds", .double(best)),
          ("medianNanoseconds", .double(median)), ("bestGiBPerSecond", .double(gib / (best / 1e9))),
          ("transparentHugeBytes", .unsigned(obtained.transparentHugeBytes)),
        ]).text)
    } else {
      print(
        "swift \(backing) \(humanBytes(UInt64(bytes))): best \(format(best)), median \(format(median)), "
          + "\(String(format: gib / (best / 1e9))) GiB/s, \(runCount) runs, "
          + "THP \(obtained.transparentHugeBytes >> 20) MiB")
    }
  }

  func format(_ nanoseconds: Double) -> String {
    nanoseconds >= 1_000_000
      ? "\((nanoseconds / 1_000_000 * 1000).rounded() / 1000) ms"
      : "\((nanoseconds / 1000 * 10).rounded() / 10) µs"
  }

  // MARK: - Output

  static func jsonFields(
    layout: UmemLayout, plan: RegistrationPlan?, pageSizes: UInt64, policy: String,
    backing: BackingReport, obtained: UmemBuffer.Obtained
  ) -> [(String, JSON)] {
    var fields: [(String, JSON)] = [
      ("address", .string(hex(layout.address))),
      ("length", .string(hex(layout.length))),
      ("pageSizes", .string(hex(pageSizes))),
      ("iovaPolicy", .string(policy)),
      ("pages", .number(Int64(layout.pageCount))),
      ("physicalAddressesAvailable", .bool(layout.physicalAddressesAvailable)),
      ("unavailableReason", layout.unavailableReason.map { .string($0) } ?? .null),
      ("notPresentPages", .array(layout.notPresentPages.map { .string(hex($0)) })),
    ]
    if let phyrs = layout.phyrs {
      fields.append(("runs", .number(Int64(phyrs.count))))
      fields.append(("largestRun", .string(hex(phyrs.largestRunLength))))
      fields.append(
        (
          "phyrs",
          .array(phyrs.map { .array([.string(hex($0.address)), .string(hex($0.length))]) })
        ))
    } else {
      fields.append(("runs", .null))
      fields.append(("largestRun", .null))
      fields.append(("phyrs", .null))
    }
    // The plan, with `umem plan --json`'s names.
    if let plan {
      fields += [
        ("pageSize", .string(hex(plan.pageSize ?? 0))),
        ("blockCount", .unsigned(plan.pageSize == nil ? 0 : plan.blockCount)),
        ("firstBlock", plan.firstBlock.map { .string(hex($0)) } ?? .null),
        ("lastBlock", plan.lastBlock.map { .string(hex($0)) } ?? .null),
        ("iova", .string(hex(plan.iova))),
        ("dmaOffset", .string(hex(plan.dmaOffset))),
        ("limit", .string(Plan.limitText(plan.iovaPlan.limit))),
        ("tableEntries", .unsigned(plan.blockCount)),
        ("tableBytes", .unsigned(plan.tableBytes)),
        ("tableEntries4K", .unsigned(plan.entriesAt4K)),
        ("tableBytes4K", .unsigned(plan.tableBytesAt4K)),
      ]
    } else {
      for key in ["pageSize", "blockCount", "firstBlock", "lastBlock", "iova", "dmaOffset"] {
        fields.append((key, .null))
      }
    }
    fields.append(
      (
        "backing",
        .array(
          backing.ranges.map {
            .object([
              ("address", .string(hex($0.address))), ("length", .string(hex($0.length))),
              ("pageSize", .string(hex($0.pageSize))), ("kind", .string($0.kind.rawValue)),
            ])
          })
      ))
    fields.append(("transparentHugeLocated", .bool(backing.locatedTransparentHugePages)))
    fields.append(
      (
        "obtained",
        .object([
          ("requested", .string(obtained.requested.rawValue)),
          ("kernelPageSize", .string(hex(obtained.kernelPageSize))),
          ("transparentHugeBytes", .unsigned(obtained.transparentHugeBytes)),
          ("transparentHugeMode", obtained.transparentHugeMode.map { .string($0) } ?? .null),
        ])
      ))
    return fields
  }

  func printReport(
    layout: UmemLayout, plan: RegistrationPlan?, bitmap: UInt64, backing: BackingReport,
    obtained: UmemBuffer.Obtained, timings: (Duration, Duration, Duration),
    registration: [(String, JSON)]?, fork: [(String, JSON)]?
  ) {
    print(
      "buffer        \(hex(layout.address)), \(layout.length) bytes (\(humanBytes(layout.length))), \(layout.pageCount) pages"
    )
    print("allocation    \(obtained)")
    print(
      "pinned        in \(format(timings.0.nanoseconds)); pagemap read in \(format(timings.1.nanoseconds))"
    )
    if let phyrs = layout.phyrs {
      print(
        "phyrs         \(phyrs.count) runs, largest \(humanBytes(phyrs.largestRunLength)), first \(phyrs.first.map(\.description) ?? "-")"
      )
    } else if !layout.physicalAddressesAvailable {
      print("phyrs         unavailable: \(layout.unavailableReason ?? "")")
    } else {
      print("phyrs         incomplete: \(layout.notPresentPages.count) pages not present")
    }
    let kinds = backing.ranges.reduce(into: [String: UInt64]()) {
      $0["\($1.kind.rawValue) \(PageSizes.describe($1.pageSize))", default: 0] += $1.length
    }
    print(
      "backing       "
        + kinds.sorted { $0.key < $1.key }.map { "\($0.key): \(humanBytes($0.value))" }.joined(
          separator: ", ")
        + (backing.locatedTransparentHugePages
          ? "" : " (THP not located: needs root for /proc/kpageflags)"))
    print("page sizes    \(PageSizes(pageSizeCap: bitmap)) (\(hex(bitmap)))")
    if let plan {
      print("rules         \(choice.line)")
      print(
        "plan          \(plan.pageSize.map(PageSizes.describe) ?? "none") pages, \(plan.blockCount) blocks at iova \(hex(plan.iova)), dma offset \(hex(plan.dmaOffset))"
      )
      print(
        "table         \(plan.tableBytes) B at the chosen size vs \(plan.tableBytesAt4K) B at 4K (\(plan.entriesAt4K) entries)"
      )
      print("limited by    \(Plan.limitText(plan.iovaPlan.limit))")
      print("planned in    \(format(timings.2.nanoseconds))")
    }
    if let registration {
      for (key, value) in registration { print("register      \(key) \(value.text)") }
    }
    if let fork {
      for (key, value) in fork { print("fork          \(key) \(value.text)") }
    }
  }
}

extension String {
  /// Two decimals.
  init(format value: Double) {
    self = String((value * 100).rounded() / 100)
  }
}
