// The client: connects, registers its data buffer through Umem with a plan,
// learns the server's, and runs every test at every size.

import RDMACM
import Umem
import Verbs

struct ClientSettings {
  var address: String
  var port: UInt16
  var tests: [Test]
  var sizes: [Int]
  var iterations: Int?
  var queueDepth: Int
  var cqModeration: Int?
  var backing: UmemBuffer.Backing
  var iova: IOVAChoice
  /// Bandwidth runs from a pool of message buffers, and how they register;
  /// nil: every message from the one data region (today's path).
  var messagePool: (registration: MessageRegistration, count: Int)? = nil

  /// perftest's rule: signal every 100th request, every one above 8 KiB.
  func moderation(size: Int) -> Int { cqModeration ?? (size > 8192 ? 1 : 100) }
}

func runClient(_ settings: ClientSettings, progress: (Result) -> Void) throws -> Report {
  let id = try ConnectionID()
  let destination = try SocketAddress(host: settings.address, port: settings.port)
  try id.resolveAddress(destination, timeout: .milliseconds(2000))
  try id.resolveRoute(timeout: .milliseconds(2000))
  let attributes = try id.deviceAttributes()
  let largest = settings.sizes.max() ?? 1
  let bytes = dataBytes(largestMessage: largest)
  var report: Report? = nil
  try withEndpoint(id, sendDepth: settings.queueDepth) { pd, qp, cq, control, controlBase in
    try withDataRegion(
      pd, pageSizeCap: attributes.pageSizeCapability, bytes: bytes, backing: settings.backing,
      iovaPolicy: settings.iova
    ) { data, base, plan in
      // The pool registers through a view of the queue pair's domain, and
      // is closed before the domain goes.
      let messages = try settings.messagePool.map {
        try MessageBuffers(
          registration: $0.registration, count: $0.count, largestMessage: largest,
          domain: pd.unsafeSharedView())
      }
      defer { messages?.close() }
      // READ bandwidth needs many reads in flight: ask for what the device allows.
      let depth = min(attributes.maxInitiatorReadAtomics, 255)
      try id.connect(
        ConnectionParameters(
          responderResources: min(attributes.maxResponderReadAtomics, 255), initiatorDepth: depth),
        timeout: .seconds(10))
      var pending = PendingCompletions()
      try send(
        Message(.hello, [UInt64(largest), data.iova, UInt64(data.rkey), UInt64(bytes)]),
        &pending, id, qp, cq, control, base: controlBase)
      let ready = try receive(
        &pending, id, qp, cq, control, base: controlBase, timeout: LivenessCheck.controlLimit)
      guard ready.kind == .ready else {
        throw PerfError("the server answered hello with \(ready.kind); expected ready")
      }
      let peer = RemoteBuffer(
        address: ready[0], length: ready[2], rkey: UInt32(truncatingIfNeeded: ready[1]))
      var result = Report(
        device: id.deviceName ?? "?", server: "\(destination)", queueDepth: settings.queueDepth,
        initiatorDepth: depth, clientRegion: plan,
        serverRegion: PlanReport(peerWords: ready, iova: ready[0]))
      for test in settings.tests {
        for size in settings.sizes {
          let iterations = settings.iterations ?? test.defaultIterations
          let areas = Areas(size: size, incomingOffset: largest, peer: peer, base: base)
          areas.watchedIncoming.storeBytes(of: 0, as: UInt8.self)
          try send(
            Message(.run, [test.rawValue, UInt64(size), UInt64(iterations)]),
            &pending, id, qp, cq, control, base: controlBase)
          let ack = try receive(
            &pending, id, qp, cq, control, base: controlBase, timeout: LivenessCheck.controlLimit)
          guard ack.kind == .ack else {
            throw PerfError("the server answered run with \(ack.kind); expected ack")
          }
          let measured: Result
          switch test {
          case .writeBandwidth, .readBandwidth:
            let moderation = settings.moderation(size: size)
            let before = messages?.figures()
            let elapsed = try measureBandwidth(
              test, iterations: iterations, depth: settings.queueDepth, moderation: moderation,
              areas: areas, messages: messages, id, qp, cq, data, &pending)
            var bandwidth = Result.bandwidth(
              test, bytes: size, iterations: iterations, nanoseconds: elapsed)
            bandwidth.cqModeration = min(moderation, settings.queueDepth)
            if let messages, let before {
              let after = messages.figures()
              bandwidth.registration = messages.registration
              bandwidth.messageBuffers = messages.count
              bandwidth.cacheHits = after.hits.map { $0 - (before.hits ?? 0) }
              bandwidth.cacheMisses = after.misses.map { $0 - (before.misses ?? 0) }
              bandwidth.cacheMonitor = after.monitor
              bandwidth.cacheMonitorEvents = after.monitorEvents.map {
                $0 - (before.monitorEvents ?? 0)
              }
              bandwidth.cacheInvalidations = after.invalidations.map {
                $0 - (before.invalidations ?? 0)
              }
            }
            measured = bandwidth
          case .writeLatency:
            let samples = try measureWriteLatency(
              iterations: iterations, areas: areas, isClient: true, id, qp, cq, data, &pending)
            measured = .latency(test, bytes: size, samples: samples)
          case .readLatency:
            let samples = try measureReadLatency(
              iterations: iterations, areas: areas, id, qp, cq, data, &pending)
            measured = .latency(test, bytes: size, samples: samples)
          }
          result.results.append(measured)
          progress(measured)
        }
      }
      try send(Message(.bye), &pending, id, qp, cq, control, base: controlBase)
      try? id.disconnect()
      report = result
    }
  }
  guard let report else { throw PerfError("the run ended without a report") }
  return report
}
