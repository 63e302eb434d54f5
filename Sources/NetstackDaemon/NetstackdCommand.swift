import ArgumentParser
import Logging
import NetstackCore
import NetstackIO
import NetstackWire

/// The command line of `netstackd`. Flags override the configuration file.
public struct NetstackdCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "netstackd",
        abstract: "A userspace TCP/IP stack on a TAP device.",
        discussion: """
            Without --config, the built-in configuration (config/netstackd.toml) is used: \
            tap0, 02:00:00:00:00:01, 192.168.69.1/24 and fdaa::1/64. Bad flags or \
            configuration exit with status 2. `netstackd replay FILE --out OUT` replays a \
            capture through a fresh stack instead (`netstackd replay --help`).
            """)

    @Option(name: .long, help: "Read the configuration from this TOML file instead of the built-in one.")
    var config: String?

    @Option(name: .long, help: "The TAP interface to open or create.")
    var interface: String?

    @Option(name: .long, help: "The stack's MAC address.")
    var mac: MACAddress?

    @Option(name: .customLong("address"), help: "An address with its prefix (v4 or v6); repeat for more. Replaces the configured addresses.")
    var addresses: [AnyInterfaceAddress] = []

    @Option(name: .customLong("gateway"), help: "A default gateway (one per IP version); repeat for both. Replaces the configured gateways.")
    var gateways: [AnyIPAddress] = []

    @Option(name: .long, help: "The link MTU.")
    var mtu: Int?

    @Flag(inversion: .prefixedNo,
          help: "Use the TAP's checksum and segmentation offloads (a virtio-net header; on unless configured off).")
    var offloads: Bool?

    @Option(name: .customLong("busy-poll-us"),
            help: "Microseconds the engine keeps polling after the last frame before it sleeps (0: never).")
    var busyPollMicroseconds: Int?

    @Option(name: .long, help: "Write every frame in and out to this pcap file.")
    var pcap: String?

    @Option(name: .long, help: "Write only the frames this BPF expression (tcpdump's syntax) selects.")
    var pcapFilter: String?

    @Option(name: .long, help: "The capture's file format: pcap or pcapng.")
    var pcapFormat: String?

    @Option(name: .long, help: "Start a new capture file past this size (like 10M); the older ones become FILE.1, FILE.2, ...")
    var pcapRotate: String?

    @Option(name: .long, help: "With --pcap-rotate: how many capture files to keep (10 unless configured).")
    var pcapFiles: Int?

    @Option(name: .long, help: "Inject faults on the link, both ways: drop=5%,corrupt=0.1%,duplicate=1%,reorder=10%,delay=2ms,rate=100mbit,seed=1 (turns offloads off).")
    var fault: String?

    @Option(name: .long, help: "The control socket's path (\"\" for none).")
    var controlSocket: String?

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level?

    public init() {}

    /// The configuration this command line describes.
    public func resolve() throws(ConfigurationError) -> DaemonConfiguration {
        var configuration = if let config {
            try ConfigurationFile.load(path: config)
        } else {
            try DaemonConfiguration.standard()
        }
        if let interface { configuration.interface = interface }
        if let mac { configuration.mac = mac }
        if !addresses.isEmpty {
            configuration.ipv4Addresses = []
            configuration.ipv6Addresses = []
            for address in addresses { configuration.add(address) }
        }
        if !gateways.isEmpty {
            configuration.ipv4Gateway = nil
            configuration.ipv6Gateway = nil
            for gateway in gateways where !configuration.setGateway(gateway) {
                throw ConfigurationError(field: "--gateway", message: "more than one gateway for the version of \(gateway)")
            }
        }
        if let mtu { configuration.mtu = mtu }
        if let offloads { configuration.offloads = offloads }
        if let busyPollMicroseconds {
            guard (0...1_000_000).contains(busyPollMicroseconds) else {
                throw ConfigurationError(field: "--busy-poll-us", message: "\(busyPollMicroseconds) is outside 0...1000000")
            }
            configuration.busyPoll = busyPollMicroseconds == 0 ? nil : .microseconds(busyPollMicroseconds)
        }
        if let pcap { configuration.pcap = pcap }
        if let pcapFilter { configuration.pcapFilter = pcapFilter }
        if let pcapFormat { try configuration.setPcapFormat(pcapFormat, field: "--pcap-format") }
        if let pcapRotate { try configuration.setPcapRotate(pcapRotate, field: "--pcap-rotate") }
        if let pcapFiles { try configuration.setPcapFiles(pcapFiles, field: "--pcap-files", rotate: "--pcap-rotate") }
        if let fault { try configuration.setFaults(fault, field: "--fault") }
        if let logLevel { configuration.logLevel = logLevel }
        if let controlSocket { configuration.controlSocket = controlSocket.isEmpty ? nil : controlSocket }
        do {
            try configuration.validate()
        } catch {
            // Name the flag when the bad value came from one.
            var error = error
            let flags = ["interface.name": interface != nil ? "--interface" : nil,
                         "interface.mtu": mtu != nil ? "--mtu" : nil,
                         "interface.mac": mac != nil ? "--mac" : nil,
                         "pcap-rotate": pcapRotate != nil ? "--pcap-rotate" : nil]
            if let flag = flags[error.field] ?? nil { error.field = flag }
            throw error
        }
        return configuration
    }
}

extension MACAddress: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

extension AnyInterfaceAddress: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

extension AnyIPAddress: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
