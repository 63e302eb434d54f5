import Logging
import NetstackCore
import NetstackIO
import NetstackWire

/// Everything `netstackd` is told: the interface, the stack's addresses and
/// limits, and how the daemon itself behaves. Built from the TOML file, then
/// overridden by command-line flags.
public struct DaemonConfiguration: Sendable {
    public var interface = "tap0"
    public var mac = MACAddress(0x02, 0, 0, 0, 0, 0x01)
    public var mtu = 1500
    public var ipv4Addresses: [InterfaceAddress<IPv4>] = []
    public var ipv6Addresses: [InterfaceAddress<IPv6>] = []
    public var ipv4Gateway: IPv4Address?
    public var ipv6Gateway: IPv6Address?
    public var ipv6LinkLocal = true
    /// Open the TAP with a virtio-net header and use the kernel's checksum
    /// and segmentation offloads (falling back to plain frames if refused).
    public var offloads = true
    public var logLevel = Logger.Level.info
    public var pcap: String?
    /// A BPF expression: only the frames it selects are written.
    public var pcapFilter: String?
    public var pcapFormat = CaptureFormat.pcap
    /// Start a new capture file past this size, keeping `files` (see `PcapRotation`).
    public var pcapRotation: PcapRotation?
    /// Faults injected on the link, both ways (`--fault`); nil for none.
    public var faults: FaultSettings?
    /// Seconds between counter summaries at log level info; nil for none.
    public var statisticsInterval: Duration? = .seconds(10)
    /// How long the engine polls without sleeping after the last frame or
    /// request; nil: it sleeps at once.
    public var busyPoll: Duration? = .microseconds(50)
    public var dadTransmits = 1
    public var routerSolicitations = 3
    public var mldRobustness = 2
    public var reassemblyMemory = 4 * 1024 * 1024
    public var neighborEntries = 1024
    public var icmpErrorsPerSecond = 1000
    public var icmpErrorBurst = 50
    /// Milliseconds per further ICMP error to one destination; 0: no
    /// per-destination limit.
    public var icmpDestinationIntervalMilliseconds = 1000
    public var icmpDestinationBurst = 6
    /// TCP connections (every state but TIME-WAIT) at most, in all and per remote address.
    public var tcpConnections = 65_536
    public var tcpConnectionsPerPeer = 16_384
    /// Whether TCP negotiates ECN (RFC 3168).
    public var ecn = ECNMode.passive
    /// Half-open connections per listener before SYN cookies.
    public var synQueue = 256
    /// Bytes all socket buffers may hold together.
    public var socketBufferMemory = 256 << 20
    /// Destinations whose learned path MTU is remembered.
    public var pathMTUEntries = 1024
    /// The built-in services to run.
    public var services: [ServiceSetting] = []
    /// The control socket's path; nil: no control socket.
    public var controlSocket: String? = "/run/netstackd.sock"
    /// A group whose members (by primary gid) may use the control socket,
    /// which is then mode 0660 instead of 0600.
    public var controlGroup: UInt32?
    /// Control connections at most, in all and from one process (each socket
    /// of a program under `netstack-run` is one).
    public var controlMaximumClients = 16_384
    public var controlMaximumClientsPerProcess = 8_192

    public init() {}

    /// The built-in default: `config/netstackd.toml` as embedded in the binary.
    public static func standard() throws(ConfigurationError) -> DaemonConfiguration {
        try ConfigurationFile.parse(embeddedConfiguration, source: "built-in configuration")
    }

    /// What the core needs of it.
    public var stackConfiguration: StackConfiguration {
        var stack = StackConfiguration(mac: mac)
        stack.mtu = mtu
        stack.ipv4Addresses = ipv4Addresses
        stack.ipv6Addresses = ipv6Addresses
        stack.ipv4Gateway = ipv4Gateway
        stack.ipv6Gateway = ipv6Gateway
        stack.ipv6LinkLocal = ipv6LinkLocal
        stack.ipv6Startup.dadTransmits = dadTransmits
        stack.ipv6Startup.mldRobustness = mldRobustness
        stack.ipv6Startup.routerSolicitations = routerSolicitations
        stack.reassembly.totalBytes = reassemblyMemory
        stack.neighbors.maximumEntries = neighborEntries
        stack.icmp.errorsPerSecond = icmpErrorsPerSecond
        stack.icmp.burst = icmpErrorBurst
        stack.icmp.perDestinationInterval = icmpDestinationIntervalMilliseconds == 0
            ? nil : .milliseconds(icmpDestinationIntervalMilliseconds)
        stack.icmp.perDestinationBurst = icmpDestinationBurst
        stack.tcp.maximumConnections = tcpConnections
        stack.tcp.maximumConnectionsPerPeer = tcpConnectionsPerPeer
        stack.tcp.synQueueLimit = synQueue
        stack.tcp.ecn = ecn
        stack.socketBufferMemory = socketBufferMemory
        stack.pathMTUEntries = pathMTUEntries
        return stack
    }

    /// Adds an address of either version.
    public mutating func add(_ address: AnyInterfaceAddress) {
        switch address {
        case .v4(let v4): ipv4Addresses.append(v4)
        case .v6(let v6): ipv6Addresses.append(v6)
        }
    }

    /// Sets the gateway of the address's version; false if one was already set.
    public mutating func setGateway(_ address: AnyIPAddress) -> Bool {
        switch address {
        case .v4(let v4):
            defer { ipv4Gateway = v4 }
            return ipv4Gateway == nil
        case .v6(let v6):
            defer { ipv6Gateway = v6 }
            return ipv6Gateway == nil
        }
    }

    /// Checks what no single field can: limits in range, the interface name.
    /// Throws naming the first field that is wrong.
    public func validate() throws(ConfigurationError) {
        if pcapFilter != nil && pcap == nil {
            throw ConfigurationError(field: "pcap-filter", message: "filters a capture: give pcap too")
        }
        if let rotation = pcapRotation {
            guard pcap != nil else {
                throw ConfigurationError(field: "pcap-rotate", message: "rotates a capture: give pcap too")
            }
            guard (1...1000).contains(rotation.files) else {
                throw ConfigurationError(field: "pcap-files", message: "\(rotation.files) is outside 1...1000")
            }
        }
        guard !interface.isEmpty, interface.utf8.count <= 15,
              !interface.contains(where: { $0 == "/" || $0.isWhitespace }) else {
            throw ConfigurationError(field: "interface.name", message: "\"\(interface)\" is not an interface name "
                                     + "(1 to 15 characters, no '/' or spaces)")
        }
        guard (IPv4.minimumMTU...65_535).contains(mtu) else {
            throw ConfigurationError(field: "interface.mtu", message: "\(mtu) is outside 68...65535")
        }
        guard mac.isUnicast, mac != .zero else {
            throw ConfigurationError(field: "interface.mac", message: "\(mac) is not a unicast address")
        }
        if !ipv6Addresses.isEmpty || ipv6LinkLocal, mtu < IPv6.minimumMTU {
            throw ConfigurationError(field: "interface.mtu", message: "IPv6 needs an MTU of at least 1280")
        }
        guard reassemblyMemory >= 65_536 else {
            throw ConfigurationError(field: "limits.reassembly-memory", message: "must be at least 65536")
        }
        guard neighborEntries >= 1 else {
            throw ConfigurationError(field: "limits.neighbor-entries", message: "must be at least 1")
        }
        for (value, field) in [(icmpErrorsPerSecond, "icmp-errors-per-second"), (icmpErrorBurst, "icmp-error-burst"),
                               (icmpDestinationIntervalMilliseconds, "icmp-destination-interval-ms"),
                               (icmpDestinationBurst, "icmp-destination-burst")] where value < 0 {
            throw ConfigurationError(field: "limits.\(field)", message: "must not be negative")
        }
        for (value, field) in [(tcpConnections, "tcp-connections"), (tcpConnectionsPerPeer, "tcp-connections-per-peer")]
        where !(1...10_000_000).contains(value) {
            throw ConfigurationError(field: "limits.\(field)", message: "must be 1...10000000")
        }
        guard (1...1_000_000).contains(synQueue) else {
            throw ConfigurationError(field: "limits.syn-queue", message: "must be 1...1000000")
        }
        guard socketBufferMemory >= 1 << 20 else {
            throw ConfigurationError(field: "limits.socket-buffer-memory", message: "must be at least 1048576")
        }
        guard (1...1_000_000).contains(pathMTUEntries) else {
            throw ConfigurationError(field: "limits.path-mtu-entries", message: "must be 1...1000000")
        }
        guard (0...10).contains(dadTransmits) else {
            throw ConfigurationError(field: "ipv6.dad-transmits", message: "must be 0...10")
        }
        guard (0...7).contains(mldRobustness) else {
            throw ConfigurationError(field: "ipv6.mld-robustness", message: "must be 0...7")
        }
        guard (0...10).contains(routerSolicitations) else {
            throw ConfigurationError(field: "ipv6.router-solicitations", message: "must be 0...10")
        }
    }
}

/// The capture and fault settings, as the file's keys and the flags give
/// them: `field` is the key path or flag that errors name.
extension DaemonConfiguration {
    mutating func setPcapFormat(_ text: String, field: String) throws(ConfigurationError) {
        guard let format = CaptureFormat(rawValue: text) else {
            throw ConfigurationError(field: field, message: "\"\(text)\" is not pcap or pcapng")
        }
        pcapFormat = format
    }

    /// A size in bytes, or with K, M or G (binary multiples, `KiB`/`MiB`/`GiB`
    /// also taken), from 64 KiB to 1 TiB. Keeps the number of files (10 at first).
    mutating func setPcapRotate(_ text: String, field: String) throws(ConfigurationError) {
        var digits = Substring(text)
        var scale = 1
        for (suffix, multiple) in [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("K", 1 << 10), ("M", 1 << 20),
                                   ("G", 1 << 30), ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30)]
        where text.hasSuffix(suffix) {
            digits = text.dropLast(suffix.count)
            scale = multiple
            break
        }
        guard let number = Int(digits), number > 0, number <= (1 << 40) / scale, number * scale >= 65_536 else {
            throw ConfigurationError(field: field, message: "\"\(text)\" is not a size from 64K to 1024G (like 10M)")
        }
        pcapRotation = PcapRotation(maximumBytes: number * scale, files: pcapRotation?.files ?? 10)
    }

    /// `rotate` names the setting that must come first, as errors say it.
    mutating func setPcapFiles(_ files: Int, field: String, rotate: String) throws(ConfigurationError) {
        guard pcapRotation != nil else {
            throw ConfigurationError(field: field, message: "counts rotated files: give \(rotate) too")
        }
        guard (1...1000).contains(files) else {
            throw ConfigurationError(field: field, message: "\(files) is outside 1...1000")
        }
        pcapRotation?.files = files
    }

    mutating func setFaults(_ text: String, field: String) throws(ConfigurationError) {
        do {
            let settings = try FaultSettings(parsing: text)
            faults = settings.isEmpty ? nil : settings
        } catch {
            throw ConfigurationError(field: field, message: "\(error)")
        }
    }
}

/// A configuration value that is wrong: which field, and why.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// The key path (`interface.mac`) or flag (`--address`).
    public var field: String
    public var message: String
    /// The file (or "built-in configuration"), when the value came from one.
    public var source: String?

    public init(field: String, message: String, source: String? = nil) {
        self.field = field
        self.message = message
        self.source = source
    }

    public var description: String {
        (source.map { "\($0): " } ?? "") + "\(field): \(message)"
    }
}

/// An interface address of either version, as flags and files give them.
public enum AnyInterfaceAddress: Sendable, Hashable, CustomStringConvertible {
    case v4(InterfaceAddress<IPv4>)
    case v6(InterfaceAddress<IPv6>)

    /// Parses `address/prefix` of either version.
    public init?(_ text: String) {
        if let v4 = InterfaceAddress<IPv4>(cidr: text) {
            self = .v4(v4)
        } else if let v6 = InterfaceAddress<IPv6>(cidr: text) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .v4(let a): a.description
        case .v6(let a): a.description
        }
    }
}

/// An IP address of either version.
public enum AnyIPAddress: Sendable, Hashable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    public init?(_ text: String) {
        if let v4 = IPv4Address(text) {
            self = .v4(v4)
        } else if let v6 = IPv6Address(text) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .v4(let a): a.description
        case .v6(let a): a.description
        }
    }
}
