import ArgumentParser
import Verbs

struct Devices: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "List RDMA devices and their capabilities.")
  func run() throws {}
}
