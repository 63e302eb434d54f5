import Logging
import NetstackCore
import NetstackIO
import NetstackWire

/// A stack running on its engine thread over one end of a memory link.
public final class RunningStack: Sendable {
    public let engine: Engine<MemoryLinkEnd>
    private let thread: DedicatedThread

    init(configuration: StackConfiguration, device: MemoryLinkEnd, seed: UInt64) throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let stack = Stack(configuration: configuration, now: SystemClock.monotonic(), seed: seed)
        let engine = try Engine(stack: stack, device: device, logger: logger, statisticsInterval: nil)
        self.engine = engine
        thread = DedicatedThread { try? engine.run() }
    }

    public var sockets: SocketRuntime { engine.sockets }

    /// Stops the engine and waits for its thread.
    public func shutdown() async {
        engine.stop()
        await thread.wait()
    }
}

/// Two stacks joined by a memory link: `stack` has the daemon's default
/// addresses (192.168.69.1, fdaa::1), `host` the fixtures' host side
/// (192.168.69.100, fdaa::100). Neither probes or announces on start.
public struct LinkedStacks: Sendable {
    public let link: MemoryLink
    public let stack: RunningStack
    public let host: RunningStack

    public init(configure: (inout StackConfiguration) -> Void = { _ in }) throws {
        link = try MemoryLink()
        var stackConfiguration = FixtureReplay.replayConfiguration
        configure(&stackConfiguration)
        var hostConfiguration = StackConfiguration(mac: MACAddress(2, 0, 0, 0, 0, 0x64))
        hostConfiguration.ipv4Addresses = [InterfaceAddress(IPv4Address(192, 168, 69, 100), prefixLength: 24)]
        hostConfiguration.ipv6Addresses = [InterfaceAddress(IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100),
                                                            prefixLength: 64)]
        hostConfiguration.gratuitousARPCount = 0
        hostConfiguration.ipv6Startup.dadTransmits = 0
        hostConfiguration.ipv6Startup.routerSolicitations = 0
        hostConfiguration.ipv6Startup.mldRobustness = 0
        configure(&hostConfiguration)
        hostConfiguration.mac = MACAddress(2, 0, 0, 0, 0, 0x64)
        stack = try RunningStack(configuration: stackConfiguration, device: link.first, seed: 1)
        host = try RunningStack(configuration: hostConfiguration, device: link.second, seed: 2)
    }

    public func shutdown() async {
        await stack.shutdown()
        await host.shutdown()
    }

    public static let stackIPv4 = IPv4Address(192, 168, 69, 1)
    public static let hostIPv4 = IPv4Address(192, 168, 69, 100)
    public static let stackIPv6 = IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 1)
    public static let hostIPv6 = IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100)
}
