package import SystemPackage

/// Small text files of the kernel (`/proc`, `/sys`), read whole.
package enum TextFile {
  /// Reads the file at `path` to its end. swift-system's `FileDescriptor`
  /// retries `EINTR`; the descriptor is closed on every path.
  package static func read(_ path: String) -> Result<String, Errno> {
    do {
      let fd = try FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec)
      return try fd.closeAfter {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
          let n = try chunk.withUnsafeMutableBytes { try fd.read(into: $0) }
          if n == 0 { break }
          data.append(contentsOf: chunk[0..<n])
        }
        return .success(String(decoding: data, as: UTF8.self))
      }
    } catch let error as Errno {
      return .failure(error)
    } catch {
      return .failure(.ioError)
    }
  }
}
