// The README's API tour, compiled here so it cannot rot (ci/test checks
// that README.md shows this code verbatim between the marker lines).
import Phyr
import TestSupport
import Testing
import Verbs

// README-BEGIN
/// Plan what an HCA gets for two 2 MiB huge pages at a 2 MiB-aligned VA.
func planTwoHugePages() throws -> (pageSize: UInt64?, blocks: [UInt64]) {
  var phyrs = PhyrList()
  try phyrs.append(address: 0x1_4000_0000, length: 0x20_0000)  // physically apart,
  try phyrs.append(address: 0x1_8000_0000, length: 0x20_0000)  // so two runs
  let iova: UInt64 = 0x7f00_0020_0000
  let pageSizes = PageSizes(pageSizeCap: 0xffff_f000)  // 4K..2G, as rxe and mlx5 report
  guard let pageSize = phyrs.bestPageSize(iova: iova, pageSizes: pageSizes) else {
    return (nil, [])
  }
  return (pageSize, Array(try phyrs.blocks(pageSize: pageSize, iova: iova)))  // 2M each
}

/// Register a buffer, let a peer WRITE into it, and deregister.
func registerForRemoteWrites() throws {
  let context = try DeviceContext.open()  // or open(name: "rxe0")
  try context.withProtectionDomain { pd in
    let buffer = try PageAlignedBuffer(byteCount: 1 << 20)
    let mr = try pd.register(buffer, access: [.localWrite, .remoteWrite, .remoteRead])
    print("tell the peer:", mr.remote)  // IOVA, length and rkey
    // ... post work requests with mr.scatterGather(offset:count:) ...
    try mr.deregister()  // or let it drop: deregistered exactly once either way
  }
}

/// Typed errors say what failed and what to do.
func explainAFailure() {
  do {
    _ = try DeviceContext.open(name: "mlx5_9")
  } catch {
    // error.code == .deviceNotFound or .noDevices; error.operation,
    // error.errno and error.message say which call, why, and the fix.
    print(error)
  }
}
// README-END

@Test func readmePlanIsTheKernelsAnswer() throws {
  let plan = try planTwoHugePages()
  #expect(plan.pageSize == 0x20_0000)
  #expect(plan.blocks == [0x1_4000_0000, 0x1_8000_0000])
}

/// The README's device functions, run on rxe (the suite name puts them in
/// the device stage).
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct ReadmeExampleOnDevice {
  @Test func registerForRemoteWritesRuns() throws {
    try expectNoLeaks("README registration") { try registerForRemoteWrites() }
  }

  @Test func explainAFailureRuns() {
    explainAFailure()
  }
}
