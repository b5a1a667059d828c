import ArgumentParser
import ToolSupport
import Verbs

/// `umem register`: allocate a buffer, register it, report, deregister.
struct Register: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Register a page-aligned buffer and report its keys and the time it took.")

  @Option(help: "Buffer size: 4096, 0x1000, 64K, 16M, 1G.") var size: String
  @Option(
    help:
      "Comma-separated access flags: \(MemoryAccess.named.map(\.name).joined(separator: ",")) or none."
  )
  var access = "local-write"
  @Option(help: "IOVA for the first byte (default: the buffer's address).") var iova: String?
  @Option(help: "Device name (default: the first device).") var device: String?
  @Option(help: "Register and deregister this many times and report the mean.") var cycles: Int = 1
  @Option(
    help:
      "Register and deregister on this many threads at once, each over its own buffer, sharing one protection domain (the owned tier); --cycles each."
  )
  var threads: Int = 1
  @Option(
    help:
      "API tier: scoped (DeviceContext, ProtectionDomain), owned (SharedDeviceContext, SharedProtectionDomain), or auto (owned when --threads is above 1)."
  )
  var tier: Tier = .auto

  enum Tier: String, ExpressibleByArgument, CaseIterable {
    case auto, scoped, owned
  }
  @Flag(
    help:
      "After the cycles, move data through a fresh MR with RDMA WRITE and READ between two queue pairs."
  )
  var checkRdma = false
  @Flag(help: "Print one JSON object.") var json = false

  func validate() throws {
    guard let bytes = parseSize(size), bytes > 0, bytes <= UInt64(Int.max) else {
      throw ValidationError("--size '\(size)' is not a positive size such as 4096, 64K, 16M or 1G")
    }
    _ = bytes
    guard MemoryAccess(parsing: access) != nil else {
      throw ValidationError(
        "--access '\(access)' has an unknown flag; known: \(MemoryAccess.named.map(\.name).joined(separator: ","))"
      )
    }
    if let iova, parseNumber(iova) == nil {
      throw ValidationError("--iova '\(iova)' is not a number (hex 0x... or decimal)")
    }
    guard cycles >= 1 else { throw ValidationError("--cycles must be at least 1") }
    guard threads >= 1, threads <= 1024 else {
      throw ValidationError("--threads must be 1 to 1024")
    }
    guard threads == 1 || tier != .scoped else {
      throw ValidationError(
        "--threads above 1 needs the owned tier (a scoped protection domain belongs to one "
          + "thread); leave out --tier or use --tier owned")
    }
    guard !checkRdma || tier != .owned else {
      throw ValidationError("--check-rdma runs on the scoped tier; leave out --tier owned")
    }
  }

  func run() throws {
    let bytes = Int(parseSize(size)!)
    let flags = MemoryAccess(parsing: access)!
    let chosenIOVA = iova.flatMap(parseNumber)
    let owned = tier == .owned || (tier == .auto && threads > 1)
    do {
      let regionsBefore = openMemoryRegions()
      let before = MemoryLockStatus.current()
      let report: Report
      let deviceName: String
      var check: String? = nil
      if owned {
        let result = try SharedRegistrationRun(
          device: device, bytes: bytes, access: flags, iova: chosenIOVA, threads: threads,
          cycles: cycles
        ).run()
        deviceName = result.deviceName
        report = Report(
          address: result.address, iova: result.iova, lkey: result.lkey, rkey: result.rkey,
          registerNanoseconds: result.registerNanoseconds,
          deregisterNanoseconds: result.deregisterNanoseconds,
          registrationsPerSecond: result.registrationsPerSecond)
      } else {
        let context = try DeviceContext.open(name: device)
        deviceName = context.name
        let pd = try context.allocateProtectionDomain()
        let buffer = try PageAlignedBuffer(byteCount: bytes)
        report = try measure(pd: pd, buffer: buffer, access: flags, iova: chosenIOVA)
        check = checkRdma ? try loopbackCheck(context: context) : nil
      }
      let after = MemoryLockStatus.current()
      let regionsAfter = openMemoryRegions()
      if json {
        print(
          JSON.object([
            ("device", .string(deviceName)), ("tier", .string(owned ? "owned" : "scoped")),
            ("address", .string(hex(report.address))),
            ("length", .unsigned(UInt64(bytes))), ("iova", .string(hex(report.iova))),
            ("access", .string(flags.description)), ("lkey", .string(hex(UInt64(report.lkey)))),
            ("rkey", .string(hex(UInt64(report.rkey)))), ("threads", .number(Int64(threads))),
            ("cycles", .number(Int64(cycles))),
            ("registerNanoseconds", .double(report.registerNanoseconds)),
            ("deregisterNanoseconds", .double(report.deregisterNanoseconds)),
            ("registrationsPerSecond", .double(report.registrationsPerSecond)),
            ("pinnedBytesBefore", .unsigned(before.pinnedBytes)),
            ("pinnedBytesAfter", .unsigned(after.pinnedBytes)),
            ("openRegionsBefore", regionsBefore.map { .number(Int64($0)) } ?? .null),
            ("openRegionsAfter", regionsAfter.map { .number(Int64($0)) } ?? .null),
            ("rdmaCheck", check.map { .string($0) } ?? .null),
          ]).text)
      } else {
        print("device      \(deviceName)")
        print(
          "tier        \(owned ? "owned (SharedProtectionDomain)" : "scoped (ProtectionDomain)")")
        print("address     \(hex(report.address))")
        print("length      \(bytes) (\(humanBytes(UInt64(bytes))))")
        print("iova        \(hex(report.iova))")
        print("access      \(flags)")
        print("lkey        \(hex(UInt64(report.lkey)))")
        print("rkey        \(hex(UInt64(report.rkey)))")
        let note =
          threads > 1
          ? " (mean of \(threads) threads x \(cycles) cycles)"
          : cycles > 1 ? " (mean of \(cycles) cycles)" : ""
        print("register    \(format(report.registerNanoseconds))\(note)")
        print("deregister  \(format(report.deregisterNanoseconds))\(note)")
        print("rate        \(Int(report.registrationsPerSecond.rounded())) registrations/s")
        print(
          "pinned      \(before.pinnedBytes / 1024) KiB before, \(after.pinnedBytes / 1024) KiB after"
        )
        if let regionsBefore, let regionsAfter {
          print("open MRs    \(regionsBefore) before, \(regionsAfter) after")
        }
        if let check { print("rdma check  \(check)") }
      }
      if before.pinnedBytes != after.pinnedBytes || regionsBefore != regionsAfter {
        printError("umem register: leak: pinned or open regions differ before and after")
        throw ExitCode(1)
      }
    } catch let exit as ExitCode {
      throw exit
    } catch {
      printError("umem register: \(error)")
      throw ExitCode(1)
    }
  }

  struct Report {
    var address: UInt64
    var iova: UInt64
    var lkey: UInt32
    var rkey: UInt32
    var registerNanoseconds: Double
    var deregisterNanoseconds: Double
    var registrationsPerSecond: Double = 0
  }

  func measure(
    pd: borrowing ProtectionDomain, buffer: borrowing PageAlignedBuffer, access: MemoryAccess,
    iova: UInt64?
  ) throws(VerbsError) -> Report {
    let clock = ContinuousClock()
    var registerTotal = Duration.zero
    var deregisterTotal = Duration.zero
    var report = Report(
      address: buffer.address, iova: 0, lkey: 0, rkey: 0,
      registerNanoseconds: 0, deregisterNanoseconds: 0)
    for _ in 0..<cycles {
      let t0 = clock.now
      let mr = try pd.register(buffer, access: access, iova: iova)
      let t1 = clock.now
      report.iova = mr.iova
      report.lkey = mr.lkey
      report.rkey = mr.rkey
      try mr.deregister()
      let t2 = clock.now
      registerTotal += t1 - t0
      deregisterTotal += t2 - t1
    }
    report.registerNanoseconds = registerTotal.nanoseconds / Double(cycles)
    report.deregisterNanoseconds = deregisterTotal.nanoseconds / Double(cycles)
    report.registrationsPerSecond =
      Double(cycles) / max((registerTotal + deregisterTotal).nanoseconds / 1e9, 1e-9)
    return report
  }

  /// Connects two RC queue pairs on this device, RDMA WRITEs a pattern from
  /// one fresh region into another and READs it back; returns a summary.
  func loopbackCheck(context: borrowing DeviceContext) throws(VerbsError) -> String {
    let pd = try context.allocateProtectionDomain()
    let cq = try context.createCompletionQueue(entries: 16)
    let a = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq)
    let b = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq)
    try a.connectLoopback(with: b)
    let source = try PageAlignedBuffer(byteCount: 8192)
    let target = try PageAlignedBuffer(byteCount: 8192)
    let all: MemoryAccess = [.localWrite, .remoteWrite, .remoteRead]
    let local = try pd.register(source, access: all)
    let remote = try pd.register(target, access: all)
    let pattern = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    try source.copy(from: pattern)
    try a.postSend(.write(to: remote.remote), local.scatterGather(offset: 0, count: 4096), id: 1)
    try cq.wait(for: 1)[0].checkSuccess()
    try a.postSend(
      .read(from: remote.remote), local.scatterGather(offset: 4096, count: 4096), id: 2)
    try cq.wait(for: 1)[0].checkSuccess()
    guard try target.load(0..<4096) == pattern, try source.load(4096..<8192) == pattern else {
      throw VerbsError(
        .other, operation: "ibv_post_send", errno: 5,
        message: "RDMA WRITE/READ completed but the data differs")
    }
    return "RDMA WRITE+READ of 4 KiB through rkey \(hex(UInt64(remote.rkey))) verified"
  }

  func format(_ nanoseconds: Double) -> String {
    nanoseconds >= 1_000_000
      ? "\((nanoseconds / 1_000_000 * 1000).rounded() / 1000) ms"
      : "\((nanoseconds / 1000 * 10).rounded() / 10) µs"
  }
}

extension Duration {
  var nanoseconds: Double {
    let (seconds, attoseconds) = components
    return Double(seconds) * 1e9 + Double(attoseconds) / 1e9
  }
}
