internal import CRDMA

/// Reads a port's GID table (`ibv_query_gid_table`).
enum GIDTable {
  static func read(
    _ context: UnsafeMutablePointer<ibv_context>?, port number: Int, length: Int
  ) throws(VerbsError) -> [GIDEntry] {
    guard length > 0 else { return [] }
    var entries = [ibv_gid_entry](repeating: ibv_gid_entry(), count: length)
    let count = entries.withUnsafeMutableBufferPointer { buffer in
      ibv_query_gid_table(context, buffer.baseAddress, buffer.count, 0)
    }
    if count < 0 {
      throw VerbsError(
        .other, operation: "ibv_query_gid_table", errno: Int32(-count),
        message: "the GID table of port \(number) could not be read")
    }
    return entries.prefix(count).compactMap { entry in
      guard Int(entry.port_num) == number else { return nil }
      let kind: GIDEntry.Kind =
        switch entry.gid_type {
        case UInt32(IBV_GID_TYPE_ROCE_V1.rawValue): .roceV1
        case UInt32(IBV_GID_TYPE_ROCE_V2.rawValue): .roceV2
        default: .infiniband
        }
      return GIDEntry(index: Int(entry.gid_index), port: number, gid: GID(entry.gid), type: kind)
    }
  }
}
