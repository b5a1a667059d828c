// Every libc call the Umem module makes, each wrapped once: the errno is read
// right after the call, EINTR is retried where the call is restartable, and
// the rest of the module sees Swift values and `Result`s.

#if canImport(Glibc)
  import Glibc
#endif

/// The CPU page size. Linux on x86-64 and the kernel rules in the spec use 4 KiB.
let cpuPageSize: UInt64 = 4096
let cpuPageShift: UInt64 = 12

/// `madvise` advice values that Glibc's headers may not name yet.
enum Advice {
  /// `MADV_HUGEPAGE`: ask for transparent huge pages.
  static let hugePage: Int32 = 14
  /// `MADV_POPULATE_WRITE` (Linux 5.14): fault every page in for writing,
  /// breaking copy-on-write, without changing the data.
  static let populateWrite: Int32 = 23
}

/// `MAP_HUGE_2MB` and `MAP_HUGE_1GB`: log2 of the page size in bits 26-31.
enum HugeMapFlag {
  static let shift: Int32 = 26
  static func flag(pageShift: Int32) -> Int32 { pageShift << shift }
}

/// `system_mlock` wraps `mlock`.
func system_mlock(_ address: UInt64, _ length: UInt64) -> Int32 {
  let pointer = UnsafeRawPointer(bitPattern: UInt(address))
  return mlock(pointer, Int(length)) == 0 ? 0 : errno
}

/// `system_munlock` wraps `munlock`.
func system_munlock(_ address: UInt64, _ length: UInt64) -> Int32 {
  let pointer = UnsafeRawPointer(bitPattern: UInt(address))
  return munlock(pointer, Int(length)) == 0 ? 0 : errno
}

/// `system_madvise` wraps `madvise`, retrying `EINTR` (populate can be interrupted).
func system_madvise(_ address: UInt64, _ length: UInt64, _ advice: Int32) -> Int32 {
  let pointer = UnsafeMutableRawPointer(bitPattern: UInt(address))
  while true {
    if madvise(pointer, Int(length), advice) == 0 { return 0 }
    let code = errno
    if code != EINTR { return code }
  }
}

/// `system_open` wraps `open` with `O_RDONLY | O_CLOEXEC`.
func system_openReadOnly(_ path: String) -> Result<Int32, Errno> {
  while true {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd >= 0 { return .success(fd) }
    let code = errno
    if code != EINTR { return .failure(Errno(code)) }
  }
}

/// `system_pread` wraps `pread`, retrying `EINTR` and short reads until
/// `count` bytes are read or the file ends. Returns the bytes read.
func system_pread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: UInt64)
  -> Result<Int, Errno>
{
  var done = 0
  while done < count {
    let n = pread(fd, buffer + done, count - done, off_t(Int64(bitPattern: offset &+ UInt64(done))))
    if n > 0 {
      done += n
    } else if n == 0 {
      break
    } else {
      let code = errno
      if code != EINTR { return .failure(Errno(code)) }
    }
  }
  return .success(done)
}

/// `system_close` wraps `close`.
func system_close(_ fd: Int32) { _ = close(fd) }

/// `system_mmap` wraps `mmap` for anonymous private memory with extra flags.
func system_mmapAnonymous(_ length: Int, extraFlags: Int32) -> Result<
  UnsafeMutableRawPointer, Errno
> {
  let raw = mmap(
    nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extraFlags, -1, 0)
  guard let raw, raw != MAP_FAILED else { return .failure(Errno(errno)) }
  return .success(raw)
}

/// `system_munmap` wraps `munmap`.
func system_munmap(_ address: UnsafeMutableRawPointer, _ length: Int) -> Int32 {
  munmap(address, length) == 0 ? 0 : errno
}

/// Reads a whole small file (`/proc`, `/sys`) as text.
func readTextFile(_ path: String) -> Result<String, Errno> {
  let fd: Int32
  switch system_openReadOnly(path) {
  case .success(let value): fd = value
  case .failure(let failure): return .failure(failure)
  }
  defer { system_close(fd) }
  var data: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 65536)
  while true {
    let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    if n > 0 {
      data.append(contentsOf: chunk[0..<n])
    } else if n == 0 {
      break
    } else {
      let code = errno
      if code != EINTR { return .failure(Errno(code)) }
    }
  }
  return .success(String(decoding: data, as: UTF8.self))
}

/// Whether this process has capability `bit` in its effective set
/// (`CapEff` of `/proc/self/status`): 14 is `CAP_IPC_LOCK`, 21 `CAP_SYS_ADMIN`.
func hasCapability(_ bit: Int) -> Bool {
  guard case .success(let status) = readTextFile("/proc/self/status") else { return false }
  for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
    let digits = line.dropFirst("CapEff:".count).trimmingPrefix(while: { $0 == " " || $0 == "\t" })
    guard let mask = UInt64(digits, radix: 16) else { return false }
    return mask & (1 << UInt64(bit)) != 0
  }
  return false
}

enum Capability {
  static let ipcLock = 14
  static let sysAdmin = 21
}

/// An errno value as an `Error`, for the `Result`s above.
struct Errno: Error {
  let code: Int32
  init(_ code: Int32) { self.code = code }
}

/// The running kernel's version, from `uname`.
enum KernelVersion {
  static let current: (major: Int, minor: Int) = {
    var name = utsname()
    uname(&name)
    let release = withUnsafeBytes(of: &name.release) {
      String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
    }
    let parts = release.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    return (parts.first ?? 0, parts.count > 1 ? parts[1] : 0)
  }()

  static func atLeast(_ major: Int, _ minor: Int) -> Bool {
    current.major > major || (current.major == major && current.minor >= minor)
  }
}

/// The soft `RLIMIT_MEMLOCK` in bytes, `nil` when unlimited or unreadable.
/// The C function is `getrlimit`.
func memlockSoftLimit() -> UInt64? {
  var limit = rlimit()
  guard getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0,
    limit.rlim_cur != rlim_t.max
  else { return nil }
  return UInt64(limit.rlim_cur)
}

/// `CapEff` and `VmLck` from one read of `/proc/self/status`.
struct ProcessStatus {
  var capabilities: UInt64 = 0
  var lockedBytes: UInt64 = 0

  static func read() -> ProcessStatus {
    var out = ProcessStatus()
    guard case .success(let text) = readTextFile("/proc/self/status") else { return out }
    for line in text.split(separator: "\n") {
      let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
      guard fields.count >= 2 else { continue }
      if fields[0] == "CapEff:" { out.capabilities = UInt64(fields[1], radix: 16) ?? 0 }
      if fields[0] == "VmLck:" {
        // KiB; clamped rather than trapped on if ever too large for bytes.
        let kib = UInt64(fields[1]) ?? 0
        out.lockedBytes = kib.multipliedReportingOverflow(by: 1024).overflow ? .max : kib * 1024
      }
    }
    return out
  }
}
