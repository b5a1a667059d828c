import ArgumentParser
import Umem

/// `umem inspect`: pin a buffer and show its phyr list and plan (issue 4).
struct Inspect: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Pin a buffer and show its phyr list and plan.")
  func run() throws { throw ExitCode(2) }
}
