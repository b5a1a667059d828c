import Foundation
import Phyr
import TestSupport
import Testing
import Verbs

@testable import Umem

/// Umems on a real RDMA device (rxe under `ci/rxe`): the host checks again in
/// the VM's kernel, registration with a plan, and data through the region.
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct UmemOnDevice {
  @Test(arguments: [UmemBuffer.Backing.pages, .transparentHuge])
  func pinsAndResolvesInThisKernel(_ backing: UmemBuffer.Backing) throws {
    let buffer = try UmemBuffer(byteCount: 8 << 20, backing: backing)
    try expectNoLeaks("pin \(backing)") {
      let umem = try Umem(pinning: buffer, offset: 0x340, length: (8 << 20) - 0x1000)
      let layout = try umem.resolve()
      TestPagemap.check(layout)
      #expect(try umem.verify(layout).isEmpty)
      if backing == .transparentHuge {
        // The lab's kernels hand out huge pages for an aligned 8 MiB
        // buffer; without them the 2 MiB plan below cannot be checked.
        let huge = try buffer.obtained().transparentHugeBytes
        #expect(huge == 8 << 20, "THP bytes \(huge): no huge pages in this kernel?")
        let plan = try layout.plan(
          pageSizes: PageSizes(rawValue: 0x20_1000), iova: .keep(umem.address))
        #expect(plan.pageSize == (huge == 8 << 20 ? 2 << 20 : 4096), "\(plan)")
      }
      try umem.unpin()
    }
  }

  @Test func registersWithItsPlan() throws {
    let context = try DeviceLab.open()
    let cap = try context.attributes().pageSizeCapability
    try context.withProtectionDomain { pd in
      let buffer = try UmemBuffer(byteCount: 8 << 20, backing: .transparentHuge)
      try expectNoLeaks("register with a plan") {
        try registerAndCheck(pd: pd, buffer: buffer, pageSizes: PageSizes(pageSizeCap: cap))
      }
    }
  }

  func registerAndCheck(
    pd: borrowing ProtectionDomain, buffer: borrowing UmemBuffer, pageSizes: PageSizes
  )
    throws
  {
    let umem = try Umem(pinning: buffer, access: [.localWrite, .remoteRead, .remoteWrite])
    let layout = try umem.resolve()
    let plan = try layout.plan(pageSizes: pageSizes, iova: .any)
    #expect(plan.pageSize != nil)
    let planned = try pd.register(
      umem, plan: plan, access: [.localWrite, .remoteRead, .remoteWrite])
    #expect(planned.region.iova == plan.iova)
    #expect(planned.region.length == 8 << 20)
    #expect(planned.region.address == umem.address)
    #expect(ResourceSnapshot.countOwn("mr") == 1)
    #expect(planned.plan == plan)
    try planned.deregister()
    // The one-call form plans for the device and registers.
    let again = try pd.register(umem, pageSizes: pageSizes, iova: .keep(umem.address))
    #expect(again.region.iova == umem.address)
    try again.deregister()
    // A zero IOVA for a buffer that does not start on a page: a typed error.
    let odd = try Umem(pinning: buffer, offset: 0x10, length: 4096)
    let zero = try odd.resolve().plan(pageSizes: pageSizes, iova: .zeroBased)
    expectVerbsError(.invalidArgument, operation: "ibv_reg_mr", errno: EINVAL) {
      _ = try pd.register(odd, plan: zero)
    }
  }

  /// The hugetlb backings in the lab, which reserves 2 MiB and 1 GiB pages at
  /// boot: pinned, resolved and planned as on the host, and a 2 MiB-backed
  /// buffer registered with its plan.
  @Test func hugetlbBackingsPinPlanAndRegister() throws {
    try requireOrSkip(try HugetlbCases.twoMegabytePages(), "hugetlb 2M")
    try requireOrSkip(try HugetlbCases.oneGigabytePage(), "hugetlb 1G")
    let context = try DeviceLab.open()
    let cap = try context.attributes().pageSizeCapability
    try context.withProtectionDomain { pd in
      let outcome = try withHugetlbPages(pageSize: 2 << 20, count: 4) {
        let buffer = try UmemBuffer(byteCount: 8 << 20, backing: .hugetlb2M)
        try expectNoLeaks("register hugetlb 2M") {
          try registerAndCheck(pd: pd, buffer: buffer, pageSizes: PageSizes(pageSizeCap: cap))
        }
      }
      try requireOrSkip(outcome, "hugetlb 2M registration")
    }
  }

  @Test func writeAndReadThroughPlannedRegions() throws {
    let context = try DeviceLab.open()
    try expectNoLeaks("write and read through planned regions") {
      let pageSizes = PageSizes(pageSizeCap: try context.attributes().pageSizeCapability)
      let pd = try context.allocateProtectionDomain()
      let cqA = try context.createCompletionQueue(entries: 16)
      let cqB = try context.createCompletionQueue(entries: 16)
      let a = try pd.createQueuePair(sendCompletions: cqA, receiveCompletions: cqA)
      let b = try pd.createQueuePair(sendCompletions: cqB, receiveCompletions: cqB)
      try a.connectLoopback(with: b)

      let size = 4 << 20
      let bufferA = try UmemBuffer(byteCount: size, backing: .transparentHuge)
      let bufferB = try UmemBuffer(byteCount: size, backing: .pages)
      let all: MemoryAccess = [.localWrite, .remoteWrite, .remoteRead]
      let umemA = try Umem(pinning: bufferA, access: all)
      let umemB = try Umem(pinning: bufferB, access: all)
      // A at the planner's IOVA (small, not the address), B at its address.
      let mrA = try pd.register(umemA, pageSizes: pageSizes, iova: .any, access: all)
      let mrB = try pd.register(
        umemB, pageSizes: pageSizes, iova: .keep(umemB.address), access: all)
      #expect(mrA.region.iova != umemA.address)

      let pattern = (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
      bufferA.withUnsafeMutableBytes {
        $0.baseAddress!.advanced(by: 8192).copyMemory(from: pattern, byteCount: pattern.count)
      }
      // RDMA WRITE A -> B, across B's page boundaries.
      try a.postSend(
        .write(to: mrB.region.remote.advanced(by: 1 << 20)),
        mrA.region.scatterGather(offset: 8192, count: pattern.count), id: 1)
      try cqA.wait(for: 1)[0].checkSuccess()
      let landed = bufferB.withUnsafeMutableBytes {
        Array($0[(1 << 20)..<((1 << 20) + pattern.count)])
      }
      #expect(landed == pattern)
      // RDMA READ B -> A at another offset (A's IOVA is the planner's).
      try a.postSend(
        .read(from: mrB.region.remote.advanced(by: 1 << 20)),
        mrA.region.scatterGather(offset: 3 << 20, count: pattern.count), id: 2)
      try cqA.wait(for: 1)[0].checkSuccess()
      let back = bufferA.withUnsafeMutableBytes {
        Array($0[(3 << 20)..<((3 << 20) + pattern.count)])
      }
      #expect(back == pattern)
      // And B reads from A by A's planned IOVA.
      try b.postSend(
        .read(from: mrA.region.remote.advanced(by: 8192)),
        mrB.region.scatterGather(offset: 0, count: 4096), id: 3)
      try cqB.wait(for: 1)[0].checkSuccess()
      #expect(bufferB.withUnsafeMutableBytes { Array($0[0..<4096]) } == Array(pattern[0..<4096]))
    }
  }

  /// Registered pages are long-term DMA pins: Linux 5.13+ copies them into a
  /// forked child at fork time, so the parent's frames stay put even when it
  /// writes while the child lives (compare the host test, where mlock alone
  /// lets the parent's pages move).
  @Test func forkCopiesRegisteredPagesIntoTheChild() throws {
    #expect(ForkProtection.current == .unneeded)
    let (status, report, output) = inspectJSON([
      "inspect", "--size", "1M", "--register", "--fork-check", "--json",
    ])
    #expect(status == 0, "\(output)")
    let fork = try #require(report["fork"] as? [String: Any], "\(output)")
    #expect(fork["registered"] as? Bool == true)
    #expect(fork["childCopiedPages"] as? Int == 256, "\(fork)")
    #expect(fork["childSharedPages"] as? Int == 0, "\(fork)")
    #expect(fork["parentMovedPagesAfterWrite"] as? Int == 0, "\(fork)")
  }

  @Test func inspectRegistersAndReplans() throws {
    for backing in ["plain", "thp"] {
      let (status, report, output) = inspectJSON([
        "inspect", "--size", "4M", "--backing", backing, "--register", "--json",
      ])
      #expect(status == 0, "\(output)")
      let registration = try #require(report["register"] as? [String: Any], "\(output)")
      #expect(registration["iova"] as? String == report["iova"] as? String)
      expectReferenceAgrees(report)
      let again = try #require(replan(report))
      #expect(planFields(again) == planFields(report))
    }
  }
}
