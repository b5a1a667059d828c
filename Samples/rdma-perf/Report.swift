// What a client run produced: one result per test and size, printed as
// perftest-like text lines or as one JSON object.

import Foundation

/// Latency figures in microseconds, as perftest's columns.
struct LatencySummary: Codable {
  var min: Double
  var max: Double
  /// The median (perftest's t_typical).
  var typical: Double
  var average: Double
  var stdev: Double
  var p99: Double
  var p999: Double

  init(nanoseconds samples: [UInt64]) {
    let sorted = samples.sorted().map { Double($0) / 1000 }
    let n = sorted.count
    precondition(n > 0)
    min = sorted[0]
    max = sorted[n - 1]
    typical = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    average = sorted.reduce(0, +) / Double(n)
    let mean = average
    stdev = (sorted.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)).squareRoot()
    func percentile(_ p: Double) -> Double {
      sorted[Swift.min(n - 1, Int((p * Double(n)).rounded(.up)) - 1)]
    }
    p99 = percentile(0.99)
    p999 = percentile(0.999)
  }
}

/// One test at one size.
struct Result: Codable {
  var test: String
  var bytes: Int
  var iterations: Int
  /// Bandwidth runs: wall time from the first post to the last completion.
  var seconds: Double?
  /// MiB/s (2^20 bytes, as perftest's MB/sec).
  var mibPerSecond: Double?
  var gbitPerSecond: Double?
  var megaMessagesPerSecond: Double?
  /// Bandwidth runs: every how many requests one was signaled.
  var cqModeration: Int?
  /// Latency runs, microseconds: half round trips for write-lat, full ones for read-lat.
  var latency: LatencySummary?
  /// Bandwidth runs from a message pool: how each message's buffer was
  /// registered (pre-registered, cached, per-message) and how many buffers
  /// the messages rotated over. Absent: the one data region (today's path).
  var registration: MessageRegistration?
  var messageBuffers: Int?
  /// Cached runs: the cache's hits and misses during the run, and its monitor.
  var cacheHits: Int?
  var cacheMisses: Int?
  var cacheMonitor: String?
  /// Cached runs: events the userfaultfd monitor read during the run (an
  /// unmap or discard anywhere in a watched stretch is one), and the
  /// entries they invalidated.
  var cacheMonitorEvents: Int?
  var cacheInvalidations: Int?

  static func bandwidth(_ test: Test, bytes: Int, iterations: Int, nanoseconds: UInt64) -> Result {
    let seconds = Double(nanoseconds) / 1e9
    let total = Double(bytes) * Double(iterations)
    return Result(
      test: test.name, bytes: bytes, iterations: iterations, seconds: seconds,
      mibPerSecond: total / seconds / 1_048_576, gbitPerSecond: total * 8 / seconds / 1e9,
      megaMessagesPerSecond: Double(iterations) / seconds / 1e6, latency: nil)
  }

  static func latency(_ test: Test, bytes: Int, samples: [UInt64]) -> Result {
    Result(
      test: test.name, bytes: bytes, iterations: samples.count,
      latency: LatencySummary(nanoseconds: samples))
  }

  /// One text line in perftest's spirit.
  var line: String {
    func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
    let head =
      "\(test.padding(toLength: 10, withPad: " ", startingAt: 0)) \(String(bytes).leftPadded(8)) B  x\(String(iterations).leftPadded(6))"
    if let latency {
      return head
        + "  typical \(f(latency.typical)) us  min \(f(latency.min))  avg \(f(latency.average))"
        + "  max \(f(latency.max))  p99 \(f(latency.p99))  p99.9 \(f(latency.p999))"
    }
    var pool = ""
    if let registration {
      let hits = cacheHits.map { ", \($0) hits, \(cacheMisses ?? 0) misses" } ?? ""
      pool = " [\(registration.rawValue) x\(messageBuffers ?? 0)\(hits)]"
    }
    return head + "  \(f(mibPerSecond ?? 0)) MiB/s  \(f(gbitPerSecond ?? 0, 3)) Gb/s"
      + "  \(f(megaMessagesPerSecond ?? 0, 4)) Mmsg/s" + pool
  }
}

extension String {
  func leftPadded(_ width: Int) -> String {
    count >= width ? self : String(repeating: " ", count: width - count) + self
  }
}

/// The whole run.
struct Report: Codable {
  var tool = "rdma-perf"
  var device: String
  var server: String
  var queueDepth: Int
  var initiatorDepth: Int
  var clientRegion: PlanReport
  var serverRegion: PlanReport
  var results: [Result] = []

  func json() -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = (try? encoder.encode(self)) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
  }
}
