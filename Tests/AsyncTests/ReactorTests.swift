import Synchronization
import Testing
import UmemSystem

#if canImport(Glibc)
  import Glibc
#endif

/// The reactor on the host, with pipes standing in for completion and event
/// channels: wake-ups, several waiters, deadlines, cancellation (including
/// before the wait starts), closing, and re-arming after a wake-up.
@Suite(.serialized) struct ReactorTests {
  /// A non-blocking pipe; the reader end is what the reactor watches.
  final class Pipe: Sendable {
    let reader: Int32
    let writer: Int32
    init() {
      var fds: [Int32] = [-1, -1]
      precondition(pipe(&fds) == 0, "pipe failed")
      reader = fds[0]
      writer = fds[1]
      _ = fcntl(reader, F_SETFL, O_NONBLOCK)
    }
    deinit {
      close(reader)
      close(writer)
    }
    func poke() {
      var byte: UInt8 = 1
      _ = write(writer, &byte, 1)
    }
    /// Takes everything written so far; how many bytes there were.
    func drain() -> Int {
      var buffer = [UInt8](repeating: 0, count: 64)
      var total = 0
      while true {
        let n = read(reader, &buffer, buffer.count)
        if n <= 0 { return total }
        total += n
      }
    }
  }

  static func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
  }

  @Test func readableWakesTheWaiter() async {
    let pipe = Pipe()
    let source = Reactor.shared.source(for: pipe.reader)
    defer { source.close() }
    async let outcome = source.readable(until: .now + .seconds(10))
    try? await Task.sleep(for: .milliseconds(50))
    pipe.poke()
    #expect(await outcome == .readable)
    #expect(pipe.drain() == 1)
  }

  @Test func alreadyReadableReturnsAtOnce() async {
    let pipe = Pipe()
    let source = Reactor.shared.source(for: pipe.reader)
    defer { source.close() }
    pipe.poke()
    let start = ContinuousClock.now
    #expect(await source.readable(until: .now + .seconds(10)) == .readable)
    #expect(Self.seconds(ContinuousClock.now - start) < 1)
  }

  @Test func everyWaiterOfADescriptorWakes() async {
    let pipe = Pipe()
    let source = Reactor.shared.source(for: pipe.reader)
    defer { source.close() }
    let outcomes = await withTaskGroup(of: Readiness.self) { group in
      for _ in 0..<8 { group.addTask { await source.readable(until: .now + .seconds(10)) } }
      try? await Task.sleep(for: .milliseconds(100))
      pipe.poke()
      return await group.reduce(into: []) { $0.append($1) }
    }
    #expect(outcomes == Array(repeating: .readable, count: 8))
  }

  @Test func rearmsAfterEachWakeUp() async {
    let pipe = Pipe()
    let source = Reactor.shared.source(for: pipe.reader)
    defer { source.close() }
    for round in 0..<200 {
      async let outcome = source.readable(until: .now + .seconds(10))
      if round % 2 == 0 { try? await Task.sleep(for: .microseconds(100)) }
      pipe.poke()
      #expect(await outcome == .readable)
      _ = pipe.drain()
    }
  }

  @Test func nearestDeadlineEndsFirst() async {
    let pipe = Pipe()
    let source = Reactor.shared.source(for: pipe.reader)
    defer { source.close() }
    let start = ContinuousClock.now
    async let long = source.readable(until: start + .seconds(30))
    async let short = source.readable(until: start + .milliseconds(150))
    #expect(await short == .timedOut)
    let shortTook = Self.seconds(ContinuousClock.now - start)
    #expect(shortTook >= 0.15 && shortTook < 2, "short deadline took \(shortTook) s")
    pipe.poke()
    #expect(await long == .readable)
  }

  @Test func cancellationEndsTheWaitPromptly() async {
    let pipe = Pipe()
    let source = Reactor.shared.source(for: pipe.reader)
    defer { source.close() }
    let task = Task { await source.readable() }
    try? await Task.sleep(for: .milliseconds(100))
    let start = ContinuousClock.now
    task.cancel()
    #expect(await task.value == .cancelled)
    #expect(Self.seconds(ContinuousClock.now - start) < 1)
  }

  @Test func cancelledBeforeWaitingNeverRegisters() async {
    let pipe = Pipe()
    let source = Reactor.shared.source(for: pipe.reader)
    defer { source.close() }
    let task = Task {
      withUnsafeCurrentTask { $0?.cancel() }
      return await source.readable()
    }
    #expect(await task.value == .cancelled)
  }

  @Test func closeFailsCurrentAndLaterWaiters() async {
    let pipe = Pipe()
    let source = Reactor.shared.source(for: pipe.reader)
    let waiters = (0..<4).map { _ in Task { await source.readable() } }
    try? await Task.sleep(for: .milliseconds(100))
    source.close()
    for waiter in waiters { #expect(await waiter.value == .closed) }
    #expect(await source.readable() == .closed)
    source.reopen()
    pipe.poke()
    #expect(await source.readable(until: .now + .seconds(10)) == .readable)
    source.close()
  }

  @Test func nothingIsLeftBehind() async {
    // Runs alone in its own sources; other suites may run at the same time,
    // so count only what this test adds and removes.
    let pipe = Pipe()
    var source: ReadinessSource? = Reactor.shared.source(for: pipe.reader)
    let timedOut = await source?.readable(until: .now + .milliseconds(10))
    #expect(timedOut == .timedOut)
    let task = Task { [source] in await source?.readable() }
    try? await Task.sleep(for: .milliseconds(50))
    task.cancel()
    #expect(await task.value == .cancelled)
    source?.close()
    source = nil
    #expect(await Reactor.shared.waiterCountSettles(to: 0))
  }
}

extension Reactor {
  /// Whether the waiter count reaches `count` within a second (other suites'
  /// waits may be ending at the same time).
  func waiterCountSettles(to count: Int) async -> Bool {
    for _ in 0..<100 {
      if waiterCount == count { return true }
      try? await Task.sleep(for: .milliseconds(10))
    }
    return false
  }
}
