// The control channel: 128-byte SEND/RECV messages over the connection's QP.
//
// The client says hello (its largest message size and its data region), the
// server answers ready (its data region and registration plan). Then, per
// measurement, the client sends run, the server prepares and answers ack,
// and both run the measurement; bye ends the session.

import RDMACM
import Verbs

/// One control message: a kind and up to fifteen 64-bit words, little-endian.
struct Message: Equatable {
  enum Kind: UInt64 {
    case hello = 1, ready, run, ack, bye
  }

  var kind: Kind
  var words: [UInt64]

  static let wordCount = 15

  init(_ kind: Kind, _ words: [UInt64] = []) {
    precondition(words.count <= Message.wordCount)
    self.kind = kind
    self.words = words
  }

  /// The word at `index`, 0 past the end.
  subscript(index: Int) -> UInt64 { index < words.count ? words[index] : 0 }

  func store(at pointer: UnsafeMutableRawPointer) {
    pointer.storeBytes(of: kind.rawValue.littleEndian, toByteOffset: 0, as: UInt64.self)
    for slot in 0..<Message.wordCount {
      pointer.storeBytes(of: self[slot].littleEndian, toByteOffset: 8 + 8 * slot, as: UInt64.self)
    }
  }

  init(loading pointer: UnsafeRawPointer) throws {
    let raw = UInt64(littleEndian: pointer.loadUnaligned(as: UInt64.self))
    guard let kind = Kind(rawValue: raw) else {
      throw PerfError(
        "the peer sent control message kind \(raw); is it an rdma-perf of this version?")
    }
    self.kind = kind
    words = (0..<Message.wordCount).map {
      UInt64(littleEndian: pointer.loadUnaligned(fromByteOffset: 8 + 8 * $0, as: UInt64.self))
    }
  }
}

/// Where the control messages live in the one-page control buffer.
enum ControlLayout {
  static let bufferBytes = 4096
  static let messageBytes = 128
  /// Receive slots, each posted once and re-posted as soon as it is read.
  static let receiveSlots = 2
  static let sendOffset = 2048
  /// Work request ids: receives use their slot number.
  static let sendID: UInt64 = 1 << 32
}

/// Posts every control receive slot (before connect or accept).
func postControlReceives(_ qp: borrowing QueuePair, _ control: borrowing MemoryRegion) throws {
  for slot in 0..<ControlLayout.receiveSlots {
    try qp.postReceive(
      control.scatterGather(
        offset: slot * ControlLayout.messageBytes, count: ControlLayout.messageBytes),
      id: UInt64(slot))
  }
}

/// Sends one message and waits until the send completed.
func send(
  _ message: Message, _ pending: inout PendingCompletions, _ id: borrowing ConnectionID,
  _ qp: borrowing QueuePair, _ cq: borrowing CompletionQueue, _ control: borrowing MemoryRegion,
  base: UnsafeMutableRawPointer
) throws {
  message.store(at: base + ControlLayout.sendOffset)
  try qp.postSend(
    .send,
    control.scatterGather(offset: ControlLayout.sendOffset, count: ControlLayout.messageBytes),
    id: ControlLayout.sendID)
  _ = try pending.next(.send, on: cq, of: id, timeout: LivenessCheck.controlLimit)
}

/// Waits for the next message (up to `timeout`; the client gives the peer
/// timeout, the server none, as its client may measure for minutes between
/// messages), re-posts its slot and decodes it.
func receive(
  _ pending: inout PendingCompletions, _ id: borrowing ConnectionID, _ qp: borrowing QueuePair,
  _ cq: borrowing CompletionQueue, _ control: borrowing MemoryRegion, base: UnsafeMutableRawPointer,
  timeout: Duration? = nil
) throws -> Message {
  let wc = try pending.next(.receive, on: cq, of: id, timeout: timeout)
  // A receive's id is the slot this side posted it with (0 or 1), never the peer's.
  let offset = Int(wc.id) * ControlLayout.messageBytes
  guard wc.byteLength == ControlLayout.messageBytes else {
    throw PerfError(
      "the peer sent a \(wc.byteLength)-byte control message; expected \(ControlLayout.messageBytes)"
    )
  }
  let message = try Message(loading: base + offset)
  try qp.postReceive(
    control.scatterGather(offset: offset, count: ControlLayout.messageBytes), id: wc.id)
  return message
}

/// A failure rdma-perf reports on one line.
struct PerfError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}
