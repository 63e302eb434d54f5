import NetstackCore
import NetstackIO
import NetstackWire

/// Replays a capture of the Linux kernel in the stack's role: the host's
/// frames are fed to a `Stack` configured as the capture's stack side, at the
/// capture's times, and what the stack sends is collected next to what the
/// kernel sent.
public struct FixtureReplay {
    /// Frames the kernel sent in the capture, in order.
    public var expected: [[UInt8]] = []
    /// Frames our stack sent during the replay, in order.
    public var produced: [[UInt8]] = []
    /// The stack after the replay, for counters and state.
    public var stack: Stack

    /// The fixtures' stack side, with nothing sent unprompted (no
    /// announcements, no DAD, no router solicitations), as in the captures.
    public static var replayConfiguration: StackConfiguration {
        var configuration = StackConfiguration.standard
        configuration.gratuitousARPCount = 0
        configuration.ipv6Startup.dadTransmits = 0
        configuration.ipv6Startup.routerSolicitations = 0
        return configuration
    }

    /// Replays `fixture`. `setUp` prepares the stack (binds sockets);
    /// `application` runs after every frame, as the programs using the stack
    /// would (an echo service answering what arrived). `dropHostFrame`, when
    /// given, decides which of the host's frames (by index among the host's
    /// frames) never arrive: loss.
    public init(fixture: String, configuration: StackConfiguration = Self.replayConfiguration,
                setUp: (Stack) -> Void = { _ in }, application: (Stack) -> Void = { _ in },
                dropHostFrame: (Int) -> Bool = { _ in false }) throws {
        let records = try Fixtures.frames(fixture)
        let origin = records.first?.timestamp.totalNanoseconds ?? 0
        let stack = Stack(configuration: configuration, now: .zero, seed: 1)
        setUp(stack)
        var produced: [[UInt8]] = []
        var hostIndex = 0
        func collect() {
            stack.transmit { bytes in
                produced.append(Array(bytes))
                return true
            }
        }
        for record in records {
            let now = Instant(nanoseconds: record.timestamp.totalNanoseconds - origin)
            // Timers due before this frame run first, as they would have.
            while let deadline = stack.nextDeadline, deadline <= now {
                stack.poll(now: deadline)
                collect()
            }
            let source = record.bytes.withSpan { (try? EthernetFrame($0))?.source }
            if source == Fixtures.stackMAC {
                expected.append(record.bytes)
                continue
            }
            defer { hostIndex += 1 }
            if dropHostFrame(hostIndex) { continue }
            record.bytes.withSpan { stack.receive(frame: $0, now: now) }
            stack.poll(now: now)
            application(stack)
            collect()
        }
        self.produced = produced
        self.stack = stack
    }

    /// The kind signatures of the expected and produced frames that `include`
    /// selects, for comparison.
    public func signatures(where include: (Dissection) -> Bool = { _ in true }) -> (expected: [FrameKind],
                                                                                   produced: [FrameKind]) {
        var expectedRebase = SequenceRebase()
        var producedRebase = SequenceRebase()
        let expected = self.expected.compactMap { FrameKind($0, include: include, rebase: &expectedRebase) }
        let produced = self.produced.compactMap { FrameKind($0, include: include, rebase: &producedRebase) }
        return (expected, produced)
    }
}

/// Which frames a comparison is about.
public enum FrameFilter {
    /// Address resolution: ARP and NDP neighbour solicitation/advertisement.
    public static func isNeighborDiscovery(_ d: Dissection) -> Bool {
        switch d.transport {
        case .icmpv6(.neighborSolicitation), .icmpv6(.neighborAdvertisement): return true
        default: break
        }
        if case .arp = d.network { return true }
        return false
    }

    /// Everything but unsolicited chatter a stack may leave out: router
    /// solicitations and MLD reports.
    public static func isAnswer(_ d: Dissection) -> Bool {
        switch d.transport {
        case .icmpv6(.routerSolicitation): return false
        case .icmpv6(let message) where message.type == ICMPv6Type.multicastListenerReport
            || message.type == ICMPv6Type.multicastListenerReportV2: return false
        case .fragment, .icmpv4, .icmpv6, .udp, .tcp, .other, nil: return true
        }
    }
}

/// Turns TCP sequence and acknowledgment numbers into offsets from each
/// side's initial sequence number, per connection.
public struct SequenceRebase {
    struct Flow: Hashable { var source: String; var destination: String }
    private var initial: [Flow: UInt32] = [:]

    mutating func rebase(_ tcp: TCPHeader, source: String, destination: String) -> (seq: UInt32, ack: UInt32?) {
        let flow = Flow(source: "\(source).\(tcp.sourcePort)", destination: "\(destination).\(tcp.destinationPort)")
        let reverse = Flow(source: flow.destination, destination: flow.source)
        if tcp.flags.contains(.syn) { initial[flow] = tcp.sequenceNumber }
        let base = initial[flow] ?? tcp.sequenceNumber
        if initial[flow] == nil { initial[flow] = base }
        let seq = tcp.sequenceNumber &- base
        guard tcp.flags.contains(.ack) else { return (seq, nil) }
        if initial[reverse] == nil { initial[reverse] = tcp.acknowledgmentNumber &- 1 }
        return (seq, tcp.acknowledgmentNumber &- initial[reverse]!)
    }
}

/// What a frame is "in kind": the fields a correct stack must reproduce
/// exactly (types, addresses, ports, flags, payload, rebased sequence numbers,
/// which TCP options), without those that legitimately differ from run to run
/// (IP identification, TCP initial sequence numbers and timestamps, windows).
public struct FrameKind: Hashable, CustomStringConvertible {
    public var summary: String
    public var payload: [UInt8]

    public init?(_ bytes: [UInt8], include: (Dissection) -> Bool, rebase: inout SequenceRebase) {
        guard let d = try? bytes.withSpan({ try Dissection($0) }), include(d) else { return nil }
        var text = "\(d.ethernet.source)>\(d.ethernet.destination)"
        var source = "", destination = ""
        switch d.network {
        case .arp(let arp):
            text += " ARP \(arp)"
        case .ipv4(let ip):
            source = "\(ip.source)"; destination = "\(ip.destination)"
            text += " IPv4 \(source)>\(destination) ttl \(ip.timeToLive)"
            if ip.moreFragments || ip.fragmentOffset != 0 {
                text += " frag \(ip.fragmentOffset)\(ip.moreFragments ? "+" : "")"
            }
        case .ipv6(let ip, let extensions):
            source = "\(ip.source)"; destination = "\(ip.destination)"
            text += " IPv6 \(source)>\(destination) hops \(ip.hopLimit)"
            for ext in extensions {
                text += " [\(ext.kind)"
                if let fragment = ext.fragment { text += " \(fragment.offset)\(fragment.moreFragments ? "+" : "")" }
                text += "]"
            }
        case .other(let type):
            text += " \(type)"
        }
        switch d.transport {
        case .icmpv4(let message): text += " ICMP \(message)"
        case .icmpv6(let message): text += " ICMPv6 \(message)"
        case .udp(let udp): text += " UDP \(udp.sourcePort)>\(udp.destinationPort)"
        case .tcp(let tcp):
            let (seq, ack) = rebase.rebase(tcp, source: source, destination: destination)
            text += " TCP \(tcp.sourcePort)>\(tcp.destinationPort) [\(tcp.flags)] seq \(seq)"
            if let ack { text += " ack \(ack)" }
            var kinds: [String] = []
            try? TCPOption.forEach(in: tcp.options.array.span.bytes) { option in
                switch option {
                case .maximumSegmentSize(let mss): kinds.append("mss \(mss)")
                case .windowScale: kinds.append("wscale")
                case .sackPermitted: kinds.append("sackOK")
                case .timestamps: kinds.append("TS")
                case .sack(let blocks): kinds.append("sack \(blocks.count)")
                case .noOperation, .endOfList: break
                case .unknown(let kind, _): kinds.append("opt \(kind)")
                }
            }
            text += " <\(kinds.joined(separator: ","))>"
        case .fragment(let proto): text += " \(proto) data"
        case .other(let proto): text += " \(proto)"
        case nil: break
        }
        summary = text
        payload = Array(bytes[d.payload])
    }

    public var description: String { "\(summary) +\(payload.count)B" }
}

/// A UDP echo service driving a stack directly (no sockets layer): binds
/// port 7 on both versions, and echoes whatever is queued.
public final class DirectUDPEcho {
    public private(set) var sockets: (v4: SocketID, v6: SocketID)?
    public private(set) var echoed = 0

    public init() {}

    public func setUp(_ stack: Stack) {
        let v4 = stack.udpOpen(IPv4.self)
        let v6 = stack.udpOpen(IPv6.self)
        try! stack.udpBind(IPv4.self, v4, to: .any(port: 7))
        try! stack.udpBind(IPv6.self, v6, to: .any(port: 7))
        sockets = (v4, v6)
    }

    public func run(_ stack: Stack) {
        guard let sockets else { return }
        echo(IPv4.self, sockets.v4, stack)
        echo(IPv6.self, sockets.v6, stack)
    }

    private func echo<I: IPVersion>(_ version: I.Type, _ id: SocketID, _ stack: Stack) {
        while let (source, payload) = try? stack.udpReceive(I.self, id, { ($0.source, $1.array) }) {
            _ = try? stack.udpSend(I.self, id, to: source, payload: payload.span.bytes)
            echoed += 1
        }
    }
}
