import ArgumentParser

/// `umem`: inspect RDMA devices, register memory, and plan HCA page sizes.
@main
struct UmemTool: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "umem",
    abstract: "RDMA memory registration, explained: devices, registration, page-size plans.",
    subcommands: [
      Devices.self, Register.self, Plan.self, Inspect.self, CacheBench.self, CacheCheck.self,
    ]
  )

  /// Refuses a flood of inline `--phyr` options before ArgumentParser sees
  /// them (it would take seconds per thousand; see
  /// ``PlanArguments/inlinePhyrLimit``), then runs the command.
  static func main() {
    let arguments = Array(CommandLine.arguments.dropFirst())
    let inline = arguments.reduce(0) { $0 + ($1 == "--phyr" || $1.hasPrefix("--phyr=") ? 1 : 0) }
    if let refusal = PlanArguments.inlineRefusal(count: inline) {
      printError("umem plan: \(refusal)")
      Glibc.exit(2)
    }
    main(arguments)
  }
}

#if canImport(Glibc)
  import Glibc
#endif
