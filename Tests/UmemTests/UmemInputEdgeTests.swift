import Foundation
import Phyr
import TestSupport
import Testing
import Verbs

@testable import Umem

/// Issue 10: inputs that used to trap in the Umem module or the `umem`
/// tool, each test named for the cause it pins.
@Suite struct UmemInputEdgeTests {
  @Test(arguments: UmemBuffer.Backing.allCases)
  func cause2HugeSizesThrowInsteadOfTrapping(backing: UmemBuffer.Backing) {
    // Rounding up to the backing's pages overflows; for THP so does the
    // slack that aligns the start (the Int.max - 0x2fffff).
    var sizes = [Int.max, Int.max - backing.alignment + 2]
    if backing == .transparentHuge { sizes.append(Int.max - 0x2f_ffff) }
    for size in sizes {
      let error = expectUmemError(.invalidArgument, errno: EOVERFLOW) {
        _ = try UmemBuffer(byteCount: size, backing: backing)
      }
      #expect(error?.checkedBeforeCall == true)
      #expect(error?.message.contains("allocate less") == true, "\(String(describing: error))")
    }
    // Sizes that fit the arithmetic reach mmap, which refuses them.
    #expect(throws: UmemError.self) {
      _ = try UmemBuffer(byteCount: Int.max - (4 << 30), backing: backing)
    }
  }

  @Test(arguments: [
    ["--size", "4K", "--offset", "0xffffffffffffffff"],
    ["--size", "0x3fffffffffffffff", "--offset", "0x7fffffffffffffff"],
    ["--size", "4K", "--offset", "18446744073709551616"],
    ["--size", "4K", "--page-sizes", "0"],
  ])
  func cause3InspectRefusesSizesThatOverflow(arguments: [String]) {
    let result = TestTools.run([TestTools.executable("umem"), "inspect"] + arguments)
    // ArgumentParser's usage error, never a signal.
    #expect(result.status == 64, "\(result.stdout) \(result.stderr)")
    #expect(result.stderr.contains("Error:"), "\(result.stderr)")
  }

  @Test(arguments: ["0x7fffffffffd00000", "0x3fffffffffd00000"])
  func cause3LargeButValidSizesFailCleanly(offset: String) {
    // Passes the tool's checks; the library then refuses it with an error
    // (cause 2's rounding for the first, mmap for the second).
    let result = TestTools.run([
      TestTools.executable("umem"), "inspect", "--size", "1", "--offset", offset, "--backing",
      "thp",
    ])
    #expect(result.status == 1, "\(result.stdout) \(result.stderr)")
    #expect(result.stderr.contains("umem inspect: mmap"), "\(result.stderr)")
  }

  @Test func tableBytesSaturateForByteSizedPages() throws {
    let list = try PhyrList([Phyr(address: 0, length: 1 << 62)])
    let layout = UmemLayout(
      address: 0, length: 1 << 62, pageCount: 1 << 50, phyrs: list,
      physicalAddressesAvailable: true, unavailableReason: nil, notPresentPages: [])
    let plan = try layout.plan(pageSizes: PageSizes(rawValue: 1), iova: .keep(1))
    #expect(plan.blockCount == 1 << 62)
    #expect(plan.tableBytes == UInt64.max)
    #expect(plan.tableBytesAt4K == ((1 << 50) + 1) * 8)
  }

  /// Found by the pagemap fuzz target: rounding the end up added the page
  /// size before subtracting one, so a range in the last page but one trapped.
  @Test func checkRoundsUpTheLastPagesWithoutTrapping() throws {
    let range = try Umem.check(address: 0xffff_ffff_ffff_e000, length: 0x1000, access: .localWrite)
    #expect(range.start == 0xffff_ffff_ffff_e000 && range.end == 0xffff_ffff_ffff_f000)
    let decoder = PagemapDecoder(address: 0xffff_ffff_ffff_e800, length: 0x800)
    #expect(decoder.lastPage == 0)
    expectUmemError(.invalidArgument, errno: EINVAL) {
      _ = try Umem.check(address: 0xffff_ffff_ffff_f000, length: 1, access: .localWrite)
    }
  }

  @Test func decoderRefusesFramesNoPhysicalAddressHas() {
    let present: UInt64 = 1 << 63
    var decoder = PagemapDecoder(address: 0x7000_0000_0000, length: 2 * 4096)
    [present | (1 << 52), present | ((1 << 52) - 1)].withUnsafeBufferPointer { decoder.feed($0) }
    let layout = decoder.finish()
    #expect(layout.phyrs == nil && !layout.physicalAddressesAvailable)
    #expect(layout.unavailableReason?.contains("2^52") == true)
    // The highest real frame gives a run that ends at the top of the address space.
    var top = PagemapDecoder(address: 0x7000_0000_0000, length: 4096)
    [present | ((1 << 52) - 1)].withUnsafeBufferPointer { top.feed($0) }
    #expect(
      top.finish().phyrs.map(Array.init) == [Phyr(address: 0xffff_ffff_ffff_f000, length: 4096)])
  }

  /// `umem inspect --json | umem plan --phyrs-file -` gives inspect's own plan.
  @Test func cause7InspectJSONPlansThroughStandardInput() throws {
    let umem = TestTools.executable("umem")
    let inspect = TestTools.run([umem, "inspect", "--size", "8M", "--json"])
    let report = try #require(
      (try? JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8))) as? [String: Any],
      "\(inspect.stderr)")
    guard report["phyrs"] is [[String]] else { return }  // no CAP_SYS_ADMIN
    let result = TestTools.run([
      "/bin/sh", "-c",
      "\"$0\" inspect --size 8M --json | \"$0\" plan --iova auto --phyrs-file - --json",
      umem,
    ])
    #expect(result.status == 0, "\(result.stderr)")
    let plan = try #require(
      (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any],
      "\(result.stdout) \(result.stderr)")
    #expect(plan["blockCount"] as? Int ?? 0 >= 1, "\(plan)")
  }
}

/// The cases that pin memory run with the other pinning tests, one at a
/// time: their leak checks read the process's VmLck.
extension UmemHostTests {
  @Test func verifyRefusesALayoutOfAnotherLength() throws {
    let buffer = try UmemBuffer(byteCount: 16 << 10)
    let umem = try Umem(pinning: buffer)
    var layout = try umem.resolve()
    guard let phyrs = layout.phyrs else { return }  // no CAP_SYS_ADMIN
    layout.phyrs = try PhyrList([Phyr(address: phyrs[0].address, length: 0x1000)])
    expectUmemError(.invalidArgument, errno: EINVAL) { _ = try umem.verify(layout) }
  }

  @Test func pinningOffsetsOutsideTheBufferThrow() throws {
    let buffer = try UmemBuffer(byteCount: 8192)
    for (offset, length) in [(Int.min, nil), (-1, nil), (8193, nil), (0, 8193), (1, Int.max)]
      as [(Int, Int?)]
    {
      expectUmemError(.invalidArgument, errno: EINVAL) {
        _ = try Umem(pinning: buffer, offset: offset, length: length)
      }
    }
  }
}
