import Glibc

extension ControlEndpoint {
    /// Parses a numeric IPv4 or IPv6 address (no names: the stack has no resolver).
    public init?(host: String, port: UInt16) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            self.init(family: .ipv4, address: withUnsafeBytes(of: &v4) { Array($0) }, port: port)
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            self.init(family: .ipv6, address: withUnsafeBytes(of: &v6) { Array($0) }, port: port)
        } else {
            return nil
        }
    }

    /// The unspecified address of `family` with `port`.
    public static func any(_ family: IPFamily, port: UInt16) -> ControlEndpoint {
        ControlEndpoint(family: family, address: [UInt8](repeating: 0, count: family == .ipv4 ? 4 : 16), port: port)
    }

    /// The address in its usual text form ("192.168.69.1", "fdaa::1").
    public var host: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok = address.withUnsafeBytes { bytes in
            inet_ntop(family == .ipv4 ? AF_INET : AF_INET6, bytes.baseAddress, &text, socklen_t(text.count)) != nil
        }
        return ok ? String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    }
}
