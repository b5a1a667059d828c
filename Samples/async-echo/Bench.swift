// The measurements: a 64 B WRITE ping-pong with each way of waiting, and
// the CPU time of Tasks idly awaiting many queues. In one process, over
// loopback queue pairs on one device, so all three run in the same boot.

import Foundation
import Verbs

/// How the ping-pong waits for each arrival.
enum WaitMode: String, CaseIterable, Sendable {
  /// `SharedCompletionQueue.next()`: the Task suspends; the reactor wakes it.
  case async
  /// `SharedCompletionQueue.wait(for:)`: the thread sleeps in `poll(2)`.
  case poll
  /// `SharedCompletionQueue.poll(maximum:)` in a loop: the thread spins.
  case busy
}

/// One side of a loopback pair: its queue pair, a queue for its receives
/// (waited on) and one for its sends (drained), and a 64 B region.
struct PingSide {
  let queuePair: SharedQueuePair
  let receives: SharedCompletionQueue
  let sends: SharedCompletionQueue
  let region: SharedMemoryRegion
}

func makePair(_ domain: SharedProtectionDomain, bytes: Int) throws -> (PingSide, PingSide) {
  func side() throws -> PingSide {
    let receives = try domain.context.createCompletionQueue(entries: 64)
    let sends = try domain.context.createCompletionQueue(entries: 64)
    let queuePair = try domain.createQueuePair(
      sendCompletions: sends, receiveCompletions: receives,
      capacity: QueuePairCapacity(sendRequests: 64, receiveRequests: 16))
    let region = try domain.register(
      SharedBuffer(byteCount: max(bytes, 4096)), access: [.localWrite, .remoteWrite])
    return PingSide(queuePair: queuePair, receives: receives, sends: sends, region: region)
  }
  let a = try side()
  let b = try side()
  try a.queuePair.connectLoopback(with: b.queuePair)
  return (a, b)
}

/// Sends 64 B from `from` into `to`'s region with immediate, signaling one
/// request in 16 (and draining those) so the send queue never fills.
func write(from: PingSide, to: PingSide, round: Int, bytes: Int) throws {
  let signaled = round % 16 == 15
  try from.queuePair.postSend(
    .writeWithImmediate(to: to.region.remote, UInt32(truncatingIfNeeded: round)),
    try from.region.scatterGather(count: bytes), id: UInt64(round), signaled: signaled)
  if signaled {
    for completion in try from.sends.wait(for: 1) { try completion.checkSuccess() }
  }
}

/// Waits for one arrival on `side` the `mode` way and re-posts its receive.
func arrival(on side: PingSide, mode: WaitMode) async throws {
  let completion: WorkCompletion
  switch mode {
  case .async:
    completion = try await side.receives.next()
  case .poll:
    completion = try side.receives.wait(for: 1)[0]
  case .busy:
    var taken: WorkCompletion?
    while taken == nil { try side.receives.poll(maximum: 1) { taken = $0 } }
    completion = taken!
  }
  try completion.checkSuccess()
  try side.queuePair.postReceive(try side.region.scatterGather(count: 0), id: 0)
}

/// Round trips of a 64 B WRITE ping-pong: A writes to B, B answers, and so
/// on; returns the round-trip times.
func pingPong(_ a: PingSide, _ b: PingSide, mode: WaitMode, rounds: Int, bytes: Int)
  async throws -> [Duration]
{
  var times: [Duration] = []
  times.reserveCapacity(rounds)
  let clock = ContinuousClock()
  for round in 0..<rounds {
    let start = clock.now
    try write(from: a, to: b, round: round, bytes: bytes)
    try await arrival(on: b, mode: mode)
    try write(from: b, to: a, round: round, bytes: bytes)
    try await arrival(on: a, mode: mode)
    times.append(clock.now - start)
  }
  return times
}

/// CPU seconds (user + system) this process has used so far (`getrusage`).
func cpuSeconds() -> Double {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
  return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

extension Duration {
  var microseconds: Double {
    Double(components.seconds) * 1e6 + Double(components.attoseconds) / 1e12
  }
}

func median(_ times: [Duration]) -> Double {
  let sorted = times.map(\.microseconds).sorted()
  return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

/// Runs the ping-pong in every mode (interleaved in `repeats` rounds, so a
/// busy neighbour hurts them alike), then idles `idleQueues` Tasks for
/// `idleSeconds`; prints one line per measurement and the ratios.
func runBench(
  device: String?, rounds: Int, repeats: Int, idleQueues: Int, idleSeconds: Double
) async throws {
  let context = try SharedDeviceContext.open(name: device)
  let domain = try context.allocateProtectionDomain()
  let bytes = 64
  let (a, b) = try makePair(domain, bytes: bytes)
  for side in [a, b] {
    for _ in 0..<8 {
      try side.queuePair.postReceive(try side.region.scatterGather(count: 0), id: 0)
    }
  }
  _ = try await pingPong(a, b, mode: .poll, rounds: 50, bytes: bytes)  // warm-up
  var results: [WaitMode: [Duration]] = [:]
  for _ in 0..<repeats {
    for mode in WaitMode.allCases {
      results[mode, default: []] += try await pingPong(
        a, b, mode: mode, rounds: rounds, bytes: bytes)
    }
  }
  let us = Dictionary(uniqueKeysWithValues: results.map { ($0.key, median($0.value)) })
  for mode in WaitMode.allCases {
    let times = results[mode] ?? []
    let mean = times.map(\.microseconds).reduce(0, +) / Double(max(1, times.count))
    say(
      String(
        format: "write-pingpong %d B %-5@ %6d round trips: median %8.1f us, mean %8.1f us",
        bytes, mode.rawValue, times.count, us[mode] ?? 0, mean))
  }
  let asyncTime = us[.async] ?? 0
  say(
    String(
      format: "ratio async/poll(2) %.2f, async/busy %.2f, poll(2)/busy %.2f",
      asyncTime / max(us[.poll] ?? 1, 1e-9), asyncTime / max(us[.busy] ?? 1, 1e-9),
      (us[.poll] ?? 0) / max(us[.busy] ?? 1, 1e-9)))

  // Idle: Tasks awaiting queues that never complete cost nothing while they wait.
  var idle: [(PingSide, PingSide)] = []
  for _ in 0..<idleQueues { idle.append(try makePair(domain, bytes: 64)) }
  let waiters = idle.map { pair in
    Task { _ = try? await pair.0.receives.next() }
  }
  try await Task.sleep(for: .milliseconds(200))  // let every Task reach its wait
  let before = cpuSeconds()
  let clock = ContinuousClock()
  let start = clock.now
  try await Task.sleep(for: .milliseconds(Int(idleSeconds * 1000)))
  let used = cpuSeconds() - before
  let elapsed = (clock.now - start).microseconds / 1e6
  for waiter in waiters { waiter.cancel() }
  for waiter in waiters { await waiter.value }
  say(
    String(
      format:
        "idle: %d queues awaited by %d Tasks for %.1f s: %.4f CPU seconds (%.3f%% of one core)",
      idleQueues, idleQueues, elapsed, used, 100 * used / max(elapsed, 1e-9)))
}
