#if canImport(Glibc)
  import Glibc
#endif

/// The running kernel's version, from `uname`.
package enum KernelVersion {
  /// The release string, such as `6.1.0-57-amd64` (`uname -r`).
  package static let release: String = {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: &name.release) {
      String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
    }
  }()

  /// The version string, such as `#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3
  /// (2026-11-20)` (`uname -v`): on Debian's 6.1 the only place that names
  /// the upstream stable release.
  package static let version: String = {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: &name.version) {
      String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
    }
  }()

  package static let current: (major: Int, minor: Int) = {
    let parts = release.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    return (parts.first ?? 0, parts.count > 1 ? parts[1] : 0)
  }()

  package static func atLeast(_ major: Int, _ minor: Int) -> Bool {
    current.major > major || (current.major == major && current.minor >= minor)
  }
}
