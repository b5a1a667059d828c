import ArgumentParser
import ToolSupport
import Verbs

/// `umem devices`: what `ibv_devinfo -v` tells, made readable.
struct Devices: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List RDMA devices, their attributes, ports and capabilities.")

  @Flag(help: "Print one JSON object.") var json = false

  func run() throws {
    let devices: [Device]
    do { devices = try Device.list() } catch {
      printError("umem devices: \(error)")
      throw ExitCode(1)
    }
    var reports: [JSON] = []
    for device in devices {
      do {
        let context = try DeviceContext.open(name: device.name)
        let attributes = try context.attributes()
        let capabilities = try context.capabilities()
        // Query every port first, so the device's header line comes before
        // its ports (and a failing port query prints nothing half-way).
        var ports: [(number: Int, port: PortAttributes, gids: [GIDEntry])] = []
        for number in 1...max(1, attributes.portCount) {
          ports.append((number, try context.port(number), try context.gids(port: number)))
        }
        if json {
          reports.append(
            deviceJSON(device, attributes, capabilities, ports.map { portJSON($0, $1, $2) }))
        } else {
          printDevice(device, attributes, capabilities)
          for entry in ports { printPort(entry.number, entry.port, entry.gids) }
        }
      } catch {
        printError("umem devices: \(device.name): \(error)")
        throw ExitCode(1)
      }
    }
    if json {
      print(
        JSON.object([
          ("devices", .array(reports)),
          ("forkProtection", .string(ForkProtection.current.description)),
        ]).text)
    } else if devices.isEmpty {
      print("no RDMA devices (try: ci/rxe umem devices)")
    } else {
      print("fork protection: \(ForkProtection.current)")
    }
  }

  func printPort(_ number: Int, _ port: PortAttributes, _ gids: [GIDEntry]) {
    print(
      "  port \(number): \(port.state), \(port.linkLayer), MTU \(port.activeMTU) (max \(port.maxMTU)), LID \(port.lid)"
    )
    for entry in gids {
      let ip = entry.gid.ipv4Address.map { " (\($0))" } ?? ""
      print("    GID[\(entry.index)] \(entry.gid) \(entry.type)\(ip)")
    }
  }

  func printDevice(_ device: Device, _ a: DeviceAttributes, _ c: DeviceCapabilities) {
    print(
      "\(device.name): \(device.transport), GUID \(Device.format(guid: device.guid)), firmware \(a.firmwareVersion.isEmpty ? "-" : a.firmwareVersion)"
    )
    print("  page sizes      \(hex(a.pageSizeCapability))")
    print("  max MR size     \(hex(a.maxMemoryRegionSize))")
    print(
      "  max MRs         \(a.maxMemoryRegions)   max PDs \(a.maxProtectionDomains)   max QPs \(a.maxQueuePairs)   max CQs \(a.maxCompletionQueues)"
    )
    print(
      "  max QP WRs      \(a.maxWorkRequestsPerQueue)   max SGEs \(a.maxScatterGatherEntries)   max CQEs \(a.maxCompletionQueueEntries)"
    )
    print(
      "  RDMA READ/atomic depth  initiator \(a.maxInitiatorReadAtomics), responder \(a.maxResponderReadAtomics)"
    )
    print("  atomics         \(a.atomicCapability)")
    print(
      "  ODP             \(a.onDemandPaging.supported ? "yes" : "no")\(a.onDemandPaging.implicit ? " (implicit too)" : "")"
    )
    print("  dma-buf MRs     \(c.dmabufRegistration ? "yes" : "no")")
    print("  rereg MR        \(c.reregistration ? "yes" : "no")")
  }

  func portJSON(_ number: Int, _ port: PortAttributes, _ gids: [GIDEntry]) -> JSON {
    .object([
      ("port", .number(Int64(number))), ("state", .string(port.state.description)),
      ("linkLayer", .string(port.linkLayer.description)),
      ("activeMTU", .number(Int64(port.activeMTU))),
      ("maxMTU", .number(Int64(port.maxMTU))), ("lid", .number(Int64(port.lid))),
      (
        "gids",
        .array(
          gids.map { entry in
            .object([
              ("index", .number(Int64(entry.index))), ("gid", .string(entry.gid.description)),
              ("type", .string(entry.type.description)),
              ("ipv4", entry.gid.ipv4Address.map { .string($0) } ?? .null),
            ])
          })
      ),
    ])
  }

  func deviceJSON(
    _ device: Device, _ a: DeviceAttributes, _ c: DeviceCapabilities, _ ports: [JSON]
  ) -> JSON {
    .object([
      ("name", .string(device.name)), ("guid", .string(Device.format(guid: device.guid))),
      ("transport", .string(device.transport.description)),
      ("firmware", .string(a.firmwareVersion)),
      ("pageSizeCap", .string(hex(a.pageSizeCapability))),
      ("maxMRSize", .string(hex(a.maxMemoryRegionSize))),
      ("maxMR", .number(Int64(a.maxMemoryRegions))),
      ("maxPD", .number(Int64(a.maxProtectionDomains))),
      ("maxQP", .number(Int64(a.maxQueuePairs))), ("maxCQ", .number(Int64(a.maxCompletionQueues))),
      ("maxQPWR", .number(Int64(a.maxWorkRequestsPerQueue))),
      ("maxSGE", .number(Int64(a.maxScatterGatherEntries))),
      ("maxCQE", .number(Int64(a.maxCompletionQueueEntries))),
      ("maxInitiatorReadAtomic", .number(Int64(a.maxInitiatorReadAtomics))),
      ("maxResponderReadAtomic", .number(Int64(a.maxResponderReadAtomics))),
      ("atomicCap", .string(a.atomicCapability.description)),
      ("odp", .bool(a.onDemandPaging.supported)), ("odpImplicit", .bool(a.onDemandPaging.implicit)),
      ("dmabuf", .bool(c.dmabufRegistration)), ("rereg", .bool(c.reregistration)),
      ("ports", .array(ports)),
    ])
  }
}
