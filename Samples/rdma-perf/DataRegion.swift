// The data buffer each side measures with: allocated as a UmemBuffer,
// pinned as a Umem, planned for the device's page sizes and registered with
// that plan. Its first half is the outgoing area, the second the incoming.

import Phyr
import ToolSupport
import Umem
import Verbs

/// How a side's data buffer was backed, planned and registered; part of the
/// report.
struct PlanReport: Codable {
  var bytes: UInt64
  var backing: String
  var kernelPageSize: UInt64
  var transparentHugeBytes: UInt64
  /// False where physical addresses could not be read (no CAP_SYS_ADMIN):
  /// then the buffer is registered at its address without a plan.
  var planned: Bool
  var phyrs: Int?
  var iova: String
  var hcaPageSize: UInt64?
  var blocks: UInt64?
  var tableBytes: UInt64?
  var entriesAt4K: UInt64?
  var limit: String?
  var note: String?

  /// The words a server sends in its ready message, after its IOVA and rkey.
  var words: [UInt64] {
    [
      bytes, UInt64(planned ? 1 : 0), hcaPageSize ?? 0, blocks ?? 0, entriesAt4K ?? 0,
      UInt64(UmemBuffer.Backing.allCases.firstIndex { $0.rawValue == backing } ?? 0),
      kernelPageSize, transparentHugeBytes, UInt64(phyrs ?? 0),
    ]
  }

  /// The peer's report, from its ready message (fewer details).
  init(peerWords message: Message, iova: UInt64) {
    bytes = message[2]
    planned = message[3] != 0
    hcaPageSize = planned ? message[4] : nil
    blocks = planned ? message[5] : nil
    entriesAt4K = planned ? message[6] : nil
    // The peer's words are not trusted: a count that overflows has no table size.
    tableBytes = blocks.flatMap {
      let (bytes, overflow) = $0.multipliedReportingOverflow(by: RegistrationPlan.entryBytes)
      return overflow ? nil : bytes
    }
    let backings = UmemBuffer.Backing.allCases
    backing = backings[Int(min(message[7], UInt64(backings.count - 1)))].rawValue
    kernelPageSize = message[8]
    transparentHugeBytes = message[9]
    phyrs = planned ? Int(clamping: message[10]) : nil
    self.iova = hex(iova)
  }

  init(
    bytes: Int, obtained: UmemBuffer.Obtained, layout: UmemLayout, plan: RegistrationPlan?,
    iova: UInt64
  ) {
    self.bytes = UInt64(bytes)
    backing = obtained.requested.rawValue
    kernelPageSize = obtained.kernelPageSize
    transparentHugeBytes = obtained.transparentHugeBytes
    planned = plan != nil
    phyrs = layout.phyrs?.count
    self.iova = hex(iova)
    hcaPageSize = plan?.pageSize
    blocks = plan?.blockCount
    tableBytes = plan?.tableBytes
    entriesAt4K = plan?.entriesAt4K
    limit = plan.map { "\($0.iovaPlan)" }
    note = plan == nil ? layout.unavailableReason : nil
  }

  /// One line for the text report.
  var summary: String {
    guard planned, let size = hcaPageSize, let blocks else {
      return "\(bytes) B \(backing), registered at its address without a plan"
        + (note.map { " (\($0))" } ?? "")
    }
    let phyrText = phyrs.map { ", \($0) phyrs" } ?? ""
    return "\(bytes) B \(backing)\(phyrText), iova \(iova), HCA page \(PageSizes.describe(size)), "
      + "\(blocks) blocks (\(entriesAt4K ?? 0) at 4 KiB)"
  }
}

/// Allocates, pins, plans and registers `bytes` of data buffer on `pd`, and
/// hands the region, the buffer's first byte and the report to `body`.
func withDataRegion(
  _ pd: borrowing ProtectionDomain, pageSizeCap: UInt64, bytes: Int, backing: UmemBuffer.Backing,
  iovaPolicy: IOVAChoice,
  _ body: (borrowing MemoryRegion, UnsafeMutableRawPointer, PlanReport) throws -> Void
) throws {
  let access: MemoryAccess = [.localWrite, .remoteRead, .remoteWrite]
  let buffer = try UmemBuffer(byteCount: bytes, backing: backing)
  let umem = try Umem(pinning: buffer, access: access)
  let obtained = try buffer.obtained()
  let layout = try umem.resolve()
  if layout.physicalAddressesAvailable {
    let policy: IOVAPolicy = iovaPolicy == .any ? .any : .keep(umem.address)
    let plan = try layout.plan(pageSizes: PageSizes(pageSizeCap: pageSizeCap), iova: policy)
    let planned = try pd.register(umem, plan: plan, access: access)
    let report = PlanReport(
      bytes: bytes, obtained: obtained, layout: layout, plan: plan, iova: plan.iova)
    try body(planned.region, buffer.baseAddress, report)
  } else {
    let region = try pd.register(umem, access: access)
    let report = PlanReport(
      bytes: bytes, obtained: obtained, layout: layout, plan: nil, iova: region.iova)
    try body(region, buffer.baseAddress, report)
  }
}

/// Which IOVA the data region gets.
enum IOVAChoice: String, CaseIterable {
  /// The planner's choice: the IOVA that gives the largest HCA page.
  case any
  /// The buffer's virtual address, as plain `ibv_reg_mr`.
  case keep
}
