import ArgumentParser

/// `umem`: inspect RDMA devices, register memory, and plan HCA page sizes.
@main
struct UmemTool: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "umem",
    abstract: "RDMA memory registration, explained: devices, registration, page-size plans.",
    subcommands: [Devices.self, Register.self, Plan.self, Inspect.self, CacheBench.self]
  )
}
