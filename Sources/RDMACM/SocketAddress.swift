#if canImport(Glibc)
  import Glibc
#endif

/// An IPv4 or IPv6 address and port, as rdma_cm takes them (`struct sockaddr`).
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
  var bytes: [UInt8]

  /// Resolves `host` (a name or numeric address) with `getaddrinfo`, as
  /// rping does for `-a` and `-I`. The port is in host order.
  public init(host: String, port: UInt16 = 0) throws(CMError) {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    var result: UnsafeMutablePointer<addrinfo>? = nil
    let status = getaddrinfo(host, nil, &hints, &result)
    guard status == 0, let first = result, let address = first.pointee.ai_addr else {
      let text = status == 0 ? "no address" : String(cString: gai_strerror(status))
      throw CMError(
        .invalidArgument, operation: "getaddrinfo", errno: EINVAL,
        message: "cannot resolve '\(host)': \(text)")
    }
    defer { freeaddrinfo(result) }
    bytes = Array(UnsafeRawBufferPointer(start: address, count: Int(first.pointee.ai_addrlen)))
    self.port = port
  }

  /// The IPv4 wildcard address 0.0.0.0 with this port (rping's server default).
  public static func any(port: UInt16) -> SocketAddress {
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    var address = SocketAddress(raw: withUnsafeBytes(of: &sin) { Array($0) })
    address.port = port
    return address
  }

  init(raw: [UInt8]) { bytes = raw }

  init?(_ address: UnsafePointer<sockaddr>?) {
    guard let address else { return nil }
    let length =
      switch Int32(address.pointee.sa_family) {
      case AF_INET: MemoryLayout<sockaddr_in>.size
      case AF_INET6: MemoryLayout<sockaddr_in6>.size
      default: 0
      }
    guard length > 0 else { return nil }
    bytes = Array(UnsafeRawBufferPointer(start: address, count: length))
  }

  var family: Int32 { bytes.withUnsafeBytes { Int32($0.load(as: sockaddr.self).sa_family) } }

  /// The port, in host order.
  public var port: UInt16 {
    get {
      bytes.withUnsafeBytes { raw in
        family == AF_INET6
          ? UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
          : UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
      }
    }
    set {
      let offset =
        family == AF_INET6
        ? MemoryLayout<sockaddr_in6>.offset(of: \.sin6_port)!
        : MemoryLayout<sockaddr_in>.offset(of: \.sin_port)!
      withUnsafeBytes(of: newValue.bigEndian) { port in
        bytes.replaceSubrange(offset..<offset + 2, with: port)
      }
    }
  }

  func withSockaddr<R>(_ body: (UnsafeMutablePointer<sockaddr>) -> R) -> R {
    var copy = bytes
    return copy.withUnsafeMutableBytes {
      body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self))
    }
  }

  /// `198.18.0.1:7174`, or `[fe80::1]:7174`.
  public var description: String {
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    bytes.withUnsafeBytes { raw in
      if family == AF_INET6 {
        var a = raw.load(as: sockaddr_in6.self).sin6_addr
        _ = inet_ntop(AF_INET6, &a, &text, socklen_t(text.count))
      } else {
        var a = raw.load(as: sockaddr_in.self).sin_addr
        _ = inet_ntop(AF_INET, &a, &text, socklen_t(text.count))
      }
    }
    let host = String(
      decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
  }
}

func errnoText(_ code: Int32) -> String {
  strerror(code).map { String(cString: $0) } ?? "unknown error"
}
