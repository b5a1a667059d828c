#if canImport(Glibc)
  import Glibc
#endif

/// Names and texts for errno values, and the one-line form every error type
/// of the package prints. The symbolic name comes from glibc's
/// `strerrorname_np` (2.32 and later), so there is no table of our own to
/// keep up to date. (swift-system's `Errno` gives the `strerror` text but no
/// symbolic names; the layer's `Result`s carry `Errno` values.)
package enum ErrnoName {
  /// The symbolic name, such as `EINVAL`, or `errno N` when the C library
  /// has none (or no `strerrorname_np`).
  package static func of(_ code: Int32) -> String {
    if code == 0 { return "0" }
    guard let lookup = nameFunction, let name = lookup(code) else { return "errno \(code)" }
    return String(cString: name)
  }

  /// `strerrorname_np`, found at run time: glibc declares it only under
  /// `_GNU_SOURCE`, which Swift's Glibc module does not define.
  private static let nameFunction: (@convention(c) (Int32) -> UnsafePointer<CChar>?)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "strerrorname_np") else {
      return nil
    }
    return unsafeBitCast(symbol, to: (@convention(c) (Int32) -> UnsafePointer<CChar>?).self)
  }()

  /// The `strerror` text.
  package static func text(_ code: Int32) -> String {
    strerror(code).map { String(cString: $0) } ?? "unknown error"
  }

  /// The one-line form every error type of this package prints:
  /// `operation failed: ENAME (strerror): message`.
  package static func failure(
    operation: String, errno: Int32, message: String, checkedBeforeCall: Bool
  ) -> String {
    let when = checkedBeforeCall ? " (checked before calling C)" : ""
    return "\(operation) failed\(when): \(of(errno)) (\(text(errno))): \(message)"
  }
}
