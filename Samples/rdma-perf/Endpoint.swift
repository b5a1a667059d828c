// One side's verbs resources on a connection: protection domain, one
// completion queue, the QP and the registered control page.

import RDMACM
import Verbs

/// Creates the side's resources on `id`, posts the control receives, and
/// hands them to `body` (the QP must exist before connect or accept).
func withEndpoint(
  _ id: borrowing ConnectionID, sendDepth: Int,
  _ body: (
    borrowing ProtectionDomain, borrowing QueuePair, borrowing CompletionQueue,
    borrowing MemoryRegion, UnsafeMutableRawPointer
  ) throws -> Void
) throws {
  let pd = try id.allocateProtectionDomain()
  let cq = try id.createCompletionQueue(entries: sendDepth + 64)
  let qp = try id.createQueuePair(
    pd: pd, completions: cq,
    capacity: QueuePairCapacity(
      sendRequests: sendDepth + 8, receiveRequests: ControlLayout.receiveSlots + 2))
  let controlBuffer = try PageAlignedBuffer(byteCount: ControlLayout.bufferBytes)
  let control = try pd.register(controlBuffer, access: .localWrite)
  try postControlReceives(qp, control)
  try body(pd, qp, cq, control, controlBuffer.baseAddress)
}

/// Data buffers hold an outgoing and an incoming area of the largest
/// message each, rounded up to whole pages.
/// The argument is at most 1 GiB (the global `largestMessage`, checked on
/// both sides), so this cannot overflow.
func dataBytes(largestMessage: Int) -> Int {
  (2 * largestMessage + 4095) & ~4095
}
