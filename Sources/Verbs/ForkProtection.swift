internal import CRDMA

/// Whether registered memory needs protecting from `fork()`.
///
/// Old kernels let a forked child share pinned pages copy-on-write, which
/// broke the parent's registrations; libibverbs then had to mark them
/// `MADV_DONTFORK` (`ibv_fork_init`). Kernels since 5.13 copy pinned pages
/// into the child at fork instead, and libibverbs reports protection as
/// unneeded. Wraps `ibv_is_fork_initialized` and `ibv_fork_init`.
public enum ForkProtection: Sendable, Hashable, CustomStringConvertible {
  /// Not enabled, and the kernel needs it for fork safety.
  case disabled
  /// Enabled with `ibv_fork_init`.
  case enabled
  /// The kernel keeps pinned pages safe across fork by itself.
  case unneeded

  /// The current state. The C function is `ibv_is_fork_initialized`.
  public static var current: ForkProtection {
    switch ibv_is_fork_initialized() {
    case IBV_FORK_ENABLED: .enabled
    case IBV_FORK_UNNEEDED: .unneeded
    default: .disabled
    }
  }

  /// Enables protection only when the kernel needs it; never calls
  /// `ibv_fork_init` when the state is ``unneeded``. Call it before any
  /// registration. Returns the state afterwards.
  @discardableResult
  public static func enableIfNeeded() throws(VerbsError) -> ForkProtection {
    let state = current
    guard state == .disabled else { return state }
    let result = ibv_fork_init()
    if result != 0 {
      throw VerbsError(
        .other, operation: "ibv_fork_init", errno: result,
        message: "fork protection could not be enabled; call this before any "
          + "device is opened or memory is registered")
    }
    return current
  }

  /// `disabled`, `enabled` or `unneeded`.
  public var description: String {
    switch self {
    case .disabled: "disabled"
    case .enabled: "enabled"
    case .unneeded: "unneeded"
    }
  }
}
