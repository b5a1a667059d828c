import Foundation
import TestSupport
import Testing

@testable import Verbs

/// The explicit, error-reporting teardown calls and busy-polling, on a real
/// device: each release shows in the kernel's resource tracker at once (not
/// at the end of a scope), and the kernel's own EBUSY comes back typed.
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct TeardownOnDevice {
  /// Counts of this process's QPs, CQs, MRs and PDs in the kernel.
  /// The tracker's counts (one `rdma resource show`; the kernel's own
  /// entries included, which stay put, so only differences are compared).
  struct Counts: Equatable, CustomStringConvertible {
    var qp = -1
    var cq = -1
    var mr = -1
    var pd = -1
    init() {
      guard let summary = ResourceSnapshot.summary() else { return }
      (qp, cq) = (summary["qp"] ?? -1, summary["cq"] ?? -1)
      (mr, pd) = (summary["mr"] ?? -1, summary["pd"] ?? -1)
    }
    var description: String { "qp \(qp), cq \(cq), mr \(mr), pd \(pd)" }
  }

  /// The leak checks' netlink summary counts what `rdma resource show`
  /// prints, with objects of every kind alive.
  @Test func theNetlinkSummaryIsWhatRdmaPrints() throws {
    let context = try DeviceLab.open()
    try context.withProtectionDomain { pd in
      let cq = try context.createCompletionQueue(entries: 8)
      let qp = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq)
      let buffer = try PageAlignedBuffer(byteCount: 4096)
      let mr = try pd.register(buffer, access: .localWrite)
      let ours = try #require(ResourceSnapshot.summary(), "no netlink answer")
      let tool = try #require(ResourceSnapshot.summaryFromTool(), "rdma did not answer")
      for kind in ["pd", "cq", "qp", "mr", "cm_id"] {
        #expect(ours[kind] != nil && ours[kind] == tool[kind], "\(kind): \(ours) vs \(tool)")
      }
      #expect((ours["mr"] ?? 0) >= 1 && (ours["qp"] ?? 0) >= 1, "\(ours)")
      _ = (mr.lkey, qp.number)  // alive until here; released at the end of the scope
    }
  }

  /// `QueuePair.destroy`, `MemoryRegion.deregister`, `CompletionQueue.destroy`
  /// and `ProtectionDomain.deallocate`, one at a time, each dropping its own
  /// kernel object immediately.
  @Test func eachExplicitReleaseDropsItsKernelObject() throws {
    let context = try DeviceLab.open()
    let start = Counts()
    #expect(start.qp >= 0, "rdma resource show did not answer")
    let pd = try context.allocateProtectionDomain()
    let cq = try context.createCompletionQueue(entries: 8)
    try releaseChildren(pd: pd, cq: cq, start: start)
    // The parents are consumed here, after the function that lent them to
    // their children returned (the lifetime checker needs that split).
    try cq.destroy()
    #expect(Counts().cq == start.cq, "after CQ destroy: \(Counts())")
    try pd.deallocate()
    #expect(Counts() == start, "after PD deallocate: \(Counts())")
  }

  private func releaseChildren(
    pd: borrowing ProtectionDomain, cq: borrowing CompletionQueue, start: Counts
  ) throws {
    let qp = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq)
    let buffer = try PageAlignedBuffer(byteCount: 8192)
    let mr = try pd.register(buffer, access: .localWrite)
    var now = Counts()
    #expect(now.qp == start.qp + 1 && now.cq == start.cq + 1, "\(now)")
    #expect(now.mr == start.mr + 1 && now.pd == start.pd + 1, "\(now)")
    try qp.destroy()
    now = Counts()
    #expect(now.qp == start.qp && now.cq == start.cq + 1, "after QP destroy: \(now)")
    try mr.deregister()
    now = Counts()
    #expect(now.mr == start.mr && now.pd == start.pd + 1, "after MR deregister: \(now)")
  }

  /// `DeviceContext.close` after its children are gone: the device's command
  /// descriptor is closed at once.
  @Test func closingTheContextReleasesItsDescriptor() throws {
    let descriptorsBefore = openDescriptorCount()
    let context = try DeviceLab.open()
    try context.withProtectionDomain { pd in
      let buffer = try PageAlignedBuffer(byteCount: 4096)
      _ = try pd.register(buffer, access: .localWrite)
    }
    #expect(openDescriptorCount() > descriptorsBefore)
    try context.close()
    #expect(openDescriptorCount() == descriptorsBefore)
  }

  /// The kernel refuses to free a domain that still has a region
  /// (`ibv_dealloc_pd` answers EBUSY): a typed `.busy` error, the domain
  /// still usable, and released once the region is gone. The scoped tier's
  /// lifetimes make this unreachable from safe code, so it goes through the
  /// shared implementation that both tiers use.
  @Test func deallocatingADomainThatHasARegionIsBusy() throws {
    let context = try DeviceLab.open()
    let start = Counts()
    let pd = ProtectionDomainCore(raw: try context.core.allocateProtectionDomain())
    let buffer = try PageAlignedBuffer(byteCount: 4096)
    let mr = MemoryRegionCore(
      raw: try pd.register(
        address: buffer.baseAddress, length: 4096, access: .localWrite, iova: nil
      ).raw)
    let error = expectVerbsError(.busy, operation: "ibv_dealloc_pd", errno: EBUSY) {
      try pd.deallocate()
    }
    #expect(error != nil)
    #expect(Counts().pd == start.pd + 1, "the refused domain must still exist")
    try mr.deregister()
    try pd.deallocate()
    #expect(Counts() == start)
  }

  /// `CompletionQueue.poll`, both forms: nothing before the work is done,
  /// then exactly the completions posted, in order.
  @Test func pollingReturnsCompletionsAsTheyArrive() throws {
    let context = try DeviceLab.open()
    try context.withProtectionDomain { pd in
      let cq = try context.createCompletionQueue(entries: 16)
      let peerCQ = try context.createCompletionQueue(entries: 16)
      let a = try pd.createQueuePair(sendCompletions: cq, receiveCompletions: cq)
      let b = try pd.createQueuePair(sendCompletions: peerCQ, receiveCompletions: peerCQ)
      try a.connectLoopback(with: b)
      let buffer = try PageAlignedBuffer(byteCount: 8192)
      let mr = try pd.register(buffer, access: [.localWrite, .remoteWrite, .remoteRead])
      #expect(try cq.poll().isEmpty)
      for id in UInt64(1)...3 {
        try a.postSend(
          .write(to: mr.remote.advanced(by: 4096)), mr.scatterGather(offset: 0, count: 64), id: id)
      }
      var seen: [WorkCompletion] = []
      let deadline = ContinuousClock.now + .seconds(30)
      while seen.count < 3 && ContinuousClock.now < deadline {
        seen += try cq.poll(maximum: 2)
      }
      #expect(seen.map(\.id) == [1, 2, 3])
      #expect(seen.allSatisfy { $0.status.isSuccess && $0.opcode == .rdmaWrite })
      try a.postSend(
        .read(from: mr.remote.advanced(by: 4096)), mr.scatterGather(offset: 0, count: 64), id: 4)
      var ids: [UInt64] = []
      while ids.isEmpty && ContinuousClock.now < deadline {
        _ = try cq.poll(maximum: 4) { ids.append($0.id) }
      }
      #expect(ids == [4])
      #expect(try cq.poll().isEmpty)
    }
  }

  private func openDescriptorCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
  }
}
