import Foundation
import TestSupport
import Testing

@testable import RegistrationCache

#if canImport(Glibc)
  import Glibc
#endif

/// The cache where the kernel will not give it a monitor, in a child
/// process (`umem cache-check`) run as an unprivileged user (nobody) with
/// `vm.unprivileged_userfaultfd=0`, in the VM `ci/rxe` boots (as root).
///
/// Since Linux 5.11 that sysctl alone does not refuse an unprivileged
/// process: `UFFD_USER_MODE_ONLY` is always allowed, and the cache falls
/// back to it. The refusal an application meets in practice is a sandbox's
/// seccomp profile (container runtimes refuse userfaultfd by default),
/// which `ci/lib/deny-userfaultfd` installs before running the child. Both
/// are checked: user-mode-only monitoring catches munmap, and the refused
/// child says so in its statistics and never hits after an explicit
/// invalidation.
@Suite(.serialized, .enabled(if: DeviceLab.shouldRun))
struct MonitorRefusedOnDevice {
  static let sysctl = "/proc/sys/vm/unprivileged_userfaultfd"
  static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

  /// What `umem cache-check --json` prints.
  struct Report: Decodable {
    var monitor: String
    var automatic: Bool
    var rounds: Int
    var staleAfterExplicit: Int
    var staleAfterUnmap: Int?
    var statistics: CacheStatistics
  }

  /// Runs `umem cache-check` as nobody, behind `wrapper`, through `popen`
  /// (which leaves no descriptor behind, unlike `Process`).
  static func check(wrapper: [String]) throws -> Report {
    let child =
      ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + wrapper + [
        TestTools.executable("umem"), "cache-check", "--rounds", "10", "--json",
      ] + (DeviceLab.deviceName.map { ["--device", $0] } ?? [])
    let command = child.joined(separator: " ")
    let output = ResourceSnapshot.shell("\(command) 2>&1; echo exit=$?") ?? ""
    let json = output.split(separator: "\n").first { $0.hasPrefix("{") }
    try #require(output.hasSuffix("exit=0\n") && json != nil, "\(command): \(output)")
    return try JSONDecoder().decode(Report.self, from: Data(json!.utf8))
  }

  @Test func unprivilegedChildFallsBackAndNeverHitsAfterInvalidation() throws {
    try #require(getuid() == 0, "needs root to change \(Self.sysctl) and switch users")
    let saved = try String(contentsOfFile: Self.sysctl, encoding: .utf8)
    try "0\n".write(toFile: Self.sysctl, atomically: false, encoding: .utf8)
    // The children's pins and MRs are theirs, but the kernel's MR count
    // and this process's pins and descriptors must be back where they were.
    let outcome = Result { () throws -> Void in
      try expectNoLeaks("unprivileged children") {
        // The sysctl alone: the kernel allows UFFD_USER_MODE_ONLY.
        let userMode = try Self.check(wrapper: [])
        #expect(userMode.monitor.contains("UFFD_USER_MODE_ONLY"), "\(userMode.monitor)")
        #expect(userMode.automatic && userMode.staleAfterUnmap == 0)
        #expect(userMode.staleAfterExplicit == 0)
        // And userfaultfd refused, as in a container: explicit only, said why.
        let helper = Self.repository.appendingPathComponent("ci/lib/deny-userfaultfd").path
        let refused = try Self.check(wrapper: ["/usr/bin/python3", helper])
        print("refused child: \(refused.monitor); \(refused.statistics)")
        #expect(!refused.automatic && !refused.statistics.monitor.isAutomatic)
        #expect(refused.monitor.contains("EPERM"), "\(refused.monitor)")
        #expect(refused.staleAfterExplicit == 0 && refused.staleAfterUnmap == nil)
        #expect(refused.statistics.invalidations[.explicit] == refused.rounds)
        #expect(refused.statistics.monitorEvents == 0)
      }
    }
    try saved.write(toFile: Self.sysctl, atomically: false, encoding: .utf8)
    #expect(try String(contentsOfFile: Self.sysctl, encoding: .utf8) == saved)
    try outcome.get()
  }
}
