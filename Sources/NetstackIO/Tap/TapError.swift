import Glibc

/// A TAP operation that failed: which interface, what was being done, and the
/// system's reason, with a hint where there is an obvious one.
///
/// `description` reads like `tap0: open /dev/net/tun: permission denied (run as root)`.
public struct TapError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Operation: String, Sendable {
        case open = "open /dev/net/tun"
        case bringUp = "bring up"
        case readMTU = "read MTU"
        case setMTU = "set MTU"
        case queueLength = "set queue length"
        case readMAC = "read MAC address"
        case setMAC = "set MAC address"
        case setOffload = "set offloads"
        case setVirtioHeaderSize = "set virtio header size"
        case read
        case write
        case poll
    }

    public let interface: String
    public let operation: Operation
    /// The `errno` value.
    public let code: Int32

    public init(interface: String, operation: Operation, code: Int32) {
        self.interface = interface
        self.operation = operation
        self.code = code
    }

    /// The system's text for the error, in lower case ("permission denied").
    public var reason: String {
        guard let text = strerror(code) else { return "error \(code)" }
        let message = String(cString: text)
        return message.prefix(1).lowercased() + message.dropFirst()
    }

    var hint: String? {
        switch code {
        case EPERM, EACCES: "run as root or with CAP_NET_ADMIN"
        case ENOENT where operation == .open: "is the tun module loaded? try modprobe tun"
        case ENAMETOOLONG: "interface names have at most 15 characters"
        case EBUSY where operation == .open: "another process holds the interface"
        case ENODEV: "no such interface"
        default: nil
        }
    }

    public var description: String {
        let base = "\(interface): \(operation.rawValue): \(reason)"
        return hint.map { "\(base) (\($0))" } ?? base
    }
}
