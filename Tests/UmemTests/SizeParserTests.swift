import TestSupport
import Testing
import ToolSupport

/// Issue 10, cause 8: one size parser for every tool, and rdma-perf's empty
/// selections are usage errors.
@Suite struct SizeParserTests {
  @Test(
    arguments: [
      ("4096", 4096), ("0x1000", 4096), ("0X1000", 4096), ("0x7f00_0000_0000", 0x7f00_0000_0000),
      ("64K", 64 << 10), ("64k", 64 << 10), ("64KiB", 64 << 10), ("2MiB", 2 << 20),
      ("16m", 16 << 20), ("1G", 1 << 30), ("1gib", 1 << 30), ("3T", 3 << 40), ("0x10M", 16 << 20),
      ("18446744073709551615", UInt64.max), ("0xffffffffffffffff", UInt64.max),
    ] as [(String, UInt64)])
  func sizesParse(text: String, value: UInt64) {
    #expect(parseSize(text) == value)
  }

  @Test(arguments: [
    "", " ", "K", "ib", "4ib", "0x", "0x_", "_", "-1", "+1", "1.5K", "4 K", "4KB", "0x1g0",
    "18446744073709551616", "0x10000000000000000", "16777216T", "0xffffffffffffffffK", "١٢",
  ])
  func badSizesAreNil(text: String) {
    #expect(parseSize(text) == nil)
  }

  @Test func numbersTakeNoSuffix() {
    #expect(parseNumber("4K") == nil)
    #expect(parseNumber("0x1b") == 0x1b)
    #expect(parseNumber("1_000") == 1000)
    #expect(parseNumber("0b101") == nil)
  }

  @Test func hexRoundTrips() {
    for value: UInt64 in [0, 1, 0xfff, 1 << 63, .max] {
      #expect(parseNumber(hex(value)) == value)
      #expect(parseSize(hex(value)) == value)
    }
  }

  let perf = TestTools.executable("rdma-perf")

  /// The client checks its arguments before it connects, so these need no
  /// device or server (exit 64 is ArgumentParser's usage error).
  @Test(arguments: [
    ["--sizes", ""], ["-s", ",,"], ["--sizes", "64,,4K"], ["--tests", ""], ["--tests", ","],
    ["--sizes", "2G"], ["--sizes", "0"], ["-n", "1"], ["-n", "9223372036854775807"],
    ["--peer-timeout", "99999"], ["--peer-timeout", "-1"], ["--peer-timeout", "x"],
  ])
  func emptyOrOutOfRangeSelectionsAreUsageErrors(extra: [String]) {
    let result = TestTools.run([perf, "client", "-a", "127.0.0.1"] + extra)
    #expect(result.status == 64, "\(result.stdout) \(result.stderr)")
    #expect(result.stderr.contains("Error:"), "\(result.stderr)")
  }

  /// rping's peer-silence limit (`-w SECONDS`) is checked before anything
  /// is opened; rping keeps rdma-core's rping's convention of exiting with
  /// EINVAL (22) for a bad option.
  @Test(arguments: ["abc", "99999", "-1", ""])
  func rpingRefusesABadPeerSilenceLimit(value: String) {
    let rping = TestTools.executable("rping")
    let result = TestTools.run([rping, "-c", "-a", "127.0.0.1", "-w", value])
    #expect(result.status == 22, "\(result.stdout) \(result.stderr)")
    #expect(result.stderr.contains("-w"), "\(result.stderr)")
  }

  /// `umem cache-bench` bounds its counts before it maps or registers
  /// anything: lookups x repeats must stay far inside Int.
  @Test(arguments: [
    ["--lookups", "0"], ["--lookups", "1000000001"], ["--lookups", "9223372036854775807"],
    ["--repeats", "0"], ["--repeats", "1001"], ["--warmup", "-1"], ["--warmup", "10001"],
  ])
  func cacheBenchCountsOutOfRangeAreUsageErrors(extra: [String]) {
    let umem = TestTools.executable("umem")
    let result = TestTools.run([umem, "cache-bench", "--registrar", "counter"] + extra)
    #expect(result.status == 64, "\(result.stdout) \(result.stderr)")
    #expect(result.stderr.contains("Error:"), "\(result.stderr)")
  }

  @Test func aOneGiBSizeIsAccepted() {
    // 1G passes validation; the run then fails to connect (nothing listens), not with a usage error.
    let result = TestTools.run(
      [perf, "client", "-a", "127.0.0.1", "-p", "1", "--sizes", "1G", "--tests", "write-bw"])
    #expect(result.status != 64, "\(result.stderr)")
    #expect(!result.stderr.contains("must be 1 byte to 1 GiB"), "\(result.stderr)")
  }
}
