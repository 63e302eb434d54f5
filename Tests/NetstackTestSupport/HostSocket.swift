import Glibc
import NetstackWire

/// A kernel socket on the host side of a test's TAP, created inside the
/// test's namespace (sockets keep their namespace whichever thread uses them).
public final class HostSocket: Sendable {
    public let descriptor: Int32

    public struct Failure: Error, CustomStringConvertible {
        public let operation: String
        public let code: Int32
        public var description: String { "\(operation): \(String(cString: strerror(code)))" }
    }

    /// A UDP or TCP socket of the address's family, connected to `address`:`port`.
    public init(namespace: TestNamespace, connectTo address: String, port: UInt16, tcp: Bool = false,
                timeout: Duration = .seconds(5)) throws {
        descriptor = try inNetworkNamespace(namespace.name) {
            try HostSocket.connect(address, port, tcp: tcp, timeout: timeout)
        }
    }

    deinit { close(descriptor) }

    private static func connect(_ address: String, _ port: UInt16, tcp: Bool, timeout: Duration) throws -> Int32 {
        let v6 = IPv6Address(address) != nil
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(tcp ? SOCK_STREAM.rawValue : SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(operation: "socket", code: errno) }
        var time = timeval(tv_sec: Int(timeout.components.seconds),
                           tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        let rc: Int32
        if v6, let ip = IPv6Address(address) {
            var storage = sockaddr_in6()
            storage.sin6_family = sa_family_t(AF_INET6)
            storage.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage.sin6_addr) { bytes in
                for i in 0..<16 { bytes[i] = ip[byte: i] }
            }
            rc = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else if let ip = IPv4Address(address) {
            var storage = sockaddr_in()
            storage.sin_family = sa_family_t(AF_INET)
            storage.sin_port = port.bigEndian
            storage.sin_addr.s_addr = ip.rawValue.bigEndian
            rc = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        } else {
            close(fd)
            throw Failure(operation: "address \(address)", code: EINVAL)
        }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw Failure(operation: "connect", code: code)
        }
        return fd
    }

    /// Sends all of `bytes` (one datagram for UDP).
    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        repeat {
            let n = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n >= 0 else { throw Failure(operation: "send", code: errno) }
            offset += n
        } while offset < bytes.count
    }

    /// Receives up to `maximum` bytes (one datagram for UDP); empty at end of stream.
    public func receive(maximum: Int = 65_536) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maximum)
        let n = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, maximum, 0) }
        guard n >= 0 else { throw Failure(operation: "receive", code: errno) }
        return Array(buffer[0..<n])
    }

    /// Closes the sending direction (TCP).
    public func shutdownWrite() {
        shutdown(descriptor, Int32(SHUT_WR))
    }
}
