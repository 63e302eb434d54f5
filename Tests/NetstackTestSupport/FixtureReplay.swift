import NetstackCore
import NetstackIO
import NetstackWire

/// Replays a fixture (a capture of the Linux kernel in the stack's role)
/// through `CaptureReplay`, the implementation `netstackd replay` uses.
public struct FixtureReplay {
    /// Frames the kernel sent in the capture, in order.
    public var expected: [[UInt8]] { replay.expected }
    /// Frames our stack sent during the replay, in order.
    public var produced: [[UInt8]] { replay.produced }
    /// The stack after the replay, for counters and state.
    public var stack: Stack { replay.stack }
    public let replay: CaptureReplay

    /// The fixtures' stack side, with nothing sent unprompted (no
    /// announcements, no DAD, no router solicitations), as in the captures.
    public static var replayConfiguration: StackConfiguration { CaptureReplay.quiet(.standard) }

    /// Replays `fixture` (see `CaptureReplay.init` for the closures).
    public init(fixture: String, configuration: StackConfiguration = Self.replayConfiguration,
                setUp: (Stack) -> Void = { _ in }, application: (Stack) -> Void = { _ in },
                dropHostFrame: (Int) -> Bool = { _ in false }, delayHostFrame: (Int) -> Int = { _ in 0 }) throws {
        replay = CaptureReplay(records: try Fixtures.frames(fixture), stackMAC: Fixtures.stackMAC,
                               configuration: configuration, setUp: setUp, application: application,
                               dropHostFrame: dropHostFrame, delayHostFrame: delayHostFrame)
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

    public init() {}

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
