import ArgumentParser
import Phyr

/// `umem plan`: best HCA page size and blocks for a phyr list (issue 3).
struct Plan: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Plan HCA pages for a phyr list.")
  func run() throws { throw ExitCode(2) }
}
