#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Symbolic names for the errno values that RDMA calls return.
package enum ErrnoName {
  package static func of(_ code: Int32) -> String {
    switch code {
    case EPERM: "EPERM"
    case ENOENT: "ENOENT"
    case EINTR: "EINTR"
    case EIO: "EIO"
    case ENXIO: "ENXIO"
    case EBADF: "EBADF"
    case EAGAIN: "EAGAIN"
    case ENOMEM: "ENOMEM"
    case EACCES: "EACCES"
    case EFAULT: "EFAULT"
    case EBUSY: "EBUSY"
    case EEXIST: "EEXIST"
    case ENODEV: "ENODEV"
    case EINVAL: "EINVAL"
    case ENFILE: "ENFILE"
    case EMFILE: "EMFILE"
    case ENOSPC: "ENOSPC"
    case ERANGE: "ERANGE"
    case ENOSYS: "ENOSYS"
    case EOVERFLOW: "EOVERFLOW"
    case EPROTONOSUPPORT: "EPROTONOSUPPORT"
    case EOPNOTSUPP: "EOPNOTSUPP"
    case EADDRINUSE: "EADDRINUSE"
    case EADDRNOTAVAIL: "EADDRNOTAVAIL"
    case ENETUNREACH: "ENETUNREACH"
    case ECONNRESET: "ECONNRESET"
    case ETIMEDOUT: "ETIMEDOUT"
    case ECONNREFUSED: "ECONNREFUSED"
    case EHOSTUNREACH: "EHOSTUNREACH"
    case 0: "0"
    default: "errno \(code)"
    }
  }

  package static func text(_ code: Int32) -> String {
    guard let cString = strerror(code) else { return "unknown error" }
    return String(cString: cString)
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
