// async-echo: an RDMA echo server that serves every client from its own
// Task, a client that runs many connections at once, and a benchmark of
// the ways to wait for a completion. Built on the owned tier and its async
// waits (SharedConnection, SharedCompletionQueue.next and completions).

import ArgumentParser
import Foundation
import RDMACM

@main
struct AsyncEcho: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "async-echo",
    abstract: "Echo over RDMA (SEND/RECV and WRITE with immediate) from Swift Tasks.",
    discussion: """
      Start `async-echo server -a ADDR` on one side and `async-echo client -a ADDR` on the \
      other. The client exits 0 only when every echo arrived (and, with --verify, matched). \
      `async-echo bench` measures the ways to wait for a completion on the local device.
      """,
    subcommands: [ServerCommand.self, ClientCommand.self, BenchCommand.self])
}

struct ServerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "server", abstract: "Serve any number of clients at once, each from a Task.")

  @Option(name: [.short, .long], help: "Local address to listen on.")
  var address = "0.0.0.0"

  @Option(name: [.short, .long], help: "rdma_cm port.")
  var port: UInt16 = 7490

  @Option(help: "Exit after this many clients have connected and gone (default: never).")
  var exitAfter: Int?

  @Flag(name: [.short, .long], help: "Log every connection.")
  var verbose = false

  func validate() throws {
    if let exitAfter, exitAfter < 1 { throw ValidationError("--exit-after must be at least 1") }
  }

  func run() async throws {
    do {
      try await runServer(address: address, port: port, limit: exitAfter, verbose: verbose)
    } catch {
      log("async-echo server: \(error)")
      throw ExitCode.failure
    }
  }
}

struct ClientCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "client", abstract: "Run concurrent connections that echo and check.")

  @Option(name: [.short, .long], help: "The server's address.")
  var address: String

  @Option(name: [.short, .long], help: "rdma_cm port.")
  var port: UInt16 = 7490

  @Option(help: "Connections at once, each in its own Task.")
  var clients = 1

  @Option(help: "Messages per connection, each echoed by SEND and by WRITE with immediate.")
  var messages = 10

  @Option(help: "Message size in bytes.")
  var size = 64

  @Flag(help: "Compare every echo with what was sent.")
  var verify = false

  @Option(
    help: ArgumentHelp(
      "Before echoing, keep every connection open and waiting for this many seconds, and "
        + "print the CPU time used while all were up.", valueName: "seconds"))
  var idle: Double?

  func validate() throws {
    guard (1...1024).contains(clients) else { throw ValidationError("--clients must be 1...1024") }
    guard messages >= 0 else { throw ValidationError("--messages must be 0 or more") }
    guard (1...largestMessage).contains(size) else {
      throw ValidationError("--size must be 1 byte to 16 MiB")
    }
    if let idle, !(idle > 0 && idle <= 3600) {
      throw ValidationError("--idle must be more than 0 and at most 3600 seconds")
    }
  }

  func run() async throws {
    let start = ContinuousClock.now
    let phase = idle.map { IdlePhase(expected: clients, seconds: $0) }
    async let running = runClients(
      address: address, port: port, clients: clients, messages: messages, size: size,
      verify: verify, idle: phase)
    if let phase {
      await phase.allArrived()
      let window = ContinuousClock.now.duration(to: phase.until) - .milliseconds(200)
      if window > .zero {
        let before = cpuSeconds()
        try? await Task.sleep(for: window)
        let used = cpuSeconds() - before
        let seconds = window.microseconds / 1e6
        say(
          String(
            format: "async-echo client: idle with %d connections open and awaited: "
              + "%.4f CPU seconds in %.1f s (%.3f%% of one core)",
            clients, used, seconds, 100 * used / seconds))
      } else {
        say("async-echo client: connecting took longer than --idle; no idle measurement")
      }
    }
    let outcomes = await running
    let seconds = (ContinuousClock.now - start).microseconds / 1e6
    var good = true
    for outcome in outcomes {
      if let failure = outcome.failure {
        log("async-echo client \(outcome.client): after \(outcome.echoes) echoes: \(failure)")
        good = false
      } else if outcome.mismatches > 0 {
        log("async-echo client \(outcome.client): \(outcome.mismatches) echoes did not match")
        good = false
      }
    }
    let echoes = outcomes.map(\.echoes).reduce(0, +)
    let mismatches = outcomes.map(\.mismatches).reduce(0, +)
    say(
      String(
        format: "async-echo client: %d clients, %d echoes of %d B, %d mismatched%@, %.2f s",
        clients, echoes, size, mismatches, verify ? "" : " (not verified)", seconds))
    if !good || echoes != clients * messages * 2 { throw ExitCode.failure }
  }
}

struct BenchCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "64 B WRITE ping-pong: async wait vs poll(2) wait vs busy polling; idle CPU.")

  @Option(help: "Device (default: the first).")
  var device: String?

  @Option(help: "Round trips per mode per repeat.")
  var rounds = 1000

  @Option(help: "Repeats; the modes take turns in each.")
  var repeats = 3

  @Option(help: "Queues awaited by idle Tasks.")
  var idleQueues = 100

  @Option(help: "Seconds to measure the idle Tasks.")
  var idleSeconds = 5.0

  func validate() throws {
    guard rounds >= 1, repeats >= 1 else {
      throw ValidationError("--rounds and --repeats must be at least 1")
    }
    guard idleQueues >= 0, idleSeconds >= 0 else {
      throw ValidationError("--idle-queues and --idle-seconds must be 0 or more")
    }
  }

  func run() async throws {
    do {
      try await runBench(
        device: device, rounds: rounds, repeats: repeats, idleQueues: idleQueues,
        idleSeconds: idleSeconds)
    } catch {
      log("async-echo bench: \(error)")
      throw ExitCode.failure
    }
  }
}

/// One line on standard error, unbuffered.
func log(_ text: String) {
  FileHandle.standardError.write(Data((text + "\n").utf8))
}
