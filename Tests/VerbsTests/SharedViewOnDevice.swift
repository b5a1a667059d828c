import Foundation
import TestSupport
import Testing

@testable import Verbs

/// `ProtectionDomain.unsafeSharedView()`: owned-tier regions in a scoped
/// domain (what rdma-perf's registration cache registers through), and the
/// view never deallocates the domain it borrows.
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct SharedViewOnDevice {
  @Test func registersInTheScopedDomainAndLeavesItAllocated() throws {
    let context = try DeviceLab.open()
    try expectNoLeaks("shared view") {
      let buffer = try PageAlignedBuffer(byteCount: 8192)
      // withProtectionDomain deallocates the domain afterwards and throws if
      // that fails: it would, had the view deallocated it already.
      try context.withProtectionDomain { pd in
        let view = pd.unsafeSharedView()
        let region = try view.unsafeRegister(
          UnsafeMutableRawBufferPointer(start: buffer.baseAddress, count: 4096),
          access: [.localWrite, .remoteRead])
        #expect(region.domain === view)
        #expect(region.raw.pointee.pd == pd.raw)
        _ = expectVerbsError(.busy, operation: "ibv_dealloc_pd", errno: EBUSY) { try view.close() }
        try region.close()
        try view.close()
        // The scoped domain still registers after the view is closed.
        let scoped = try pd.register(buffer, access: .localWrite)
        #expect(scoped.lkey != 0)
      }
    }
  }
}
