// The measurement loops. Like perftest, they busy-poll the completion queue
// (and, for latency, the last byte of the incoming area): sleeping between
// completions would measure the scheduler, not the transfer.

import RDMACM
import Verbs

#if canImport(Glibc)
  import Glibc
#endif

/// What a run measures.
enum Test: UInt64, CaseIterable, Codable {
  case writeBandwidth = 1, readBandwidth, writeLatency, readLatency

  var name: String {
    switch self {
    case .writeBandwidth: "write-bw"
    case .readBandwidth: "read-bw"
    case .writeLatency: "write-lat"
    case .readLatency: "read-lat"
    }
  }

  init?(name: String) {
    guard let test = Test.allCases.first(where: { $0.name == name }) else { return nil }
    self = test
  }

  /// perftest's default iterations for the matching tool.
  var defaultIterations: Int { self == .writeBandwidth ? 5000 : 1000 }

  var isLatency: Bool { self == .writeLatency || self == .readLatency }
}

/// Monotonic nanoseconds (`CLOCK_MONOTONIC`). It never goes back, so a later
/// reading minus an earlier one cannot underflow.
@inline(__always) func nanoseconds() -> UInt64 {
  var now = timespec()
  clock_gettime(CLOCK_MONOTONIC, &now)
  // Seconds since boot: the product stays below 2^64 for 584 years of uptime.
  return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// The local and remote data areas of one run.
struct Areas {
  /// Bytes per message.
  var size: Int
  /// Offset of the incoming area in both sides' buffers (the outgoing one is at 0).
  var incomingOffset: Int
  /// The peer's data region.
  var peer: RemoteBuffer
  /// Our buffer's first byte.
  var base: UnsafeMutableRawPointer

  var peerIncoming: RemoteBuffer {
    get throws(VerbsError) { try peer.advanced(by: UInt64(incomingOffset)) }
  }
  var peerOutgoing: RemoteBuffer { peer }
  /// The byte latency runs watch: the last one of a message.
  var watchedIncoming: UnsafeMutableRawPointer { base + incomingOffset + size - 1 }
  var stampedOutgoing: UnsafeMutableRawPointer { base + size - 1 }
}

/// Checks the connection's event channel now and then while spinning, so a
/// peer that went away ends a spin with its disconnect instead of a hang;
/// and ends a spin that has made no progress for ``silenceLimit``: a peer
/// whose host died sends no disconnect, and a side that only waits for the
/// peer's next write has nothing in flight for the transport to time out.
struct LivenessCheck {
  /// How long a spin may go without progress (`--peer-timeout`); nil: forever.
  nonisolated(unsafe) static var silenceLimit: Duration? = .seconds(5)
  /// How long a control message may take: six times the silence limit, as
  /// the peer may still be finishing a run (an emulated peer took over 5 s).
  static var controlLimit: Duration? { silenceLimit.map { $0 * 6 } }
  var spins = 0
  var quietSince: ContinuousClock.Instant? = nil

  /// Notes progress (a completion, the peer's write): the silence starts over.
  mutating func progressed() { quietSince = nil }

  mutating func tick(_ id: borrowing ConnectionID) throws {
    spins &+= 1
    guard spins & 0x3fff == 0 else { return }
    if let event = try id.waitForEvent(timeout: .zero),
      event.kind == .disconnected
        || event.kind == .deviceRemoval
    {
      throw PerfError("the peer went away during the measurement (\(event.kind))")
    }
    guard let limit = Self.silenceLimit else { return }
    let now = ContinuousClock.now
    guard let since = quietSince else {
      quietSince = now
      return
    }
    if since.duration(to: now) > limit {
      throw PerfError(
        "the peer has been silent for \(limit) during the measurement (no completion, no "
          + "write from it); its host may have died, which sends no disconnect "
          + "(--peer-timeout sets the limit)")
    }
  }
}

/// Takes the completions that are there; throws on a failed one. Returns
/// the id of the last successful send-queue completion, if any.
///
/// A failed completion is often the first sign of a peer that went away
/// (on rxe a WRITE to a dead peer ends with "remote access error"), so the
/// connection's events get up to a second to say so before the completion's
/// own error is reported.
///
/// A receive it takes is a control message that arrived early (the peer
/// saw this side's last WRITE land and sent its next request before this
/// side reaped that WRITE's completion: across hosts the ACK comes late);
/// it goes to `pending`, where the control path finds it.
func reap(
  _ cq: borrowing CompletionQueue, _ id: borrowing ConnectionID,
  _ pending: inout PendingCompletions
) throws -> UInt64? {
  var failure: WorkCompletion? = nil
  var last: UInt64? = nil
  try cq.poll(maximum: 16) { wc in
    if !wc.status.isSuccess {
      failure = failure ?? wc
    } else if wc.opcode == .receive {
      pending.hold(wc)
    } else {
      last = wc.id
    }
  }
  guard let failure else { return last }
  if let event = try? id.waitForEvent(timeout: .seconds(1)),
    event.kind == .disconnected || event.kind == .deviceRemoval
  {
    throw PerfError(
      "the peer went away during the measurement (\(event.kind)); the request in flight "
        + "ended with '\(failure.status)'")
  }
  try failure.checkSuccess()
  return last
}

/// RDMA WRITE or READ bandwidth: keeps up to `depth` requests outstanding,
/// signals every `moderation`-th (and the last), and times from the first
/// post to the last completion, as perftest's `ib_write_bw`/`ib_read_bw`.
/// With `messages`, each request's local buffer comes from that pool,
/// registered as the pool says, and is given back once the request has
/// completed (inside the timed loop: that is the cost being measured).
func measureBandwidth(
  _ test: Test, iterations: Int, depth: Int, moderation: Int, areas: Areas,
  messages: MessageBuffers?,
  _ id: borrowing ConnectionID, _ qp: borrowing QueuePair, _ cq: borrowing CompletionQueue,
  _ data: borrowing MemoryRegion, _ pending: inout PendingCompletions
) throws -> UInt64 {
  let moderation = max(1, min(moderation, depth))
  let fixed =
    test == .writeBandwidth
    ? try data.scatterGather(offset: 0, count: areas.size)
    : try data.scatterGather(offset: areas.incomingOffset, count: areas.size)
  messages?.prepare(depth: depth)
  let operation: SendOperation =
    test == .writeBandwidth ? .write(to: try areas.peerIncoming) : .read(from: areas.peerOutgoing)
  // Both count up to iterations (at most largestIterationCount).
  var posted = 0
  var completed = 0
  var liveness = LivenessCheck()
  let start = nanoseconds()
  while completed < iterations {
    while posted < iterations && posted - completed < depth {
      posted += 1
      // The id counts requests posted so far: a completion with id n means
      // the first n are done (a send queue completes in order).
      let signaled = posted % moderation == 0 || posted == iterations
      let local = try messages?.scatterGather(request: posted, size: areas.size) ?? fixed
      try qp.postSend(operation, local, id: UInt64(posted), signaled: signaled)
    }
    if let done = try reap(cq, id, &pending) {
      // Ids are at most `posted`, which fits in Int.
      let through = Int(done)
      if let messages, through > completed {
        for request in (completed + 1)...through { try messages.complete(request) }
      }
      completed = through
      liveness.progressed()
    } else {
      try liveness.tick(id)
    }
  }
  return nanoseconds() - start
}

/// RDMA WRITE ping-pong, as `ib_write_lat`: each side stamps the last byte
/// of its message with the round number and WRITEs it into the peer's
/// incoming area; the peer spins on that byte, then answers the same way.
/// Returns one half round trip per round, in nanoseconds (client side).
func measureWriteLatency(
  iterations: Int, areas: Areas, isClient: Bool,
  _ id: borrowing ConnectionID, _ qp: borrowing QueuePair, _ cq: borrowing CompletionQueue,
  _ data: borrowing MemoryRegion, _ pending: inout PendingCompletions
) throws -> [UInt64] {
  let local = try data.scatterGather(offset: 0, count: areas.size)
  var stamps: [UInt64] = []
  // iterations <= largestIterationCount (checked on both sides), so + 1 cannot overflow.
  if isClient { stamps.reserveCapacity(iterations + 1) }
  var liveness = LivenessCheck()
  var unreaped = 0
  for round in 0..<iterations {
    let mark = UInt8(round % 255 + 1)
    if !isClient {
      // The server answers: wait for the client's round first.
      while areas.watchedIncoming.load(as: UInt8.self) != mark {
        if try reap(cq, id, &pending) != nil { unreaped = 0 }
        try liveness.tick(id)
      }
    }
    if isClient { stamps.append(nanoseconds()) }
    areas.stampedOutgoing.storeBytes(of: mark, as: UInt8.self)
    try qp.postSend(.write(to: areas.peerIncoming), local, id: UInt64(round), signaled: true)
    unreaped += 1
    if isClient {
      // reap() calls into the provider, so the load below is re-read each time.
      while true {
        if try reap(cq, id, &pending) != nil { unreaped = 0 }
        if areas.watchedIncoming.load(as: UInt8.self) == mark && unreaped == 0 { break }
        try liveness.tick(id)
      }
    }
    liveness.progressed()
  }
  while unreaped > 0 {
    if try reap(cq, id, &pending) != nil { unreaped = 0 } else { try liveness.tick(id) }
  }
  guard isClient else { return [] }
  stamps.append(nanoseconds())
  return (0..<iterations).map { (stamps[$0 + 1] - stamps[$0]) / 2 }
}

/// RDMA READ latency, as `ib_read_lat`: one READ at a time, each timed from
/// post to completion (a full round trip).
func measureReadLatency(
  iterations: Int, areas: Areas,
  _ id: borrowing ConnectionID, _ qp: borrowing QueuePair, _ cq: borrowing CompletionQueue,
  _ data: borrowing MemoryRegion, _ pending: inout PendingCompletions
) throws -> [UInt64] {
  let local = try data.scatterGather(offset: areas.incomingOffset, count: areas.size)
  var samples: [UInt64] = []
  samples.reserveCapacity(iterations)
  var liveness = LivenessCheck()
  for round in 0..<iterations {
    let start = nanoseconds()
    try qp.postSend(.read(from: areas.peerOutgoing), local, id: UInt64(round), signaled: true)
    while try reap(cq, id, &pending) == nil { try liveness.tick(id) }
    liveness.progressed()
    samples.append(nanoseconds() - start)
  }
  return samples
}
