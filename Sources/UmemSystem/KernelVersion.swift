#if canImport(Glibc)
  import Glibc
#endif

/// The running kernel's version, from `uname`.
package enum KernelVersion {
  package static let current: (major: Int, minor: Int) = {
    var name = utsname()
    uname(&name)
    let release = withUnsafeBytes(of: &name.release) {
      String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
    }
    let parts = release.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    return (parts.first ?? 0, parts.count > 1 ? parts[1] : 0)
  }()

  package static func atLeast(_ major: Int, _ minor: Int) -> Bool {
    current.major > major || (current.major == major && current.minor >= minor)
  }
}
