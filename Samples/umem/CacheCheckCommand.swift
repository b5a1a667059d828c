import ArgumentParser
import Foundation
import RegistrationCache
import ToolSupport
import Verbs

/// `umem cache-check`: which monitor a ``RegistrationCache`` gets in this
/// process (userfaultfd, user-mode-only userfaultfd, or explicit
/// invalidation only, and why), and whether cached registrations of memory
/// that is unmapped and mapped again at the same address are dropped: after
/// an explicit `invalidate` always, and without one where a monitor runs.
/// Exit status 1 when a lookup after the memory changed was served from the
/// cache (a stale hit). For containers and sandboxes that may refuse
/// userfaultfd, and for the tests that run it unprivileged.
struct CacheCheck: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cache-check",
    abstract: "Report the registration cache's monitor here and check that replaced memory misses.")

  @Option(help: "Unmap-and-map-again rounds per check.") var rounds: Int = 20
  @Option(help: "Device name (default: the first device).") var device: String?
  @Flag(help: "Print one JSON object.") var json = false

  func validate() throws {
    guard rounds >= 1, rounds <= 1_000_000 else {
      throw ValidationError("--rounds must be 1 to 1,000,000")
    }
  }

  struct Report: Encodable {
    var device: String
    var monitor: String
    var automatic: Bool
    var rounds: Int
    /// Lookups after `invalidate` + munmap + mmap that hit (must be 0).
    var staleAfterExplicit: Int
    /// Lookups after munmap + mmap without `invalidate` that hit (must be
    /// 0); nil without a monitor, where the application must invalidate.
    var staleAfterUnmap: Int?
    var statistics: CacheStatistics
  }

  func run() throws {
    do {
      let context = try SharedDeviceContext.open(name: device)
      let pd = try context.allocateProtectionDomain()
      let cache = RegistrationCache(domain: pd)
      let automatic = cache.statistics.monitor.isAutomatic
      let length = 16 * PageAlignedBuffer.pageSize
      guard let raw = Self.map(length, at: nil) else {
        printError("umem cache-check: mmap failed: errno \(errno)")
        throw ExitCode(1)
      }
      let address = UInt64(UInt(bitPattern: raw))
      var staleExplicit = 0
      var staleUnmap = 0
      for round in 0..<rounds {
        for explicit in automatic ? [true, false] : [true] {
          try cache.lookup(address: address, length: length).release()
          let cached = try cache.lookup(address: address, length: length)
          let wasCached = cached.isCached
          cached.release()
          if explicit { cache.invalidate(address: address, length: length) }
          // Same address, new pages (MAP_FIXED replaces the old mapping).
          guard Self.map(length, at: raw) == raw else {
            printError("umem cache-check: mmap(MAP_FIXED) failed: errno \(errno)")
            throw ExitCode(1)
          }
          memset(raw, Int32(truncatingIfNeeded: round), length)
          let misses = cache.statistics.misses
          let fresh = try cache.lookup(address: address, length: length)
          if wasCached && cache.statistics.misses == misses {
            if explicit { staleExplicit += 1 } else { staleUnmap += 1 }
          }
          fresh.release()
        }
      }
      let statistics = cache.statistics
      cache.close()
      munmap(raw, length)
      let report = Report(
        device: context.name, monitor: statistics.monitor.description, automatic: automatic,
        rounds: rounds, staleAfterExplicit: staleExplicit,
        staleAfterUnmap: automatic ? staleUnmap : nil, statistics: statistics)
      if json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(report), as: UTF8.self))
      } else {
        print("monitor     \(report.monitor)")
        print("explicit    \(rounds) rounds, \(staleExplicit) stale hits")
        print(
          "unmap       "
            + (automatic ? "\(rounds) rounds, \(staleUnmap) stale hits" : "not watched: invalidate")
        )
      }
      if staleExplicit > 0 || staleUnmap > 0 { throw ExitCode(1) }
    } catch let exit as ExitCode {
      throw exit
    } catch {
      printError("umem cache-check: \(error)")
      throw ExitCode(1)
    }
  }

  /// Anonymous read-write memory, touched; at `address` (MAP_FIXED) when given.
  static func map(_ length: Int, at address: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | (address == nil ? 0 : MAP_FIXED)
    guard let raw = mmap(address, length, PROT_READ | PROT_WRITE, flags, -1, 0), raw != MAP_FAILED
    else { return nil }
    memset(raw, 0x5a, length)
    return raw
  }
}
