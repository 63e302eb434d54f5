import NetstackCore
import NetstackWire

/// Builds the frames a host on the link (the fixtures' host side by default)
/// would send to the stack, from header values.
public struct HostFrames: Sendable {
    public var mac = MACAddress(0x02, 0, 0, 0, 0, 0x64)
    public var ipv4 = IPv4Address(192, 168, 69, 100)
    public var ipv6 = IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100)
    public var linkLocal = IPv6Address.linkLocal(eui64: MACAddress(0x02, 0, 0, 0, 0, 0x64))
    /// The stack's side.
    public var stackMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)
    public var stackIPv4 = IPv4Address(192, 168, 69, 1)
    public var stackIPv6 = IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 1)

    public init() {}

    public static func ethernet(_ header: EthernetHeader, _ payload: [UInt8]) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: header.headerLength) + payload
        frame.withMutableBytes { header.emit(into: &$0) }
        return frame
    }

    // MARK: IPv4

    public func arp(_ operation: ARPOperation, target: IPv4Address, to destination: MACAddress = .broadcast,
                    senderAddress: IPv4Address? = nil, targetMAC: MACAddress = .zero) -> [UInt8] {
        let message = ARPMessage(operation: operation, senderHardwareAddress: mac,
                                 senderProtocolAddress: senderAddress ?? ipv4,
                                 targetHardwareAddress: targetMAC, targetProtocolAddress: target)
        var body = [UInt8](repeating: 0, count: message.length)
        body.withMutableBytes { message.emit(into: &$0) }
        return Self.ethernet(EthernetHeader(destination: destination, source: mac, etherType: .arp), body)
    }

    /// An IPv4 packet carrying `payload` (already a complete upper-layer message).
    public func ipv4Packet(_ proto: IPProtocol, _ payload: [UInt8], source: IPv4Address? = nil,
                           destination: IPv4Address? = nil, identification: UInt16 = 1, fragmentOffset: Int = 0,
                           moreFragments: Bool = false, ttl: UInt8 = 64, linkDestination: MACAddress? = nil,
                           corruptChecksum: Bool = false) -> [UInt8] {
        var header = IPv4Header(protocol: proto, source: source ?? ipv4, destination: destination ?? stackIPv4,
                                payloadLength: payload.count, timeToLive: ttl, identification: identification)
        header.fragmentOffset = fragmentOffset
        header.moreFragments = moreFragments
        var packet = [UInt8](repeating: 0, count: header.headerLength) + payload
        packet.withMutableBytes { header.emit(into: &$0) }
        if corruptChecksum { packet[10] ^= 0x55 }
        return Self.ethernet(EthernetHeader(destination: linkDestination ?? stackMAC, source: mac, etherType: .ipv4),
                             packet)
    }

    public static func icmpv4(_ message: ICMPv4Message, body: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: message.headerLength + body.count)
        bytes.withMutableBytes { span in body.withSpan { message.emit(into: &span, body: $0) } }
        return bytes
    }

    public func echoRequest4(identifier: UInt16 = 7, sequence: UInt16 = 1, data: [UInt8] = Array(0..<56),
                             destination: IPv4Address? = nil, linkDestination: MACAddress? = nil) -> [UInt8] {
        ipv4Packet(.icmp, Self.icmpv4(.echoRequest(identifier: identifier, sequence: sequence), body: data),
                   destination: destination, linkDestination: linkDestination)
    }

    /// The fragments of one IPv4 datagram carrying `payload`, cut at `chunk`
    /// bytes of data (a multiple of 8).
    public func fragments4(_ proto: IPProtocol, _ payload: [UInt8], identification: UInt16,
                           chunk: Int = 1480) -> [[UInt8]] {
        stride(from: 0, to: payload.count, by: chunk).map { offset in
            let end = min(offset + chunk, payload.count)
            return ipv4Packet(proto, Array(payload[offset..<end]), identification: identification,
                              fragmentOffset: offset, moreFragments: end < payload.count)
        }
    }

    /// A TCP segment from the host to the stack over IPv4.
    public func tcp(_ sourcePort: UInt16, _ destinationPort: UInt16, sequence: UInt32, acknowledgment: UInt32,
                    flags: TCPFlags, window: UInt16 = 65_535, options: [TCPOption] = [],
                    payload: [UInt8] = []) -> [UInt8] {
        var header = TCPHeader(sourcePort: sourcePort, destinationPort: destinationPort, sequenceNumber: sequence,
                               acknowledgmentNumber: acknowledgment, flags: flags, window: window,
                               payloadLength: payload.count)
        for option in options { header.options.append(option) }
        var segment = [UInt8](repeating: 0, count: header.headerLength) + payload
        segment.withMutableBytes { header.emit(into: &$0, source: ipv4, destination: stackIPv4) }
        return ipv4Packet(.tcp, segment)
    }

    // MARK: IPv6

    /// An IPv6 packet; `extensionHeaders` (already encoded, their first byte
    /// the next header) come before `payload`, and `nextHeader` names the first
    /// of them (or the payload).
    public func ipv6Packet(_ nextHeader: IPProtocol, _ payload: [UInt8], extensionHeaders: [UInt8] = [],
                           source: IPv6Address? = nil, destination: IPv6Address? = nil, hopLimit: UInt8 = 64,
                           linkDestination: MACAddress? = nil) -> [UInt8] {
        let destination = destination ?? stackIPv6
        let header = IPv6Header(nextHeader: nextHeader, source: source ?? ipv6, destination: destination,
                                payloadLength: extensionHeaders.count + payload.count, hopLimit: hopLimit)
        var packet = [UInt8](repeating: 0, count: 40) + extensionHeaders + payload
        packet.withMutableBytes { header.emit(into: &$0) }
        let linkDestination = linkDestination
            ?? (destination.isMulticast ? MACAddress(ipv6Multicast: destination) : stackMAC)
        return Self.ethernet(EthernetHeader(destination: linkDestination, source: mac, etherType: .ipv6), packet)
    }

    public static func icmpv6(_ message: ICMPv6Message, body: [UInt8], source: IPv6Address,
                              destination: IPv6Address) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: message.headerLength + body.count)
        bytes.withMutableBytes { span in
            body.withSpan { message.emit(into: &span, body: $0, source: source, destination: destination) }
        }
        return bytes
    }

    public func icmpv6Packet(_ message: ICMPv6Message, body: [UInt8] = [], source: IPv6Address? = nil,
                             destination: IPv6Address? = nil, hopLimit: UInt8 = 64) -> [UInt8] {
        let source = source ?? ipv6
        let destination = destination ?? stackIPv6
        return ipv6Packet(.icmpv6, Self.icmpv6(message, body: body, source: source, destination: destination),
                          source: source, destination: destination, hopLimit: hopLimit)
    }

    public func echoRequest6(identifier: UInt16 = 7, sequence: UInt16 = 1, data: [UInt8] = Array(0..<56),
                             destination: IPv6Address? = nil, source: IPv6Address? = nil) -> [UInt8] {
        icmpv6Packet(.echoRequest(identifier: identifier, sequence: sequence), body: data, source: source,
                     destination: destination)
    }

    public static func options(_ options: [NDPOption]) -> [UInt8] {
        var bytes = [UInt8]()
        for option in options {
            var encoded = [UInt8](repeating: 0, count: option.length)
            encoded.withMutableBytes { option.emit(into: &$0) }
            bytes += encoded
        }
        return bytes
    }

    /// A neighbour solicitation for `target`, to its solicited-node group,
    /// with our link address (or from `::` without it, for DAD).
    public func neighborSolicitation(for target: IPv6Address, fromUnspecified: Bool = false,
                                     hopLimit: UInt8 = 255) -> [UInt8] {
        let source = fromUnspecified ? IPv6Address.unspecified : ipv6
        return icmpv6Packet(.neighborSolicitation(target: target),
                            body: fromUnspecified ? [] : Self.options([.sourceLinkLayerAddress(mac)]),
                            source: source, destination: target.solicitedNodeMulticast, hopLimit: hopLimit)
    }

    public func neighborAdvertisement(target: IPv6Address, solicited: Bool, to destination: IPv6Address,
                                      mac advertised: MACAddress? = nil, router: Bool = false) -> [UInt8] {
        icmpv6Packet(.neighborAdvertisement(router: router, solicited: solicited, override: true, target: target),
                     body: Self.options([.targetLinkLayerAddress(advertised ?? mac)]), source: target,
                     destination: destination, hopLimit: 255)
    }

    public func routerAdvertisement(lifetime: UInt16 = 1800, options: [NDPOption]) -> [UInt8] {
        icmpv6Packet(.routerAdvertisement(RouterAdvertisement(currentHopLimit: 64, routerLifetime: lifetime)),
                     body: Self.options(options), source: linkLocal, destination: .allNodes, hopLimit: 255)
    }

    /// The fragments of one IPv6 datagram whose fragmentable part is `payload`
    /// (upper-layer protocol `proto`), cut at `chunk` bytes of data.
    public func fragments6(_ proto: IPProtocol, _ payload: [UInt8], identification: UInt32,
                           chunk: Int = 1448) -> [[UInt8]] {
        stride(from: 0, to: payload.count, by: chunk).map { offset in
            let end = min(offset + chunk, payload.count)
            var header = [UInt8](repeating: 0, count: 8)
            header.withMutableBytes {
                IPv6Fragment(offset: offset, moreFragments: end < payload.count, identification: identification)
                    .emit(nextHeader: proto, into: &$0)
            }
            return ipv6Packet(.fragment, Array(payload[offset..<end]), extensionHeaders: header)
        }
    }
}

/// Drives a `Stack` with a manual clock and records what it sends.
public final class StackDriver {
    public let stack: Stack
    public private(set) var now: Instant = .zero
    /// Every frame the stack sent, in order.
    public private(set) var sent: [[UInt8]] = []

    public init(_ configuration: StackConfiguration = FixtureReplay.replayConfiguration, seed: UInt64 = 1) {
        stack = Stack(configuration: configuration, now: .zero, seed: seed)
        flush()
    }

    /// Delivers a frame, then runs due timers and collects the output.
    public func receive(_ frame: [UInt8]) {
        frame.withSpan { stack.receive(frame: $0, now: now) }
        stack.poll(now: now)
        flush()
    }

    /// Moves the clock forward, running every timer on the way at its time.
    public func advance(by duration: Duration) {
        let end = now + duration
        while let deadline = stack.nextDeadline, deadline <= end {
            now = max(now, deadline)
            stack.poll(now: now)
            flush()
        }
        now = end
        stack.poll(now: now)
        flush()
    }

    /// A connection from `host` (its port 40000, a SYN at `initialSequence`
    /// with `options`, so its next sequence number is one past it) accepted
    /// on a listener at `port`: returns the socket and the stack's next
    /// sequence number.
    public func acceptConnection(from host: HostFrames, port: UInt16 = 80, initialSequence: UInt32 = 1000,
                                 options: [TCPOption] = [.maximumSegmentSize(1460)]) throws -> (socket: SocketID,
                                                                                              sequence: UInt32) {
        receive(host.arp(.request, target: host.stackIPv4))
        let listener = stack.tcpOpen(IPv4.self)
        try stack.tcpBind(IPv4.self, listener, to: .any(port: port))
        try stack.tcpListen(IPv4.self, listener, backlog: 4)
        _ = takeSent()
        receive(host.tcp(40000, port, sequence: initialSequence, acknowledgment: 0, flags: .syn, options: options))
        guard case .tcp(let synAck)? = takeSent().first?.transport else { throw SocketError.closed }
        let ours = synAck.sequenceNumber &+ 1
        receive(host.tcp(40000, port, sequence: initialSequence &+ 1, acknowledgment: ours, flags: .ack))
        guard let socket = try stack.tcpAccept(IPv4.self, listener) else { throw SocketError.notConnected }
        _ = takeSent()
        return (socket, ours)
    }

    /// The TCP segments among the frames sent since the last call.
    public func takeSentSegments() -> [TCPHeader] {
        takeSent().compactMap { if case .tcp(let header) = $0.transport { header } else { nil } }
    }

    /// The frames sent since the last call, parsed.
    public func takeSent() -> [Dissection] {
        defer { sent.removeAll() }
        return sent.compactMap { try? $0.withSpan { try Dissection($0) } }
    }

    private func flush() {
        stack.transmit { bytes in
            sent.append(Array(bytes))
            return true
        }
    }
}
