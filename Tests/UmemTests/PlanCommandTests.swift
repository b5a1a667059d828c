import Foundation
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

  @Test func rulesAreNamedAndTheSegmentLimitMattersOnlyBefore615() {
    // One 4 MiB run on a device with 64 KiB scatter-list entries.
    let common = [
      "--address", "0x7f0000400000", "--length", "0x400000", "--iova", "0x7f0000400000",
      "--page-sizes", "0xfffff000", "--phyr", "0x100400000:0x400000", "--max-segment-size", "64K",
    ]
    let newest = plan(common + ["--rules", "newest", "--json"])
    #expect(newest.status == 0, "\(newest.stderr)")
    #expect(newest.stdout.contains(#""pageSize":"0x400000","blockCount":1"#), "\(newest.stdout)")
    #expect(newest.stdout.contains(#""rules":"linux 6.15+","runningKernel":""#), "\(newest.stdout)")
    #expect(newest.stdout.contains(#""maxSegmentSize":"0x10000"}"#), "\(newest.stdout)")
    let older = plan(common + ["--rules", "before-6.15", "--json"])
    #expect(older.status == 0, "\(older.stderr)")
    #expect(older.stdout.contains(#""pageSize":"0x10000","blockCount":64"#), "\(older.stdout)")
    #expect(older.stdout.contains(#""rules":"linux before 6.15""#), "\(older.stdout)")
    // The text report names the rule set and the running kernel.
    let text = plan(common)
    #expect(text.status == 0, "\(text.stderr)")
    let line = text.stdout.split(separator: "\n").first { $0.hasPrefix("rules ") }
    #expect(line?.contains("(running kernel ") == true, "\(text.stdout)")
    let chosen = plan(common + ["--rules", "6.15"])
    #expect(
      chosen.stdout.contains("linux 6.15+ (--rules 6.15; running kernel "), "\(chosen.stdout)")
  }

  @Test(arguments: [
    (["--rules", "6.1"], "--rules 6.1"),
    (["--rules", ""], "--rules"),
    (["--max-segment-size", "0xfff"], "--max-segment-size 0xfff"),
    (["--max-segment-size", "lots"], "--max-segment-size lots"),
  ])
  func badRulesExitTwo(extra: [String], argument: String) {
    let result = plan(
      [
        "--address", "0x1000", "--length", "0x1000", "--iova", "0x1000", "--page-sizes",
        "0xfffff000", "--phyr", "0x100000000:0x1000",
      ] + extra)
    #expect(result.status == 2)
    #expect(result.stderr.contains("umem plan: \(argument)"), "\(result.stderr)")
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

  @Test func cause4EmptyPageSizeBitmapExitsTwo() {
    let result = plan([
      "--address", "0x1000", "--length", "0x1000", "--iova", "auto", "--page-sizes", "0",
      "--phyr", "0x1000:0x1000",
    ])
    #expect(result.status == 2)
    #expect(result.stderr.contains("--page-sizes: 0 offers no page size"), "\(result.stderr)")
  }

  @Test func cause5AutoIOVANamesTheRunBoundary() {
    let result = plan([
      "--address", "0xc00000", "--length", "0x800000", "--iova", "auto",
      "--page-sizes", "0xfffff000", "--phyr", "0xc00000:0x400000", "--phyr", "0x1400000:0x400000",
    ])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(
      result.stdout.contains("limited by     run 1 starts on a boundary aligned only to 4M"),
      "\(result.stdout)")
  }

  @Test func cause6PhyrEndingAtTheTopIsAccepted() {
    let result = plan([
      "--address", "0x1000", "--length", "0x2000", "--iova", "0x1000", "--page-sizes",
      "0xfffff000", "--phyr", "0xfffffffffffff000:0x1000", "--phyr", "0x0:0x1000", "--json",
      "--blocks",
    ])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains(#""blocks":["0xffffffffffffe000","0x0"]"#), "\(result.stdout)")
    // Still an overlap when a range lies inside one that ends at the top.
    let overlap = plan([
      "--address", "0x1000", "--length", "0x2000", "--iova", "0x1000", "--page-sizes",
      "0xfffff000", "--phyr", "0xffffffffffffe000:0x2000", "--phyr", "0xfffffffffffff000:0x1000",
    ])
    #expect(overlap.status == 2 && overlap.stderr.contains("overlaps"), "\(overlap.stderr)")
  }

  /// 50,000 phyrs, one a line, as a file, on standard input, and as inspect's JSON.
  @Test func cause7FiftyThousandPhyrsFromAFileAreFast() throws {
    let count = 50_000
    let pairs = (0..<count).map { (UInt64(0x1_0000_0000) + UInt64($0) * 0x2000, UInt64(0x1000)) }
    let text = pairs.map { "0x\(String($0.0, radix: 16)):0x1000" }.joined(separator: "\n")
    let directory = FileManager.default.temporaryDirectory
    let file = directory.appendingPathComponent("umem-plan-\(getpid()).txt")
    try ("# inspect's layout, one ADDR:LEN a line\n" + text + "\n").write(
      to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let common = [
      "--address", "0x1000", "--length", "0x\(String(count * 0x1000, radix: 16))", "--iova",
      "auto", "--page-sizes", "0xfffff000", "--json",
    ]
    let clock = ContinuousClock()
    let start = clock.now
    let result = plan(common + ["--phyrs-file", file.path])
    #expect(clock.now - start < .seconds(20))
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains(#""blockCount":50000"#), "\(result.stdout)")
    // The same through standard input.
    let piped = TestTools.run(
      ["/bin/sh", "-c", "\"$0\" plan \"$@\" < \"\(file.path)\"", umem] + common + [
        "--phyrs-file", "-",
      ])
    #expect(piped.status == 0 && piped.stdout == result.stdout, "\(piped.stderr)")
    // inspect's JSON stands in for --address, --length and --page-sizes.
    let json = directory.appendingPathComponent("umem-plan-\(getpid()).json")
    let phyrs = pairs.map { "[\"0x\(String($0.0, radix: 16))\",\"0x1000\"]" }
    try
      (#"{"address":"0x1000","length":"0x\#(String(count * 0x1000, radix: 16))","#
      + #""pageSizes":"0xfffff000","phyrs":[\#(phyrs.joined(separator: ","))]}"#)
      .write(to: json, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: json) }
    let fromJSON = plan(["--iova", "auto", "--json", "--phyrs-file", json.path])
    #expect(fromJSON.status == 0 && fromJSON.stdout == result.stdout, "\(fromJSON.stderr)")
  }

  @Test func cause7TooManyInlinePhyrsPointToTheFile() {
    let many = (0..<1001).flatMap {
      ["--phyr", "0x\(String(0x1_0000_0000 + $0 * 0x2000, radix: 16)):0x1000"]
    }
    let result = plan(["--address", "0x1000", "--length", "0x1000"] + many)
    #expect(result.status == 2)
    #expect(result.stderr.contains("--phyrs-file"), "\(result.stderr)")
  }

  @Test(arguments: [
    ("0x1000:0x1000\nnot a phyr\n", "line 2"),
    ("", "holds no ADDR:LEN line"),
    (#"{"phyrs":null,"unavailableReason":"no CAP_SYS_ADMIN"}"#, "no CAP_SYS_ADMIN"),
    (#"{"phyrs":[["0x1000"]]}"#, "phyrs[0]"),
    (#"{"phyrs":[["0x1000","0x0"]]}"#, "length 0"),
    ("{", "is not the JSON"),
  ])
  func cause7BadPhyrsFilesExitTwo(text: String, message: String) throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent(
      "umem-plan-bad-\(getpid())-\(abs(text.hashValue)).txt")
    try text.write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let result = plan([
      "--address", "0x1000", "--length", "0x1000", "--iova", "auto", "--page-sizes",
      "0xfffff000", "--phyrs-file", file.path,
    ])
    #expect(result.status == 2, "\(result.stdout)")
    #expect(result.stderr.contains(message), "\(result.stderr)")
  }
}
