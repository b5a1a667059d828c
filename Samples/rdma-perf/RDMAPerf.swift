// rdma-perf: RDMA WRITE and READ bandwidth and latency between a server and
// a client over rdma_cm, with buffers registered through Umem with a plan.
// The measurements follow perftest's ib_write_bw, ib_read_bw, ib_write_lat
// and ib_read_lat, so their numbers compare side by side.

import ArgumentParser
import Foundation
import ToolSupport
import Umem

@main
struct RDMAPerf: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rdma-perf",
    abstract: "RDMA WRITE/READ bandwidth and latency over rdma_cm, on Umem-planned buffers.",
    discussion: """
      Start `rdma-perf server` on one side and `rdma-perf client --address ADDR` on the \
      other. The client runs each test at each size and prints one line per run, or one \
      JSON object with --json. Bandwidth is in MiB/s (2^20 bytes, as perftest's MB/sec); \
      latency in microseconds (write-lat: half round trips, as ib_write_lat; read-lat: \
      full ones, as ib_read_lat).
      """,
    subcommands: [ServerCommand.self, ClientCommand.self])
}

struct CommonOptions: ParsableArguments {
  @Option(name: [.short, .long], help: "rdma_cm port.")
  var port: UInt16 = 7471

  @Option(help: "Data buffer backing: plain, thp, hugetlb-2m or hugetlb-1g.")
  var backing = "plain"

  @Option(
    help: "Data region IOVA: 'any' (the planner's, largest HCA page) or 'keep' (the address).")
  var iova = "any"

  func parsedBacking() throws -> UmemBuffer.Backing {
    guard let value = UmemBuffer.Backing(rawValue: backing) else {
      throw ValidationError(
        "--backing must be one of \(UmemBuffer.Backing.allCases.map(\.rawValue).joined(separator: ", "))"
      )
    }
    return value
  }

  func parsedIOVA() throws -> IOVAChoice {
    guard let value = IOVAChoice(rawValue: iova) else {
      throw ValidationError("--iova must be any or keep")
    }
    return value
  }
}

struct ServerCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "server", abstract: "Serve one client (or, with --persistent, one after another).")

  @Option(name: [.short, .long], help: "Local address to listen on (default: all).")
  var address: String?

  @OptionGroup var common: CommonOptions

  @Flag(help: "Keep serving clients one after another.")
  var persistent = false

  @Flag(name: [.short, .long], help: "Log every run.")
  var verbose = false

  func run() throws {
    let settings = ServerSettings(
      address: address, port: common.port, backing: try common.parsedBacking(),
      iova: try common.parsedIOVA(), persistent: persistent, verbose: verbose)
    do {
      try runServer(settings)
    } catch {
      log("rdma-perf server: \(error)")
      throw ExitCode.failure
    }
  }
}

struct ClientCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "client", abstract: "Connect to a server and measure.")

  @Option(name: [.short, .long], help: "The server's address.")
  var address: String

  @OptionGroup var common: CommonOptions

  @Option(help: "Comma-separated tests: write-bw, read-bw, write-lat, read-lat.")
  var tests = "write-bw,read-bw,write-lat,read-lat"

  @Option(
    name: [.short, .long], help: "Comma-separated message sizes (K, M, G suffixes), up to 1G.")
  var sizes = "64,4K,64K"

  @Option(
    name: [.customShort("n"), .long],
    help: "Iterations per run (default: perftest's, 5000 for write-bw, 1000 otherwise).")
  var iterations: Int?

  @Option(name: [.customShort("t"), .long], help: "Requests in flight in bandwidth runs.")
  var queueDepth = 128

  @Option(
    help:
      "Signal every Nth request in bandwidth runs (default: 100, or 1 above 8 KiB, as perftest).")
  var cqModeration: Int?

  @Option(
    help: ArgumentHelp(
      "Bandwidth runs: rotate over this many message buffers of the largest size (1...4096).",
      discussion:
        "Alone, the buffers are registered once, before the run (the pre-registered baseline on "
        + "the same memory); with --reuse or --register-per-message (default 16) they register "
        + "per message."))
  var messageBuffers: Int?

  @Flag(
    help:
      "Bandwidth runs: look each message's buffer up in a registration cache before posting and release it after its completion, as an MPI library would."
  )
  var reuse = false

  @Flag(
    help:
      "Bandwidth runs: register each message's buffer before posting (ibv_reg_mr) and deregister it after its completion."
  )
  var registerPerMessage = false

  @Flag(help: "Print one JSON object instead of text lines.")
  var json = false

  @Option(help: "Also write the JSON report to this file.")
  var output: String?

  @Option(
    help: """
      Seconds the server may stay silent during a run before the client gives up (control \
      messages get six times as long; 0: wait forever): a server whose host died sends no \
      disconnect.
      """)
  var peerTimeout = 5

  func validate() throws {
    _ = try parsedTests()
    _ = try parsedSizes()
    if let iterations, !(2...largestIterationCount).contains(iterations) {
      throw ValidationError("--iterations must be 2...\(largestIterationCount)")
    }
    guard (1...16384).contains(queueDepth) else {
      throw ValidationError("--queue-depth must be 1...16384")
    }
    if let cqModeration, cqModeration < 1 {
      throw ValidationError("--cq-moderation must be at least 1")
    }
    guard (0...86_400).contains(peerTimeout) else {
      throw ValidationError("--peer-timeout must be 0...86400 seconds")
    }
    if reuse && registerPerMessage {
      throw ValidationError("--reuse and --register-per-message are alternatives; give one")
    }
    if let messageBuffers, !(1...4096).contains(messageBuffers) {
      throw ValidationError("--message-buffers must be 1...4096")
    }
    if let pool = messagePool {
      // Sizes are at most 1 GiB and counts at most 4096: no overflow.
      let largest = try parsedSizes().max() ?? 1
      guard pool.count * largest <= 1 << 31 else {
        throw ValidationError(
          "--message-buffers \(pool.count) x the largest message (\(largest) bytes) is over 2 GiB; "
            + "give fewer buffers or smaller sizes")
      }
    }
  }

  /// The message pool the options ask for, if any.
  var messagePool: (registration: MessageRegistration, count: Int)? {
    let registration: MessageRegistration
    if reuse {
      registration = .cached
    } else if registerPerMessage {
      registration = .perMessage
    } else if messageBuffers != nil {
      registration = .preRegistered
    } else {
      return nil
    }
    return (registration, messageBuffers ?? 16)
  }

  func parsedTests() throws -> [Test] {
    try Self.items(tests, option: "--tests", example: "write-bw,read-lat").map { name in
      guard let test = Test(name: String(name)) else {
        throw ValidationError(
          "unknown test '\(name)'; use write-bw, read-bw, write-lat or read-lat")
      }
      return test
    }
  }

  func parsedSizes() throws -> [Int] {
    try Self.items(sizes, option: "--sizes", example: "64,4K,1M").map { text in
      // At most 1 GiB, so the Int conversion below cannot trap.
      guard let value = parseSize(text), value >= 1, value <= UInt64(largestMessage) else {
        throw ValidationError(
          "message size '\(text)' must be 1 byte to 1 GiB (a number with an optional K, M or G "
            + "suffix, such as 4096, 64K or 1G)")
      }
      return Int(value)
    }
  }

  /// The comma-separated items of a selection; an empty selection or an
  /// empty item is a usage error, not a run that measures nothing.
  static func items(_ text: String, option: String, example: String) throws -> [Substring] {
    let items = text.split(separator: ",", omittingEmptySubsequences: false)
    guard !text.isEmpty, !items.contains(where: \.isEmpty) else {
      throw ValidationError(
        "\(option) '\(text)' has an empty item; give a comma-separated list such as \(example)")
    }
    return items
  }

  func run() throws {
    LivenessCheck.silenceLimit = peerTimeout == 0 ? nil : .seconds(peerTimeout)
    let settings = ClientSettings(
      address: address, port: common.port, tests: try parsedTests(), sizes: try parsedSizes(),
      iterations: iterations, queueDepth: queueDepth, cqModeration: cqModeration,
      backing: try common.parsedBacking(), iova: try common.parsedIOVA(),
      messagePool: messagePool)
    let report: Report
    do {
      report = try runClient(settings) { result in
        if !json { print(result.line) }
      }
    } catch {
      log("rdma-perf client: \(error)")
      throw ExitCode.failure
    }
    if json {
      print(report.json())
    } else {
      print(
        "device \(report.device), server \(report.server), queue depth \(report.queueDepth), "
          + "reads in flight \(report.initiatorDepth)")
      print("client region: \(report.clientRegion.summary)")
      print("server region: \(report.serverRegion.summary)")
    }
    if let output {
      do {
        try Data((report.json() + "\n").utf8).write(to: URL(fileURLWithPath: output))
      } catch {
        log("rdma-perf client: cannot write \(output): \(error)")
        throw ExitCode.failure
      }
    }
  }
}

/// One line on standard error, unbuffered.
func log(_ text: String) {
  FileHandle.standardError.write(Data((text + "\n").utf8))
}
