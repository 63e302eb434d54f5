import NetstackWire

/// Why the stack dropped a frame or packet it had parsed, beyond malformed
/// headers (which are `WireError`s).
public enum DropReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    // Link layer.
    /// The destination MAC is neither ours, broadcast, nor a group we joined.
    case foreignDestinationMAC
    case unknownEtherType
    /// 802.1Q-tagged frames: the stack has no VLAN interfaces.
    case vlanTagged
    /// A source MAC that is our own (a loop or a spoof) or a group address.
    case badSourceMAC

    // ARP.
    /// A request or reply for an address that is not ours (noted, not answered).
    case arpNotForUs
    /// Sender address is multicast/broadcast, or a reply from our own address.
    case arpBadSender
    case arpUnknownOperation

    // IP.
    /// The destination is not one of our addresses, a broadcast, or a group we joined.
    case notOurAddress
    /// Source address that no packet may carry (multicast, broadcast, ours over the wire).
    case martianSource
    /// Addressed to an address still in duplicate address detection.
    case tentativeDestination
    /// No transport for the protocol (an ICMP error was sent where allowed).
    case unknownProtocol
    /// A hop-by-hop options header after the first header (RFC 8200 §4.1).
    case hopByHopNotFirst
    /// An IPv6 option whose type says discard (RFC 8200 §4.2).
    case unrecognizedOption
    /// A routing header with segments left that this host cannot follow.
    case unsupportedRouting
    /// No on-link prefix and no router for the destination.
    case noRoute

    // Fragments.
    /// A fragment overlapping another of the same datagram (RFC 5722): the
    /// whole datagram goes.
    case fragmentOverlap
    /// A fragment ending past the largest datagram.
    case fragmentTooLarge
    /// A non-final fragment whose length is not a multiple of 8.
    case fragmentBadLength
    /// An IPv6 first fragment without the whole header chain (RFC 7112).
    case fragmentIncompleteChain
    case reassemblyTimeout
    /// Evicted to keep reassembly memory or entries within their caps.
    case reassemblyEvicted

    // ICMP.
    /// An ICMP error not sent because of the rate limit.
    case icmpErrorRateLimited
    /// An ICMP message of a type the stack does not act on.
    case icmpIgnored
    /// An echo request to a broadcast or multicast address not answered.
    case echoToBroadcastIgnored
    /// An NDP message failing validation (hop limit, source, options: RFC 4861 §6.1, §7.1).
    case ndpInvalid
    /// An MLD query not from a router on the link, or of no version's length (RFC 3810 §5.1.14, §8.1).
    case mldInvalid

    // Neighbours and output.
    /// A frame waiting for address resolution pushed out by newer ones.
    case neighborQueueOverflow
    /// Address resolution failed; its waiting frames are dropped.
    case neighborUnreachable
    /// No free output buffer.
    case outputBuffersExhausted
    /// The device would not take the frame (its queue was full).
    case deviceQueueFull

    // Transport.
    /// A UDP datagram for a port nobody listens on (port unreachable sent).
    case udpNoSocket
    /// A UDP datagram dropped because the socket's receive queue was full.
    case udpReceiveQueueFull
    /// A UDP datagram dropped because the socket memory cap refused its
    /// queue's growth.
    case udpBufferMemory
    /// A TCP segment for which no connection or listener exists (RST sent).
    case tcpNoSocket
    /// A segment to a listener that acknowledges one of its SYN cookies but
    /// starts past the peer's first byte (what came before was lost):
    /// dropped without a reset, so the peer's retransmission completes it.
    case tcpCookieAhead
    /// A TCP segment rejected for its flags or addressing (no ACK in a
    /// synchronized state, broadcast destination, SYN-ACK that acks nothing we sent).
    case tcpRejected
    /// A SYN with FIN to a listener: dropped, as Linux drops it (a SYN+FIN
    /// is a scan's probe, not an opening).
    case tcpSynWithFin
    /// A TCP segment older than the peer's latest timestamp (PAWS, RFC 7323 §5).
    case tcpPAWS
    /// A TCP segment outside the receive window (RFC 9293 §3.10.7.4 first check).
    case tcpOutOfWindow
    /// A TCP segment acknowledging data never sent (RFC 9293 §3.10.7.4 fifth check).
    case tcpAcknowledgesUnsent
    /// A RST or SYN in the window but not exact, or an ACK too old: answered
    /// with a challenge ACK (RFC 5961).
    case tcpChallenged
    /// TCP data that did not fit the receive buffer.
    case tcpReceiveBufferFull
    /// TCP data (a segment or its tail) dropped because the socket memory
    /// cap refused the receive ring's growth.
    case tcpBufferMemory
    /// A SYN dropped because the listen queue and SYN queue were full.
    case tcpListenOverflow
    /// A SYN, cookie ACK or connect past `maximumConnections` or `maximumConnectionsPerPeer`.
    case tcpConnectionLimit

    public var description: String {
        switch self {
        case .foreignDestinationMAC: "ethernet.foreignDestination"
        case .unknownEtherType: "ethernet.unknownType"
        case .vlanTagged: "ethernet.vlanTagged"
        case .badSourceMAC: "ethernet.badSource"
        case .arpNotForUs: "arp.notForUs"
        case .arpBadSender: "arp.badSender"
        case .arpUnknownOperation: "arp.unknownOperation"
        case .notOurAddress: "ip.notOurAddress"
        case .martianSource: "ip.martianSource"
        case .tentativeDestination: "ip.tentativeDestination"
        case .unknownProtocol: "ip.unknownProtocol"
        case .hopByHopNotFirst: "ipv6.hopByHopNotFirst"
        case .unrecognizedOption: "ipv6.unrecognizedOption"
        case .unsupportedRouting: "ipv6.unsupportedRouting"
        case .noRoute: "ip.noRoute"
        case .fragmentOverlap: "fragment.overlap"
        case .fragmentTooLarge: "fragment.tooLarge"
        case .fragmentBadLength: "fragment.badLength"
        case .fragmentIncompleteChain: "fragment.incompleteChain"
        case .reassemblyTimeout: "fragment.reassemblyTimeout"
        case .reassemblyEvicted: "fragment.evicted"
        case .icmpErrorRateLimited: "icmp.errorRateLimited"
        case .icmpIgnored: "icmp.ignored"
        case .echoToBroadcastIgnored: "icmp.echoToBroadcastIgnored"
        case .ndpInvalid: "ndp.invalid"
        case .mldInvalid: "mld.invalid"
        case .neighborQueueOverflow: "neighbor.queueOverflow"
        case .neighborUnreachable: "neighbor.unreachable"
        case .outputBuffersExhausted: "output.buffersExhausted"
        case .deviceQueueFull: "output.deviceQueueFull"
        case .udpNoSocket: "udp.noSocket"
        case .udpReceiveQueueFull: "udp.receiveQueueFull"
        case .udpBufferMemory: "udp.bufferMemory"
        case .tcpNoSocket: "tcp.noSocket"
        case .tcpCookieAhead: "tcp.cookieAhead"
        case .tcpRejected: "tcp.rejected"
        case .tcpSynWithFin: "tcp.synWithFin"
        case .tcpPAWS: "tcp.paws"
        case .tcpOutOfWindow: "tcp.outOfWindow"
        case .tcpAcknowledgesUnsent: "tcp.acknowledgesUnsent"
        case .tcpChallenged: "tcp.challenged"
        case .tcpReceiveBufferFull: "tcp.receiveBufferFull"
        case .tcpBufferMemory: "tcp.bufferMemory"
        case .tcpListenOverflow: "tcp.listenOverflow"
        case .tcpConnectionLimit: "tcp.connectionLimit"
        }
    }
}

/// Things the stack counts that are not drops.
public enum StackEvent: Int, CaseIterable, Sendable, CustomStringConvertible {
    case framesReceived, bytesReceived, framesSent, bytesSent
    case arpRequestsAnswered, arpRequestsSent
    case ipv4PacketsReceived, ipv6PacketsReceived, ipv4PacketsSent, ipv6PacketsSent
    case datagramsReassembled, datagramsFragmented
    case echoRequestsAnswered, icmpErrorsSent, icmpErrorsReceived
    case neighborSolicitationsAnswered, neighborSolicitationsSent, routerAdvertisementsReceived
    case udpDatagramsReceived, udpDatagramsSent
    case tcpSegmentsReceived, tcpSegmentsSent, tcpRetransmissions, tcpResetsSent
    case tcpTimeouts, tcpFastRecoveries, tcpConnectionsOpened, tcpConnectionsAccepted
    case tcpSynCookiesSent, tcpSynCookiesAccepted
    /// A new SYN took over a four-tuple in TIME-WAIT (RFC 6191).
    case tcpTimeWaitReopened
    /// ECN agreed on a connection; segments that arrived marked CE; window
    /// reductions for an ECE (RFC 3168).
    case tcpECNNegotiated, tcpCongestionExperienced, tcpECNReductions
    /// A neighbour entry removed to make room for a new one.
    case neighborEvicted
    /// A destination's path MTU lowered by a validated ICMP message.
    case pathMTULowered
    /// Urgent marks received (RFC 9293 §3.8.5).
    case tcpUrgentReceived
    /// Initial slow starts that HyStart++ ended before any loss (RFC 9406).
    case tcpHyStartExits
    /// D-SACK blocks sent and received; fast recoveries undone because every
    /// retransmission of them was reported as a duplicate (RFC 2883, RFC 3708).
    case tcpDSACKSent, tcpDSACKReceived, tcpRecoveriesUndone
    /// Retransmission timeouts found spurious by the timestamp echo and
    /// undone (RFC 3522, RFC 4015).
    case tcpTimeoutsUndone
    /// MLD queries answered and reports sent (RFC 3810).
    case mldQueriesReceived, mldReportsSent

    public var description: String {
        switch self {
        case .framesReceived: "frames.received"
        case .bytesReceived: "bytes.received"
        case .framesSent: "frames.sent"
        case .bytesSent: "bytes.sent"
        case .arpRequestsAnswered: "arp.requestsAnswered"
        case .arpRequestsSent: "arp.requestsSent"
        case .ipv4PacketsReceived: "ipv4.received"
        case .ipv6PacketsReceived: "ipv6.received"
        case .ipv4PacketsSent: "ipv4.sent"
        case .ipv6PacketsSent: "ipv6.sent"
        case .datagramsReassembled: "fragment.reassembled"
        case .datagramsFragmented: "fragment.fragmented"
        case .echoRequestsAnswered: "icmp.echoAnswered"
        case .icmpErrorsSent: "icmp.errorsSent"
        case .icmpErrorsReceived: "icmp.errorsReceived"
        case .neighborSolicitationsAnswered: "ndp.solicitationsAnswered"
        case .neighborSolicitationsSent: "ndp.solicitationsSent"
        case .routerAdvertisementsReceived: "ndp.routerAdvertisements"
        case .udpDatagramsReceived: "udp.received"
        case .udpDatagramsSent: "udp.sent"
        case .tcpSegmentsReceived: "tcp.received"
        case .tcpSegmentsSent: "tcp.sent"
        case .tcpRetransmissions: "tcp.retransmissions"
        case .tcpResetsSent: "tcp.resetsSent"
        case .tcpTimeouts: "tcp.timeouts"
        case .tcpFastRecoveries: "tcp.fastRecoveries"
        case .tcpConnectionsOpened: "tcp.activeOpens"
        case .tcpConnectionsAccepted: "tcp.passiveOpens"
        case .tcpSynCookiesSent: "tcp.synCookiesSent"
        case .tcpSynCookiesAccepted: "tcp.synCookiesAccepted"
        case .tcpTimeWaitReopened: "tcp.timeWaitReopened"
        case .pathMTULowered: "ip.pathMTULowered"
        case .tcpUrgentReceived: "tcp.urgentReceived"
        case .tcpHyStartExits: "tcp.hyStartExits"
        case .tcpDSACKSent: "tcp.dsackSent"
        case .tcpDSACKReceived: "tcp.dsackReceived"
        case .tcpRecoveriesUndone: "tcp.recoveriesUndone"
        case .tcpTimeoutsUndone: "tcp.timeoutsUndone"
        case .mldQueriesReceived: "mld.queriesReceived"
        case .mldReportsSent: "mld.reportsSent"
        case .tcpECNNegotiated: "tcp.ecnNegotiated"
        case .tcpCongestionExperienced: "tcp.ecnCongestionExperienced"
        case .tcpECNReductions: "tcp.ecnReductions"
        case .neighborEvicted: "neighbor.evicted"
        }
    }
}

/// The stack's counters: events, and drops by reason. Fixed-size arrays, so
/// counting never allocates.
public struct Counters: Sendable {
    private var events = [UInt64](repeating: 0, count: StackEvent.allCases.count)
    private var drops = [UInt64](repeating: 0, count: DropReason.allCases.count)
    private var malformed = [UInt64](repeating: 0,
                                     count: WireError.Header.allCases.count * WireError.Reason.allCases.count)

    public init() {}

    public mutating func count(_ event: StackEvent, by amount: Int = 1) {
        events[event.rawValue] &+= UInt64(amount)
    }

    public mutating func drop(_ reason: DropReason) {
        drops[reason.rawValue] &+= 1
    }

    public mutating func drop(_ error: WireError) {
        malformed[Self.index(error)] &+= 1
    }

    public subscript(event: StackEvent) -> UInt64 { events[event.rawValue] }
    public subscript(reason: DropReason) -> UInt64 { drops[reason.rawValue] }
    public subscript(error: WireError) -> UInt64 { malformed[Self.index(error)] }

    /// All drops of every kind.
    public var totalDrops: UInt64 { drops.reduce(0, &+) &+ malformed.reduce(0, &+) }

    /// Every non-zero counter as `(name, value)`, events first, then drops.
    public var nonZero: [(name: String, value: UInt64)] {
        var list: [(String, UInt64)] = []
        for event in StackEvent.allCases where self[event] > 0 { list.append((event.description, self[event])) }
        for reason in DropReason.allCases where self[reason] > 0 {
            list.append(("drop." + reason.description, self[reason]))
        }
        for header in WireError.Header.allCases {
            for reason in WireError.Reason.allCases {
                let error = WireError(header, reason)
                if self[error] > 0 { list.append(("drop." + error.description, self[error])) }
            }
        }
        return list
    }

    private static func index(_ error: WireError) -> Int {
        let header = WireError.Header.allCases.firstIndex(of: error.header)!
        let reason = WireError.Reason.allCases.firstIndex(of: error.reason)!
        return header * WireError.Reason.allCases.count + reason
    }
}
