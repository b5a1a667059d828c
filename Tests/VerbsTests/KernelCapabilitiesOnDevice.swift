import Foundation
import TestSupport
import Testing
import UmemSystem
import Verbs

/// What the running kernel's rxe offers, checked against what is known per
/// kernel (mainline `rdma_rxe`): memory windows since 5.14 (all lab
/// kernels), on-demand paging since 6.15 (the lab's 7.x, not Debian 12's 6.1
/// or 6.12), dma-buf registrations on none. Prints one `capabilities
/// RELEASE: ...` line for the report.
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct KernelCapabilitiesOnDevice {
  /// Whether `rdma_rxe` in this kernel offers ODP (mainline 6.15).
  static let expectsOnDemandPaging = KernelVersion.atLeast(6, 15)

  @Test func rxeOffersWhatItsKernelShould() throws {
    let context = try DeviceLab.open()
    let attributes = try context.attributes()
    let capabilities = try context.capabilities()
    let odp = attributes.onDemandPaging
    print(
      "capabilities \(KernelVersion.release) \(context.name): "
        + "odp \(odp.supported) (implicit \(odp.implicit), rc ops 0x\(String(odp.reliableConnectedOperations, radix: 16))), "
        + "odp registration \(capabilities.onDemandPaging), dma-buf \(capabilities.dmabufRegistration), "
        + "rereg \(capabilities.reregistration), max_mw \(attributes.maxMemoryWindows)")
    // The attribute and the probe agree with each other...
    #expect(capabilities.onDemandPaging == odp.supported)
    // ... and with the kernel: these facts are about rxe only.
    guard context.name.hasPrefix("rxe") else { return }
    #expect(odp.supported == Self.expectsOnDemandPaging, "kernel \(KernelVersion.release)")
    if Self.expectsOnDemandPaging {
      // RC send, receive, write, read and atomics (IBV_ODP_SUPPORT_SEND = 1,
      // RECV 2, WRITE 4, READ 8, ATOMIC 16).
      #expect(odp.reliableConnectedOperations & 0x1f == 0x1f)
    }
    #expect(capabilities.dmabufRegistration == false)
    #expect(attributes.maxMemoryWindows > 0)
  }

  /// On a kernel with ODP: a 256 MiB registration with `.onDemand` pins
  /// nothing (VmPin stays), where a plain one of the same buffer pins all of
  /// it. On kernels without ODP the registration must fail with a typed
  /// error, not pin.
  @Test func onDemandRegistrationPinsNothing() throws {
    let context = try DeviceLab.open()
    let pd = try context.allocateProtectionDomain()
    let size = 256 << 20
    let buffer = try PageAlignedBuffer(byteCount: size)
    let before = MemoryLockStatus.current().pinnedBytes
    if Self.expectsOnDemandPaging {
      let region = try pd.register(buffer, access: [.localWrite, .onDemand])
      #expect(MemoryLockStatus.current().pinnedBytes == before)
      try region.deregister()
      // The control: the same buffer without ODP pins every page.
      let pinned = try pd.register(buffer, access: .localWrite)
      #expect(MemoryLockStatus.current().pinnedBytes == before + UInt64(size))
      try pinned.deregister()
    } else {
      #expect(throws: VerbsError.self) {
        let region = try pd.register(buffer, access: [.localWrite, .onDemand])
        try region.deregister()
      }
      #expect(MemoryLockStatus.current().pinnedBytes == before)
    }
    #expect(MemoryLockStatus.current().pinnedBytes == before)
  }
}
