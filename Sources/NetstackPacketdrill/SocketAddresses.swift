import Glibc
import NetstackCore
import NetstackWire

/// An IP version as the socket API spells it: its address family and its
/// `sockaddr` form. Descriptors carry one, so generic socket calls need no
/// v4/v6 branches.
protocol SocketFamily: IPVersion {
    static var addressFamily: Int32 { get }
    /// The endpoint in `address` (of `length` bytes), if it is of this family.
    static func endpoint(_ address: UnsafeRawPointer, length: socklen_t) -> Endpoint<Self>?
    /// Writes `endpoint` into `address` (at most `*length` bytes) and sets
    /// `*length` to its full size, as the kernel does.
    static func store(_ endpoint: Endpoint<Self>, into address: UnsafeMutableRawPointer?,
                      length: UnsafeMutablePointer<socklen_t>?)
}

extension IPv4: SocketFamily {
    static var addressFamily: Int32 { AF_INET }

    static func endpoint(_ address: UnsafeRawPointer, length: socklen_t) -> Endpoint<IPv4>? {
        guard length >= MemoryLayout<sockaddr_in>.size else { return nil }
        let value = address.loadUnaligned(as: sockaddr_in.self)
        guard Int32(value.sin_family) == AF_INET else { return nil }
        return Endpoint(IPv4Address(rawValue: UInt32(bigEndian: value.sin_addr.s_addr)), UInt16(bigEndian: value.sin_port))
    }

    static func store(_ endpoint: Endpoint<IPv4>, into address: UnsafeMutableRawPointer?,
                      length: UnsafeMutablePointer<socklen_t>?) {
        var value = sockaddr_in()
        value.sin_family = sa_family_t(AF_INET)
        value.sin_port = endpoint.port.bigEndian
        value.sin_addr.s_addr = endpoint.address.rawValue.bigEndian
        copy(&value, into: address, length: length)
    }
}

extension IPv6: SocketFamily {
    static var addressFamily: Int32 { AF_INET6 }

    static func endpoint(_ address: UnsafeRawPointer, length: socklen_t) -> Endpoint<IPv6>? {
        guard length >= MemoryLayout<sockaddr_in6>.size else { return nil }
        let value = address.loadUnaligned(as: sockaddr_in6.self)
        guard Int32(value.sin6_family) == AF_INET6 else { return nil }
        let bytes = withUnsafeBytes(of: value.sin6_addr) { Array($0) }
        let address = bytes.withSpan { IPv6Address($0, at: 0) }
        return Endpoint(address, UInt16(bigEndian: value.sin6_port))
    }

    static func store(_ endpoint: Endpoint<IPv6>, into address: UnsafeMutableRawPointer?,
                      length: UnsafeMutablePointer<socklen_t>?) {
        var value = sockaddr_in6()
        value.sin6_family = sa_family_t(AF_INET6)
        value.sin6_port = endpoint.port.bigEndian
        withUnsafeMutableBytes(of: &value.sin6_addr) { bytes in
            bytes.storeBytes(of: endpoint.address.high.bigEndian, toByteOffset: 0, as: UInt64.self)
            bytes.storeBytes(of: endpoint.address.low.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        copy(&value, into: address, length: length)
    }
}

/// Copies a `sockaddr_*` out as `getsockname` does: truncated to the
/// caller's length, which is then set to the full size.
private func copy<T>(_ value: inout T, into address: UnsafeMutableRawPointer?, length: UnsafeMutablePointer<socklen_t>?) {
    guard let length else { return }
    let size = MemoryLayout<T>.size
    if let address {
        withUnsafeBytes(of: &value) { bytes in
            address.copyMemory(from: bytes.baseAddress!, byteCount: min(size, Int(length.pointee)))
        }
    }
    length.pointee = socklen_t(size)
}
