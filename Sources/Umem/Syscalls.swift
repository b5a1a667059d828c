// Every libc call the Umem module makes, each wrapped once: the errno is read
// right after the call, EINTR is retried where the call is restartable, and
// the rest of the module sees Swift values and `Result`s.

internal import SystemPackage
internal import UmemSystem

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

/// Reads a whole small file (`/proc`, `/sys`) as text: the system layer's
/// reader, under the name this module's call sites use.
func readTextFile(_ path: String) -> Result<String, Errno> { TextFile.read(path) }

/// Whether this process has capability `bit` in its effective set
/// (`CapEff` of `/proc/self/status`, parsed by the system layer).
func hasCapability(_ bit: Int) -> Bool { ProcessStatus.current().has(capability: bit) }

enum Capability {
  static let ipcLock = ProcessStatus.ipcLock
  static let sysAdmin = ProcessStatus.sysAdmin
}

extension Errno {
  /// The raw errno value, as this module's errors carry it.
  var code: Int32 { rawValue }
  init(_ code: Int32) { self.init(rawValue: code) }
}

/// The soft `RLIMIT_MEMLOCK` in bytes, `nil` when unlimited or unreadable
/// (the system layer's one `getrlimit` call).
func memlockSoftLimit() -> UInt64? { MemoryLockLimit.current().soft }
