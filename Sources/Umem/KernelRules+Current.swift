import Phyr
internal import UmemSystem

extension KernelRules {
  /// The rule set of the running kernel, from `uname -r` and `uname -v`
  /// (see ``KernelRules/init(release:version:)``).
  public static let current = KernelRules(
    release: KernelVersion.release, version: KernelVersion.version)

  /// The running kernel's release (`uname -r`), for reports such as
  /// `rules: linux 6.15+ (running kernel 6.1.0-57-amd64)`.
  public static var runningRelease: String { KernelVersion.release }
}
