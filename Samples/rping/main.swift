// rping in Swift: rdma-core's ping-pong over rdma_cm, on the RDMACM and
// Verbs modules. Same flags, wire format, buffer contents, -v lines and exit
// codes as librdmacm/examples/rping.c, so either side can be the C tool.
//
// One ping: the client SENDs {start buffer, rkey, size}; the server RDMA
// READs it and SENDs a go-ahead; the client SENDs {rdma buffer, rkey, size};
// the server RDMA WRITEs the data back and SENDs a go-ahead; the client
// compares (-V). Every message is 16 bytes: be64 address, be32 rkey, be32 size.
//
// rping.c uses a CM thread and a CQ thread; here one thread sleeps in poll(2)
// on both the completion channel and the connection's event channel. A -P
// server gives every connection its own such thread, as rping.c does.
//
// Beyond rping.c: a server given -C N exits non-zero when its client goes
// away before N pings (rping.c's server ignores -C and exits 0 whenever the
// disconnect comes between pings), and a disconnect in the middle of a ping
// always fails the server.

import RDMACM
import ToolSupport
import Verbs

#if canImport(Glibc)
  import Glibc
#endif

// MARK: Command line (getopt "a:I:Pp:C:S:t:scvVdq", as rping.c)

struct Options {
  var server: Bool?
  var address: String?
  var source: String?
  var port: UInt16 = 7174
  var count = 0
  var size = 64
  var verbose = false
  var validate = false
  var debug = false
  var persistent = false
  /// Seconds of silence from the peer that end a wait (-w; 0: none).
  var peerTimeout = 5
}

/// rping's exit codes: 0, EINVAL for usage errors, and -1 (255) for failures.
enum Exit {
  static let usage: Int32 = EINVAL
  static let failure: Int32 = 255
}

func usage() -> Never {
  let text = """
    Usage: rping -s [-vVd] [-S size] [-C count] [-a addr] [-p port]
           rping -c [-vVd] [-S size] [-C count] [-I addr] -a addr [-p port]
    \t-c\t\tclient side
    \t-I\t\tSource address to bind to for client.
    \t-s\t\tserver side.  To bind to any address with IPv6 use -a ::0
    \t-v\t\tdisplay ping data to stdout
    \t-V\t\tvalidate ping data
    \t-d\t\tdebug printfs
    \t-S size \tping data size
    \t-C count\tping count times (server: exit non-zero if the client
    \t\t\tdisconnects before this many pings; an extension)
    \t-a addr\t\taddress
    \t-p port\t\tport
    \t-w secs\t\tfail when the peer stays silent this long (default 5,
    \t\t\t0 waits forever; an extension: a peer whose host died sends
    \t\t\tno disconnect)
    \t-P\t\tpersistent server mode allowing multiple connections
    \t\t\t(each client on its own thread, served concurrently)
    \t-q\t\tuse self-created, self-modified QP (accepted; this rping always uses rdma_create_qp)

    """
  printError(text)
  exit(Exit.usage)
}

func parse(_ arguments: [String]) -> Options {
  var options = Options()
  var rest = arguments[...]
  while let argument = rest.popFirst() {
    guard argument.hasPrefix("-"), argument.count >= 2 else { usage() }
    var flags = argument.dropFirst()
    while let flag = flags.popFirst() {
      func value() -> String {
        if !flags.isEmpty { defer { flags = "" }; return String(flags) }
        guard let next = rest.popFirst() else { usage() }
        return next
      }
      switch flag {
      case "s": options.server = true
      case "c": options.server = false
      case "a": options.address = value()
      case "I": options.source = value()
      case "p": guard let p = UInt16(value()) else { usage() }; options.port = p
      case "C":
        guard let c = Int(value()), c >= 0 else { usage() }
        options.count = c
      case "S":
        let text = value()
        // The project's size syntax (4096, 0x1000, 4K), a superset of rping.c's decimal.
        guard let s = parseSize(text), (23...65535).contains(s) else {
          printError("Invalid size \(text) (valid range is 23 to 65536)\n")
          exit(Exit.usage)
        }
        options.size = Int(s)
      case "v": options.verbose = true
      case "V": options.validate = true
      case "d": options.debug = true
      case "P": options.persistent = true
      case "w":
        guard let w = Int(value()), (0...86_400).contains(w) else { usage() }
        options.peerTimeout = w
      case "q": break
      default: usage()
      }
    }
  }
  if options.server == nil { usage() }
  return options
}

/// Writes a line to standard error, unbuffered, as fprintf(stderr) does.
func printError(_ text: String) {
  var text = text
  text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

// MARK: The 16-byte message (struct rping_rdma_info)

struct Advert {
  var address: UInt64
  var rkey: UInt32
  var size: UInt32

  func store(in buffer: borrowing PageAlignedBuffer) {
    buffer.withUnsafeMutableBytes { bytes in
      bytes.storeBytes(of: address.bigEndian, toByteOffset: 0, as: UInt64.self)
      bytes.storeBytes(of: rkey.bigEndian, toByteOffset: 8, as: UInt32.self)
      bytes.storeBytes(of: size.bigEndian, toByteOffset: 12, as: UInt32.self)
    }
  }

  init(address: UInt64, rkey: UInt32, size: UInt32) {
    (self.address, self.rkey, self.size) = (address, rkey, size)
  }

  init(loading buffer: borrowing PageAlignedBuffer) {
    (address, rkey, size) = buffer.withUnsafeMutableBytes { bytes in
      (
        UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
        UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
        UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
      )
    }
  }
}

/// A failure that rping reports on one line and exits for.
struct PingError: Error, CustomStringConvertible {
  var description: String
}

/// Reports an error the way rping.c does (its `cma event ...` line), then ours.
func report(_ error: any Error) {
  if let error = error as? CMError, let line = error.rpingLine { printError("\(line)\n") }
  printError("rping: \(error)\n")
}

nonisolated(unsafe) var debugEnabled = false
/// How long a wait for the peer may last (-w); nil waits forever.
nonisolated(unsafe) var peerSilence: Duration? = .seconds(5)
func debug(_ text: @autoclosure () -> String) {
  if debugEnabled { print(text()) }
}

/// The text of a buffer up to its first NUL, as printf("%s") shows it.
func cString(_ buffer: borrowing PageAlignedBuffer) -> String {
  buffer.withUnsafeMutableBytes { bytes in
    let end = bytes.firstIndex(of: 0) ?? bytes.count
    return String(decoding: bytes[..<end], as: UTF8.self)
  }
}

/// One connection's verbs resources, rping_setup_qp and rping_setup_buffers:
/// a PD, one CQ of 32 entries, a QP of 16 send and 2 receive requests, and
/// the buffers (receive and send messages, the RDMA buffer, the client's
/// start buffer), then the first 16-byte receive, posted before connecting.
func withConnection(
  _ id: borrowing ConnectionID, options: Options,
  _ body: (
    borrowing QueuePair, borrowing CompletionQueue, borrowing Buffers, borrowing Regions
  ) throws -> Void
) throws {
  let pd = try id.allocateProtectionDomain()
  let cq = try id.createCompletionQueue(entries: 32)
  let qp = try id.createQueuePair(
    pd: pd, completions: cq, capacity: QueuePairCapacity(sendRequests: 16, receiveRequests: 2))
  let buffers = try Buffers(size: options.size)
  let regions = try Regions(pd: pd, buffers: buffers)
  try qp.postReceive(regions.receive.scatterGather(offset: 0, count: 16), id: 0)
  debug("created pd, cq, qp \(qp.number) and buffers of \(options.size) bytes")
  try body(qp, cq, buffers, regions)
}

struct Buffers: ~Copyable {
  let receive: PageAlignedBuffer
  let send: PageAlignedBuffer
  let rdma: PageAlignedBuffer
  let start: PageAlignedBuffer

  init(size: Int) throws(VerbsError) {
    let receive = try PageAlignedBuffer(byteCount: 16)
    let send = try PageAlignedBuffer(byteCount: 16)
    let rdma = try PageAlignedBuffer(byteCount: size)
    let start = try PageAlignedBuffer(byteCount: size)
    self.receive = receive
    self.send = send
    self.rdma = rdma
    self.start = start
  }
}

struct Regions: ~Copyable, ~Escapable {
  let receive: MemoryRegion
  let send: MemoryRegion
  let rdma: MemoryRegion
  let start: MemoryRegion

  /// rping's access flags: receive local-write, send none, the data buffers
  /// local-write, remote-read and remote-write.
  @_lifetime(borrow pd, borrow buffers)
  init(pd: borrowing ProtectionDomain, buffers: borrowing Buffers) throws(VerbsError) {
    let data: MemoryAccess = [.localWrite, .remoteRead, .remoteWrite]
    let receive = try pd.register(buffers.receive, access: .localWrite)
    let send = try pd.register(buffers.send, access: [])
    let rdma = try pd.register(buffers.rdma, access: data)
    let start = try pd.register(buffers.start, access: data)
    self.receive = receive
    self.send = send
    self.rdma = rdma
    self.start = start
  }
}

// MARK: Server (rping_run_server, rping_test_server)

func runServer(_ options: Options) throws {
  let listener = try ConnectionID()
  let address =
    if let host = options.address { try SocketAddress(host: host, port: options.port) } else {
      SocketAddress.any(port: options.port)
    }
  try listener.bind(address)
  try listener.listen(backlog: 3)
  debug("listening on \(address)")
  guard options.persistent else {
    // One connection, then exit with its status (rping_run_server).
    while true {
      guard let child = try listener.nextRequest() else { continue }
      debug("connection request from \(child.peerAddress.map { "\($0)" } ?? "?")")
      return try serve(child, options)
    }
  }
  // -P: every connection gets its own thread (rping_run_persistent_server),
  // so clients are served concurrently; a failed one is reported, not fatal.
  while true {
    guard let child = try listener.nextRequest() else { continue }
    debug("connection request from \(child.peerAddress.map { "\($0)" } ?? "?")")
    startThread(serving: child, options)
  }
}

/// Hands one accepted id to a detached thread that serves it.
final class Handoff: @unchecked Sendable {
  var id: ConnectionID?
  let options: Options
  init(_ id: consuming ConnectionID, _ options: Options) {
    self.id = consume id
    self.options = options
  }

  /// Serves the id it holds (once) and reports a failure instead of exiting.
  func run() {
    guard let id = id.take() else { return }
    do { try serve(id, options) } catch { report(error) }
  }
}

func startThread(serving child: consuming ConnectionID, _ options: Options) {
  let handoff = Unmanaged.passRetained(Handoff(child, options)).toOpaque()
  var thread = pthread_t()
  let started = pthread_create(
    &thread, nil,
    { argument in
      Unmanaged<Handoff>.fromOpaque(argument!).takeRetainedValue().run()
      return nil
    }, handoff)
  if started == 0 {
    pthread_detach(thread)
  } else {
    // No thread: serve this client here rather than drop it.
    Unmanaged<Handoff>.fromOpaque(handoff).takeRetainedValue().run()
  }
}

/// Serves one client until it disconnects. A disconnect while waiting for
/// the next ping is the normal end (rping's server then exits 0), unless
/// this server was given `-C N` and has served fewer than N pings. A
/// disconnect in the middle of a ping is an error.
func serve(_ id: borrowing ConnectionID, _ options: Options) throws {
  try withConnection(id, options: options) { qp, cq, buffers, regions in
    try id.accept()
    debug("accepted; connection established")
    var completions = PendingCompletions(dropping: [.send])
    var served = 0
    var betweenPings = true
    do {
      while true {
        // Read state: the client advertised its start buffer.
        betweenPings = true
        let source = try receiveAdvert(&completions, id, qp, cq, buffers, regions)
        betweenPings = false
        guard source.size <= UInt32(options.size) else {
          throw PingError(
            description: "the client advertised \(source.size) bytes but this server's -S is "
              + "\(options.size); use the same -S on both sides")
        }
        try qp.postSend(
          .read(
            from: RemoteBuffer(
              address: source.address, length: UInt64(source.size), rkey: source.rkey)),
          regions.rdma.scatterGather(offset: 0, count: Int(source.size)), id: 2)
        _ = try completions.next(.rdmaRead, on: cq, of: id, timeout: peerSilence)
        if options.verbose { print("server ping data: \(cString(buffers.rdma))") }
        try qp.postSend(.send, regions.send.scatterGather(offset: 0, count: 16), id: 1)

        // Write state: the client advertised where the echo goes.
        let sink = try receiveAdvert(&completions, id, qp, cq, buffers, regions)
        let length = min(strnlen(buffers.rdma.baseAddress, options.size) + 1, options.size)
        try qp.postSend(
          .write(
            to: RemoteBuffer(address: sink.address, length: UInt64(sink.size), rkey: sink.rkey)),
          regions.rdma.scatterGather(offset: 0, count: length), id: 3)
        _ = try completions.next(.rdmaWrite, on: cq, of: id, timeout: peerSilence)
        try qp.postSend(.send, regions.send.scatterGather(offset: 0, count: 16), id: 1)
        served += 1  // One per round trip: 2^63 of them is out of reach.
      }
    } catch let error as CMError where error.code == .disconnected {
      printError("server DISCONNECT EVENT...\n")
      try? id.disconnect()
      if !betweenPings {
        throw PingError(description: "the client went away in the middle of ping \(served + 1)")
      }
      if options.count > 0 && served < options.count {
        throw PingError(
          description: "the client went away after \(served) of the \(options.count) pings this "
            + "server expected (-C \(options.count))")
      }
      debug("client disconnected after \(served) pings")
      return
    }
  }
}

/// Waits for the next 16-byte message, re-posts the receive at once (as rping
/// does, before answering), and decodes it.
func receiveAdvert(
  _ completions: inout PendingCompletions, _ id: borrowing ConnectionID, _ qp: borrowing QueuePair,
  _ cq: borrowing CompletionQueue, _ buffers: borrowing Buffers, _ regions: borrowing Regions
) throws -> Advert {
  let wc = try completions.next(.receive, on: cq, of: id, timeout: peerSilence)
  guard wc.byteLength == 16 else {
    throw PingError(description: "Received bogus data, size \(wc.byteLength)")
  }
  let advert = Advert(loading: buffers.receive)
  try qp.postReceive(regions.receive.scatterGather(offset: 0, count: 16), id: 0)
  debug(
    "received rkey 0x\(String(advert.rkey, radix: 16)) addr 0x\(String(advert.address, radix: 16)) len \(advert.size)"
  )
  return advert
}

// MARK: Client (rping_run_client, rping_test_client)

func runClient(_ options: Options) throws {
  guard let host = options.address else { usage() }
  let id = try ConnectionID()
  let destination = try SocketAddress(host: host, port: options.port)
  let source = try options.source.map { host throws(CMError) in try SocketAddress(host: host) }
  try id.resolveAddress(destination, from: source, timeout: .milliseconds(2000))
  try id.resolveRoute(timeout: .milliseconds(2000))
  debug("resolved \(destination) on \(id.deviceName ?? "?")")
  try withConnection(id, options: options) { qp, cq, buffers, regions in
    // The server RDMA READs from us, so it needs responder resources here.
    try id.connect(
      ConnectionParameters(
        responderResources: 1, initiatorDepth: 1, retryCount: 7, rnrRetryCount: 7),
      timeout: .seconds(10))
    debug("connected")
    var completions = PendingCompletions(dropping: [.send])
    let size = options.size
    var ping = 0
    while options.count == 0 || ping < options.count {
      fill(buffers.start, ping: ping, size: size)
      Advert(address: regions.start.iova, rkey: regions.start.rkey, size: UInt32(size))
        .store(in: buffers.send)
      try qp.postSend(.send, regions.send.scatterGather(offset: 0, count: 16), id: 1)
      _ = try receiveAdvert(&completions, id, qp, cq, buffers, regions)  // go-ahead: it read

      Advert(address: regions.rdma.iova, rkey: regions.rdma.rkey, size: UInt32(size))
        .store(in: buffers.send)
      try qp.postSend(.send, regions.send.scatterGather(offset: 0, count: 16), id: 1)
      _ = try receiveAdvert(&completions, id, qp, cq, buffers, regions)  // go-ahead: it wrote

      if options.validate && memcmp(buffers.start.baseAddress, buffers.rdma.baseAddress, size) != 0
      {
        printError("data mismatch!\n")
        throw PingError(description: "ping \(ping): the echoed data differs from what was sent")
      }
      if options.verbose { print("ping data: \(cString(buffers.rdma))") }
      ping += 1  // As `served`: one per round trip.
    }
    try id.disconnect()
  }
}

/// rping's ping pattern: "rdma-ping-N: " then ASCII from 'A' + N mod 58 up,
/// wrapping 'z' to 'A', and a NUL in the last byte.
func fill(_ buffer: borrowing PageAlignedBuffer, ping: Int, size: Int) {
  buffer.withUnsafeMutableBytes { bytes in
    let prefix = Array("rdma-ping-\(ping): ".utf8.prefix(size - 1))
    bytes.copyBytes(from: prefix)
    // The 58 letters 'A'...'z', rotated to start at ping mod 58 and repeated.
    let first = ping % 58
    let cycle = (0..<58).map { UInt8(65 + ($0 + first) % 58) }
    var offset = prefix.count
    while offset < size {
      let n = min(cycle.count, size - offset)
      UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<offset + n]).copyBytes(
        from: cycle[..<n])
      offset += n
    }
    bytes[size - 1] = 0
  }
}

// MARK: main

let options = parse(Array(CommandLine.arguments.dropFirst()))
debugEnabled = options.debug
peerSilence = options.peerTimeout == 0 ? nil : .seconds(options.peerTimeout)
do {
  if options.server == true { try runServer(options) } else { try runClient(options) }
  exit(0)
} catch {
  report(error)
  exit(Exit.failure)
}
