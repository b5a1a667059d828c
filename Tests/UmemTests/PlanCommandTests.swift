import TestSupport
import Testing

/// `umem plan` end to end: the JSON of the issue, and exit 2 on bad input.
@Suite struct PlanCommandTests {
  let umem = TestTools.executable("umem")

  func plan(_ arguments: [String]) -> (status: Int32, stdout: String, stderr: String) {
    TestTools.run([umem, "plan"] + arguments)
  }

  @Test func twoHugePagesGiveTwoBlocks() {
    let result = plan([
      "--address", "0x7f0000200000", "--length", "0x400000", "--iova", "0x7f0000200000",
      "--page-sizes", "0xfffff000", "--phyr", "0x140000000:0x200000",
      "--phyr", "0x180000000:0x200000", "--json", "--blocks",
    ])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(
      result.stdout.hasPrefix(
        #"{"pageSize":"0x200000","blockCount":2,"firstBlock":"0x140000000","lastBlock":"0x180000000","iova":"0x7f0000200000","dmaOffset":"0x0""#
      ), "\(result.stdout)")
    #expect(result.stdout.contains(#""blocks":["0x140000000","0x180000000"]"#), "\(result.stdout)")
  }

  @Test func noFittingSizeIsZeroAndExitsZero() {
    // Vector V17: a 2M-only bitmap cannot map a 4K-granular layout.
    let result = plan([
      "--address", "0x7f0000000000", "--length", "0x4000", "--iova", "0x7f0000000000",
      "--page-sizes", "0x200000", "--phyr", "0x100000000:0x3000", "--phyr", "0x200000000:0x1000",
      "--json",
    ])
    #expect(result.status == 0)
    #expect(
      result.stdout.contains(#""pageSize":"0x0","blockCount":0,"firstBlock":null,"lastBlock":null"#)
    )
  }

  @Test func autoIOVAFindsTheLargerPage() {
    // V10's layout at its given IOVA gets 16K; the planner finds 16K at a small IOVA too.
    let result = plan([
      "--address", "0x7f0000201000", "--length", "0x3000", "--iova", "auto",
      "--page-sizes", "0xfffff000", "--phyr", "0x140001000:0x3000", "--json",
    ])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains(#""pageSize":"0x4000","blockCount":1"#), "\(result.stdout)")
  }

  @Test(arguments: [
    (["--phyr", "0x100000000:0x1000"], "--phyr"),  // lengths do not add up to 0x2000
    (["--phyr", "0x100000000:0x1000", "--phyr", "0x100000800:0x1000"], "--phyr"),  // overlap
    (["--phyr", "0x100000000:0x0", "--phyr", "0x100000000:0x2000"], "--phyr"),  // zero length
    (["--phyr", "0x10000000zz:0x2000"], "--phyr"),  // not a number
  ])
  func malformedInputExitsTwo(extra: [String], argument: String) {
    let result = plan(
      [
        "--address", "0x1000", "--length", "0x2000", "--iova", "0x1000", "--page-sizes",
        "0xfffff000",
      ]
        + extra)
    #expect(result.status == 2, "\(result.stdout) \(result.stderr)")
    #expect(result.stderr.contains(argument), "\(result.stderr)")
  }
}
