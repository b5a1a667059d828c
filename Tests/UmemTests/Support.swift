import Foundation
import Phyr
import PlannerReference
import TestSupport
import Testing
import Verbs

@testable import Umem

/// Expects `body` to throw a `UmemError` with this code and errno, and
/// returns it for further checks.
@discardableResult
func expectUmemError(
  _ code: UmemError.Code, errno: Int32, sourceLocation: SourceLocation = #_sourceLocation,
  _ body: () throws -> Void
) -> UmemError? {
  do {
    try body()
    Issue.record("expected \(code), but nothing was thrown", sourceLocation: sourceLocation)
    return nil
  } catch let error as UmemError {
    #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    #expect(error.errno == errno, "\(error)", sourceLocation: sourceLocation)
    #expect(!error.message.isEmpty, sourceLocation: sourceLocation)
    return error
  } catch {
    Issue.record("expected a UmemError, got \(error)", sourceLocation: sourceLocation)
    return nil
  }
}

/// Independent page-map reading for the tests: the raw entry of each page.
enum TestPagemap {
  static func entries(address: UInt64, length: UInt64) -> [UInt64] {
    let first = address / 4096
    let last = (address + length - 1) / 4096
    let count = Int(last - first + 1)
    let handle = FileHandle(forReadingAtPath: "/proc/self/pagemap")!
    defer { try? handle.close() }
    try! handle.seek(toOffset: first * 8)
    let data = try! handle.read(upToCount: count * 8) ?? Data()
    return data.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
  }

  /// Checks, page by page, that each phyr is physically contiguous and that
  /// the list covers the buffer byte for byte.
  static func check(_ layout: UmemLayout, sourceLocation: SourceLocation = #_sourceLocation) {
    guard let phyrs = layout.phyrs else {
      Issue.record("no phyrs: \(layout)", sourceLocation: sourceLocation)
      return
    }
    #expect(phyrs.totalLength == layout.length, sourceLocation: sourceLocation)
    #expect(phyrs.reduce(0) { $0 + $1.length } == layout.length, sourceLocation: sourceLocation)
    let entries = entries(address: layout.address, length: layout.length)
    let frames = entries.map { $0 & ((1 << 55) - 1) }
    #expect(entries.allSatisfy { $0 >> 63 == 1 }, sourceLocation: sourceLocation)
    // Walk the buffer byte ranges page by page against the runs.
    var page = 0
    var va = layout.address
    let end = layout.address + layout.length
    for run in phyrs {
      var pa = run.address
      var left = run.length
      while left > 0 {
        let pageEnd = (va / 4096 + 1) * 4096
        let step = min(left, min(pageEnd, end) - va)
        #expect(
          pa >> 12 == frames[page],
          "page \(page): run \(run) says frame \(pa >> 12), pagemap \(frames[page])",
          sourceLocation: sourceLocation)
        #expect(pa % 4096 == va % 4096, sourceLocation: sourceLocation)
        pa += step
        va += step
        left -= step
        if va % 4096 == 0 { page += 1 }
      }
    }
    #expect(va == end, sourceLocation: sourceLocation)
    // Maximal runs: neighbours are not physically adjacent.
    for (a, b) in zip(phyrs, phyrs.dropFirst()) {
      #expect(a.end != b.address, sourceLocation: sourceLocation)
    }
  }
}

/// Reserves hugetlbfs pages for a test and restores the pool afterwards.
/// Returns nil (with the reason) when the pool cannot be grown.
func withHugetlbPages<R>(
  pageSize: Int, count: Int, _ body: () throws -> R
) throws -> Result<R, HugetlbUnavailable> {
  let path = HugetlbPool(pageSize: pageSize).path + "/nr_hugepages"
  guard let before = HugetlbPool(pageSize: pageSize).total else {
    return .failure(HugetlbUnavailable(reason: "no hugetlbfs pool of \(pageSize >> 20) MiB"))
  }
  // Pages reserved already (the lab reserves them at boot, when memory is
  // not yet fragmented) are used as they are.
  if let free = HugetlbPool(pageSize: pageSize).free, free >= count {
    return .success(try body())
  }
  func write(_ value: Int) -> Bool {
    guard let handle = FileHandle(forWritingAtPath: path) else { return false }
    defer { try? handle.close() }
    return (try? handle.write(contentsOf: Data("\(value)\n".utf8))) != nil
  }
  guard write(before + count) else {
    return .failure(HugetlbUnavailable(reason: "cannot write \(path) (not root?)"))
  }
  defer { _ = write(before) }
  let now = HugetlbPool(pageSize: pageSize)
  guard let free = now.free, free >= count else {
    return .failure(
      HugetlbUnavailable(
        reason: "asked \(path) for \(before + count) pages, got \(now.total ?? 0) "
          + "(\(now.free ?? 0) free): memory too fragmented"))
  }
  return .success(try body())
}

/// The hugetlb backings, pinned and planned: host tests run them where the
/// pages can be had, device tests in the lab (which reserves them at boot).
enum HugetlbCases {
  /// Four 2 MiB pages: 2 MiB runs, hugetlb backing, a 2 MiB plan of 4 blocks.
  static func twoMegabytePages() throws -> Result<Void, HugetlbUnavailable> {
    try withHugetlbPages(pageSize: 2 << 20, count: 4) {
      let buffer = try UmemBuffer(byteCount: 8 << 20, backing: .hugetlb2M)
      let umem = try Umem(pinning: buffer)
      #expect(try buffer.obtained().kernelPageSize == 2 << 20)
      let layout = try umem.resolve()
      TestPagemap.check(layout)
      for run in layout.phyrs! { #expect(run.length % (2 << 20) == 0, "\(run)") }
      let backing = try umem.backing()
      #expect(backing.ranges.allSatisfy { $0.kind == .hugetlb && $0.pageSize == 2 << 20 })
      let plan = try layout.plan(
        pageSizes: PageSizes(rawValue: 0x4020_1000), iova: .keep(umem.address))
      #expect(plan.pageSize == 2 << 20)
      #expect(plan.blockCount == 4)
    }
  }

  /// One 1 GiB page: one aligned run and a single 1 GiB block.
  static func oneGigabytePage() throws -> Result<Void, HugetlbUnavailable> {
    try withHugetlbPages(pageSize: 1 << 30, count: 1) {
      let buffer = try UmemBuffer(byteCount: 1 << 30, backing: .hugetlb1G)
      let umem = try Umem(pinning: buffer)
      #expect(try buffer.obtained().kernelPageSize == 1 << 30)
      let layout = try umem.resolve()
      #expect(layout.phyrs?.count == 1)
      #expect(layout.phyrs?.first?.address.isMultiple(of: 1 << 30) == true)
      let plan = try layout.plan(
        pageSizes: PageSizes(rawValue: 0x4020_1000), iova: .keep(umem.address))
      #expect(plan.pageSize == 1 << 30)
      #expect(plan.blockCount == 1)
    }
  }
}

/// A case that needs huge pages: in the lab (which reserves them at boot) their
/// absence is a failure; elsewhere the test is skipped (cancelled, which CI
/// counts as skipped) with the reason, never passed silently.
func requireOrSkip<R>(
  _ outcome: Result<R, HugetlbUnavailable>, _ what: String,
  sourceLocation: SourceLocation = #_sourceLocation
) throws {
  guard case .failure(let why) = outcome else { return }
  if DeviceLab.required {
    Issue.record("\(what) pages are unavailable in the lab: \(why)", sourceLocation: sourceLocation)
  } else {
    try Test.cancel("\(what) pages unavailable here: \(why)", sourceLocation: sourceLocation)
  }
}

struct HugetlbUnavailable: Error, CustomStringConvertible {
  var reason: String
  var description: String { reason }
}

/// Runs `umem` with arguments and parses its JSON output.
func inspectJSON(_ arguments: [String], prefix: [String] = []) -> (Int32, [String: Any], String) {
  let result = TestTools.run(prefix + [TestTools.executable("umem")] + arguments)
  let object = (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any]
  return (result.status, object ?? [:], result.stderr + result.stdout)
}

/// The answer of `umem plan` for an inspect report, with the report's IOVA.
func replan(_ report: [String: Any]) -> [String: Any]? {
  guard let phyrs = report["phyrs"] as? [[String]] else { return nil }
  var arguments = [
    "plan", "--address", report["address"] as! String, "--length", report["length"] as! String,
    "--iova", report["iova"] as! String, "--page-sizes", report["pageSizes"] as! String, "--json",
  ]
  for pair in phyrs { arguments += ["--phyr", "\(pair[0]):\(pair[1])"] }
  return inspectJSON(arguments).1
}

/// A JSON number or hex/decimal string as a UInt64.
private func number(_ value: Any?) -> UInt64? {
  if let n = value as? Int { return UInt64(exactly: n) }
  if let text = value as? String {
    return text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
  }
  return nil
}

/// What the brute-force reference (PlannerReference, which shares no code
/// with the planner) answers for an inspect or plan report's own phyrs, IOVA
/// and page-size bitmap: page size (0 for none) and block count.
func referenceAnswer(_ report: [String: Any]) -> (pageSize: UInt64, blocks: UInt64)? {
  guard let pairs = report["phyrs"] as? [[String]], let iova = number(report["iova"]),
    let bitmap = number(report["pageSizes"])
  else { return nil }
  var phyrs: [Phyr] = []
  for pair in pairs {
    guard pair.count == 2, let address = number(pair[0]), let length = number(pair[1]) else {
      return nil
    }
    phyrs.append(Phyr(address: address, length: length))
  }
  let length = phyrs.reduce(UInt64(0)) { $0 + $1.length }
  let size = Reference.bestPageSize(phyrs, iova: iova, bitmap: bitmap)
  return (size, size == 0 ? 0 : Reference.blockCount(length: length, iova: iova, size: size))
}

/// Expects a report's page size and block count to be the reference's.
func expectReferenceAgrees(
  _ report: [String: Any], sourceLocation: SourceLocation = #_sourceLocation
) {
  guard let want = referenceAnswer(report) else {
    Issue.record(
      "report has no phyrs, IOVA or page sizes: \(report)", sourceLocation: sourceLocation)
    return
  }
  let got = (pageSize: number(report["pageSize"]) ?? 0, blocks: number(report["blockCount"]) ?? 0)
  #expect(
    got.pageSize == want.pageSize && got.blocks == want.blocks,
    "planner: page \(got.pageSize), \(got.blocks) blocks; reference: page \(want.pageSize), \(want.blocks) blocks",
    sourceLocation: sourceLocation)
}

let planKeys = ["pageSize", "blockCount", "firstBlock", "lastBlock", "iova", "dmaOffset"]

func planFields(_ object: [String: Any]) -> [String] {
  planKeys.map { "\(object[$0] ?? "missing")" }
}
