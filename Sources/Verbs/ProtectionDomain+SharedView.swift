internal import CRDMA

extension ProtectionDomain {
  /// An owned-tier view of this same `ibv_pd`, for APIs that take a
  /// ``SharedProtectionDomain`` (a registration cache, say) while queue
  /// pairs and regions of the scoped tier use the domain too: keys made
  /// through the view work on this domain's queue pairs. The view never
  /// deallocates the domain, nor closes its device.
  ///
  /// Unsafe: nothing ties the view's lifetime to this domain's. Close or
  /// drop every region made through the view, and the view itself, before
  /// this domain goes.
  package func unsafeSharedView() -> SharedProtectionDomain {
    let context = SharedDeviceContext(borrowing: raw.pointee.context, owner: ScopedOwner())
    return SharedProtectionDomain(borrowing: raw, context: context)
  }
}

/// Stands for the scoped value that really keeps a borrowed context open.
private final class ScopedOwner: Sendable {}
