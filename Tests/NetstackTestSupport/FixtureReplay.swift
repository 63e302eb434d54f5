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
                dropHostFrame: (Int) -> Bool = { _ in false }, delayHostFrame: (Int) -> Int = { _ in 0 }) throws {
        let records = try Fixtures.frames(fixture)
        let origin = records.first?.timestamp.totalNanoseconds ?? 0
        let stack = Stack(configuration: configuration, now: .zero, seed: 1)
        setUp(stack)
        var produced: [[UInt8]] = []
        var hostIndex = 0
        var rewriter = TCPRewriter()
        /// Host frames held back: (frames still to wait, the frame).
        var delayed: [(wait: Int, frame: [UInt8])] = []
        func collect() {
            stack.transmit { bytes in
                let frame = Array(bytes)
                rewriter.learn(produced: frame)
                produced.append(frame)
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
                rewriter.learn(expected: record.bytes)
                expected.append(record.bytes)
                continue
            }
            defer { hostIndex += 1 }
            if dropHostFrame(hostIndex) { continue }
            var due: [[UInt8]] = []
            let delay = delayHostFrame(hostIndex)
            if delay > 0 {
                delayed.append((delay, record.bytes))
            } else {
                due.append(record.bytes)
            }
            for index in delayed.indices.reversed() {
                delayed[index].wait -= 1
                if delayed[index].wait < 0 { due.append(delayed.remove(at: index).frame) }
            }
            for frame in due {
                rewriter.translate(frame).withSpan { stack.receive(frame: $0, now: now) }
                stack.poll(now: now)
                application(stack)
                collect()
            }
        }
        for (_, frame) in delayed {
            rewriter.translate(frame).withSpan { stack.receive(frame: $0, now: stack.nextDeadline ?? .zero) }
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

/// TCP echo (port 7) and discard (port 9) on both versions, driving a stack
/// directly: accept everything, echo or drop what arrives, and close after
/// the peer has (a fast application: it runs after every frame). Like the
/// discard server recorded in the captures, discard shuts down its sending
/// side at once.
public final class DirectTCPServices {
    private var listeners: [(id: SocketID, v6: Bool)] = []
    private var connections: [(id: SocketID, v6: Bool, echo: Bool, closed: Bool)] = []
    public private(set) var received: [UInt8] = []
    public private(set) var accepted = 0

    public init() {}

    public func setUp(_ stack: Stack) {
        for port: UInt16 in [7, 9] {
            let v4 = stack.tcpOpen(IPv4.self)
            try! stack.tcpBind(IPv4.self, v4, to: .any(port: port))
            try! stack.tcpListen(IPv4.self, v4, backlog: 16)
            let v6 = stack.tcpOpen(IPv6.self)
            try! stack.tcpBind(IPv6.self, v6, to: .any(port: port))
            try! stack.tcpListen(IPv6.self, v6, backlog: 16)
            listeners += [(v4, false), (v6, true)]
        }
    }

    public func run(_ stack: Stack) {
        for listener in listeners {
            while let id = listener.v6 ? try? stack.tcpAccept(IPv6.self, listener.id)
                    : try? stack.tcpAccept(IPv4.self, listener.id) {
                let port = listener.v6 ? (try? stack.tcpLocalEndpoint(IPv6.self, id))??.port
                    : (try? stack.tcpLocalEndpoint(IPv4.self, id))??.port
                connections.append((id, listener.v6, port == 7, false))
                accepted += 1
                if port == 9 {
                    if listener.v6 {
                        try? stack.tcpShutdown(IPv6.self, id, read: false, write: true)
                    } else {
                        try? stack.tcpShutdown(IPv4.self, id, read: false, write: true)
                    }
                }
            }
        }
        for index in connections.indices where !connections[index].closed {
            let connection = connections[index]
            connections[index].closed = connection.v6 ? serve(IPv6.self, connection.id, echo: connection.echo, stack)
                : serve(IPv4.self, connection.id, echo: connection.echo, stack)
        }
    }

    /// Reads what is there, echoes it; returns true once closed.
    private func serve<I: IPVersion>(_ version: I.Type, _ id: SocketID, echo: Bool, _ stack: Stack) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let result: Int?? = buffer.withUnsafeMutableBytes { try? stack.tcpReceive(I.self, id, into: $0) }
            guard let outcome = result else {
                // An error (reset): the connection is gone.
                stack.tcpClose(I.self, id)
                return true
            }
            guard let count = outcome else { return false }
            if count == 0 {
                try? stack.tcpShutdown(I.self, id, read: false, write: true)
                stack.tcpClose(I.self, id)
                return true
            }
            received += buffer[0..<count]
            if echo {
                var offset = 0
                while offset < count {
                    let chunk = Array(buffer[offset..<count])
                    guard let sent = try? stack.tcpSend(I.self, id, chunk.span.bytes), sent > 0 else { break }
                    offset += sent
                }
            }
        }
    }
}

/// Moves the host's TCP segments from the recorded kernel's sequence space to
/// our stack's: acknowledgment numbers, SACK blocks and echoed timestamps are
/// rebased from the kernel's initial sequence number and first TSval to ours.
struct TCPRewriter {
    struct Flow: Hashable { var stackPort: UInt16; var hostPort: UInt16 }
    struct Origin { var sequence: UInt32; var timestamp: UInt32? }
    private var kernel: [Flow: Origin] = [:]
    private var ours: [Flow: Origin] = [:]

    mutating func learn(expected frame: [UInt8]) { learn(frame, into: &kernel) }
    mutating func learn(produced frame: [UInt8]) { learn(frame, into: &ours) }

    private func learn(_ frame: [UInt8], into table: inout [Flow: Origin]) {
        guard let d = try? frame.withSpan({ try Dissection($0) }), case .tcp(let tcp) = d.transport,
              tcp.flags.contains(.syn) else { return }
        var timestamp: UInt32?
        try? TCPOption.forEach(in: tcp.options.array.span.bytes) { option in
            if case .timestamps(let value, _) = option { timestamp = value }
        }
        table[Flow(stackPort: tcp.sourcePort, hostPort: tcp.destinationPort)] =
            Origin(sequence: tcp.sequenceNumber, timestamp: timestamp)
    }

    func translate(_ frame: [UInt8]) -> [UInt8] {
        guard var d = try? frame.withSpan({ try Dissection($0) }), case .tcp(var tcp) = d.transport,
              tcp.flags.contains(.ack) else { return frame }
        let flow = Flow(stackPort: tcp.destinationPort, hostPort: tcp.sourcePort)
        guard let from = kernel[flow], let to = ours[flow] else { return frame }
        let shift = to.sequence &- from.sequence
        tcp.acknowledgmentNumber &+= shift
        var options = OptionBytes()
        try? TCPOption.forEach(in: tcp.options.array.span.bytes) { option in
            switch option {
            case .sack(let blocks):
                var moved = SACKBlocks()
                for i in 0..<blocks.count { moved.append(left: blocks[i].left &+ shift, right: blocks[i].right &+ shift) }
                options.append(.sack(moved))
            case .timestamps(let value, let echo) where from.timestamp != nil && to.timestamp != nil && echo != 0:
                options.append(.timestamps(value: value, echoReply: echo &- from.timestamp! &+ to.timestamp!))
            default:
                options.append(option)
            }
        }
        while options.count < tcp.options.count { options.append(TCPOption.endOfList) }
        tcp.options = options
        d.transport = .tcp(tcp)
        return frame.withSpan { d.emit(payload: $0.extracting(d.payload)) }
    }
}

/// What the stack side did on each TCP connection of a capture, independent
/// of application timing: the handshake as sent, the data bytes sent, how far
/// it acknowledged, whether and where it sent a FIN, and resets.
public struct TCPTranscript: Hashable, CustomStringConvertible {
    public var handshake: [String] = []
    public var data: [UInt8] = []
    public var highestAcknowledgment: UInt32 = 0
    public var fin: UInt32?
    public var resets: [String] = []
    public var segments = 0
    /// Windows advertised, scaled, after the handshake.
    public var windows: [Int] = []

    /// The stack side's transcript of `frames` (from the stack's MAC).
    public static func of(_ frames: [[UInt8]]) -> [String: TCPTranscript] {
        var transcripts: [String: TCPTranscript] = [:]
        var origins: [String: (sequence: UInt32, peer: UInt32, shift: Int)] = [:]
        var pieces: [String: [UInt32: [UInt8]]] = [:]
        for frame in frames {
            guard let d = try? frame.withSpan({ try Dissection($0) }), case .tcp(let tcp) = d.transport else { continue }
            let key = "\(tcp.sourcePort)>\(tcp.destinationPort)"
            var transcript = transcripts[key] ?? TCPTranscript()
            transcript.segments += 1
            var shift = 0
            try? TCPOption.forEach(in: tcp.options.array.span.bytes) { if case .windowScale(let s) = $0 { shift = Int(s) } }
            if tcp.flags.contains(.rst) {
                let base = origins[key]
                transcript.resets.append("[\(tcp.flags)] seq \(tcp.sequenceNumber &- (base?.sequence ?? 0)) "
                                         + "ack \(tcp.acknowledgmentNumber &- (base?.peer ?? 0))")
            } else if tcp.flags.contains(.syn) {
                origins[key] = (tcp.sequenceNumber, tcp.acknowledgmentNumber &- 1, shift)
                var kinds: [String] = []
                try? TCPOption.forEach(in: tcp.options.array.span.bytes) { option in
                    switch option {
                    case .maximumSegmentSize(let mss): kinds.append("mss \(mss)")
                    case .sackPermitted: kinds.append("sackOK")
                    case .timestamps(_, let echo): kinds.append(echo == 0 ? "TS" : "TS+echo")
                    case .windowScale: kinds.append("wscale")
                    default: break
                    }
                }
                transcript.handshake.append("[\(tcp.flags)] \(kinds.joined(separator: ","))")
            }
            if let origin = origins[key], !tcp.flags.contains(.rst) {
                let relative = tcp.sequenceNumber &- origin.sequence
                let payload = Array(frame[d.payload])
                if !payload.isEmpty { pieces[key, default: [:]][relative] = payload }
                if tcp.flags.contains(.ack) {
                    transcript.highestAcknowledgment = max(transcript.highestAcknowledgment,
                                                           tcp.acknowledgmentNumber &- origin.peer)
                }
                if tcp.flags.contains(.fin) { transcript.fin = relative + UInt32(payload.count) }
                if !tcp.flags.contains(.syn) { transcript.windows.append(Int(tcp.window) << origin.shift) }
            }
            transcripts[key] = transcript
        }
        for (key, byOffset) in pieces {
            var bytes: [UInt8] = []
            for (offset, payload) in byOffset.sorted(by: { $0.key < $1.key }) {
                let start = Int(offset) - 1
                if start + payload.count > bytes.count {
                    bytes += payload.suffix(start + payload.count - bytes.count)
                }
            }
            transcripts[key]?.data = bytes
        }
        return transcripts
    }

    /// Everything but the windows, which depend on buffer sizes.
    public var essentials: String {
        "handshake \(handshake) data \(data.count)B acked \(highestAcknowledgment) fin \(fin.map(String.init) ?? "-") resets \(resets)"
    }

    public var description: String { essentials }
}
