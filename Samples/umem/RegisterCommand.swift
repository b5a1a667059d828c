import ArgumentParser
import Verbs

struct Register: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Register a buffer and report keys and timing.")
  func run() throws {}
}
