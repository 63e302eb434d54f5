import NetstackWire

extension IPLayer where I == IPv6 {
    /// How a packet to `destination` reaches us: one of our usable addresses,
    /// all-nodes, or the solicited-node group of any address we have (even a
    /// tentative one, RFC 4862 §5.4.2). Nil if it is not for us.
    func classify(_ destination: IPv6Address) -> DestinationKind? {
        if isOurs(destination) { return .unicast }
        if destination == .allNodes { return .multicast }
        if destination.isMulticast,
           addresses.contains(where: { $0.state != .duplicate && $0.address.solicitedNodeMulticast == destination }) {
            return .multicast
        }
        return nil
    }
}

extension Stack {
    /// IPv6 input (RFC 8200): validate, check it is for us, walk the extension
    /// headers (reassembling on the way), and hand the datagram to its protocol.
    func receiveIPv6(_ bytes: RawSpan, linkGroup: Bool, offload: ReceiveOffload = .none) {
        let packet: IPv6Packet
        do {
            packet = try IPv6Packet(bytes)
        } catch {
            return counters.drop(error)
        }
        counters.count(.ipv6PacketsReceived)
        let source = packet.source
        let destination = packet.destination
        guard !IPv6.isMartianSource(source, in: ipv6) else { return counters.drop(.martianSource) }
        guard let kind = ipv6.classify(destination) else {
            // RFC 4862 §5.4: packets to a tentative address are silently discarded.
            return counters.drop(ipv6.state(of: destination) == .tentative ? .tentativeDestination : .notOurAddress)
        }
        guard !(linkGroup && kind == .unicast) else { return counters.drop(.notOurAddress) }
        let context = IPv6Context(source: source, destination: destination, kind: kind, hopLimit: packet.hopLimit,
                                  offload: offload)
        walkIPv6Headers(packet.bytes, next: packet.nextHeader, at: IPv6Packet.headerLength,
                        fieldOffset: 6, context: context, reassembled: false)
    }

    /// Walks the extension header chain of `bytes` (a packet, or a reassembled
    /// datagram) from the header `next` at `offset`, whose type is named by
    /// the byte at `fieldOffset`, and delivers what follows the chain.
    private func walkIPv6Headers(_ bytes: RawSpan, next first: IPProtocol, at start: Int, fieldOffset firstField: Int,
                                 context: IPv6Context, reassembled: Bool) {
        var next = first
        var offset = start
        var fieldOffset = firstField
        while next.isIPv6ExtensionHeader {
            let header: IPv6ExtensionHeader
            do {
                header = try IPv6ExtensionHeader(next, bytes.extracting(offset...))
            } catch {
                return counters.drop(error)
            }
            switch next {
            case .hopByHopOptions:
                // RFC 8200 §4.1: only directly after the fixed header.
                guard offset == IPv6Packet.headerLength, !reassembled else {
                    reportParameterProblem(ICMPv6ParameterProblemCode.unrecognizedNextHeader, pointer: fieldOffset,
                                           packet: bytes, context: context)
                    return counters.drop(.hopByHopNotFirst)
                }
                guard acceptOptions(header, at: offset, packet: bytes, context: context) else { return }
            case .destinationOptions:
                guard acceptOptions(header, at: offset, packet: bytes, context: context) else { return }
            case .routing:
                // RFC 8200 §4.4: a routing header with segments left that this
                // node cannot process is reported; with none left it is ignored.
                // No routing type is supported (type 0 is deprecated, RFC 5095).
                if let routing = header.routing, routing.segmentsLeft != 0 {
                    reportParameterProblem(ICMPv6ParameterProblemCode.erroneousHeaderField, pointer: offset + 2,
                                           packet: bytes, context: context)
                    return counters.drop(.unsupportedRouting)
                }
            default: // .fragment
                guard !reassembled, let fragment = header.fragment else { return counters.drop(.fragmentBadLength) }
                // An atomic fragment (offset 0, M = 0) is a whole packet (RFC 6946).
                if fragment.offset != 0 || fragment.moreFragments {
                    guard context.offload.segmentation == .none else {
                        return counters.drop(WireError(.virtio, .badValue))
                    }
                    reassembleIPv6(bytes, fragment: fragment, header: header, at: offset, context: context)
                    return
                }
            }
            fieldOffset = offset
            next = header.nextHeader
            offset += header.length
        }
        if next == .noNextHeader { return }
        // The unspecified source belongs to a node still configuring itself:
        // duplicate address detection and MLD (RFC 4862 §5.4.2, RFC 3810
        // §5.2.13), never to a transport (RFC 4291 §2.5.2).
        guard next == .icmpv6 || !context.source.isUnspecified else { return counters.drop(.martianSource) }
        let datagram = IPDatagram<IPv6>(
            source: context.source, destination: context.destination, destinationKind: context.kind,
            hopLimit: context.hopLimit, protocol: next, packet: bytes, payloadOffset: offset,
            protocolFieldOffset: fieldOffset, offload: reassembled ? .none : context.offload)
        deliver(datagram)
    }

    /// RFC 8200 §4.5: checks a fragment, adds it, and continues the walk over
    /// the reassembled datagram once it is complete.
    private func reassembleIPv6(_ bytes: RawSpan, fragment: IPv6Fragment, header: IPv6ExtensionHeader,
                                at offset: Int, context: IPv6Context) {
        let dataStart = offset + IPv6Fragment.headerLength
        let dataLength = bytes.byteCount - dataStart
        if fragment.offset == 0 && !Self.holdsHeaderChain(bytes.extracting(dataStart...), first: header.nextHeader) {
            // RFC 7112 §5, RFC 8200 §4.5: a first fragment must carry every
            // header through the upper-layer one; the pointer is zero.
            reportParameterProblem(ICMPv6ParameterProblemCode.incompleteHeaderChain, pointer: 0, packet: bytes,
                                   context: context)
            return counters.drop(.fragmentIncompleteChain)
        }
        if fragment.moreFragments && dataLength % 8 != 0 {
            // Pointing to the payload length field.
            reportParameterProblem(ICMPv6ParameterProblemCode.erroneousHeaderField, pointer: 4, packet: bytes,
                                   context: context)
            return counters.drop(.fragmentBadLength)
        }
        if fragment.offset + dataLength > 65_535 {
            // Pointing to the fragment offset field.
            reportParameterProblem(ICMPv6ParameterProblemCode.erroneousHeaderField, pointer: offset + 2,
                                   packet: bytes, context: context)
            return counters.drop(.fragmentTooLarge)
        }
        let piece = Fragment(headers: bytes.extracting(0..<dataStart), data: bytes.extracting(dataStart...),
                             offset: fragment.offset, moreFragments: fragment.moreFragments,
                             payloadProtocol: header.nextHeader)
        let key = FragmentKey<IPv6>(source: context.source, destination: context.destination,
                                    identification: fragment.identification, protocolNumber: 0)
        var evictions = 0
        let result = ipv6.reassembler.add(piece, key: key, now: now) { _ in evictions += 1 }
        for _ in 0..<evictions { counters.drop(.reassemblyEvicted) }
        if evictions > 0 { reachedLimit(.reassemblyMemory) }
        switch result {
        case .incomplete:
            return
        case .dropped(let reason):
            counters.drop(reason)
        case .complete(let headersLength, _, let payloadProtocol):
            counters.count(.datagramsReassembled)
            let whole = ipv6.reassembler.output
            whole.withSpan { datagram in
                // The fragment header's own next-header byte names the payload.
                walkIPv6Headers(datagram, next: payloadProtocol, at: headersLength,
                                fieldOffset: headersLength - IPv6Fragment.headerLength, context: context,
                                reassembled: true)
            }
        }
    }

    /// Whether `data` (what follows a first fragment's header) holds the rest
    /// of the header chain from `first`: every extension header whole, then
    /// the fixed part of the upper-layer header (the sizes Linux asks: TCP 20,
    /// UDP and ICMPv6 8; nothing for a protocol the stack does not know).
    private static func holdsHeaderChain(_ data: RawSpan, first: IPProtocol) -> Bool {
        var next = first
        var offset = 0
        while next.isIPv6ExtensionHeader {
            guard let header = try? IPv6ExtensionHeader(next, data.extracting(offset...)) else { return false }
            next = header.nextHeader
            offset += header.length
        }
        let upperLayerLength = switch next {
        case .tcp: TCPSegment.minimumHeaderLength
        case .udp, .icmpv6: 8
        default: 0
        }
        return data.byteCount - offset >= upperLayerLength
    }

    /// Applies RFC 8200 §4.2 to the options of a hop-by-hop or destination
    /// options header: unknown options are skipped, or discard the packet and
    /// maybe report it, as the top two bits of their type say.
    private func acceptOptions(_ header: IPv6ExtensionHeader, at offset: Int, packet: RawSpan,
                               context: IPv6Context) -> Bool {
        var action: IPv6Option.UnrecognizedAction?
        var pointer = 0
        do {
            try header.forEachOption { option in
                guard action == nil, !option.isPadding else { return }
                // Router alert (RFC 2711) concerns routers; a host passes it by.
                if header.kind == .hopByHopOptions && option.type == IPv6Option.routerAlert { return }
                if option.unrecognizedAction != .skip {
                    action = option.unrecognizedAction
                    pointer = offset + option.offset
                }
            }
        } catch {
            counters.drop(error)
            return false
        }
        guard let action else { return true }
        let report = action == .discardAndReport
            || (action == .discardAndReportIfUnicast && context.kind == .unicast)
        if report {
            sendICMPError(IPv6.self,
                          .parameterProblem(code: ICMPv6ParameterProblemCode.unrecognizedOption, pointer: pointer),
                          quoting: packet, source: context.source,
                          to: context.kind == .unicast ? context.destination : nil, isAboutICMPError: false)
        }
        counters.drop(.unrecognizedOption)
        return false
    }

    private func reportParameterProblem(_ code: UInt8, pointer: Int, packet: RawSpan, context: IPv6Context) {
        guard context.kind == .unicast else { return }
        sendICMPError(IPv6.self, .parameterProblem(code: code, pointer: pointer), quoting: packet,
                      source: context.source,
                      to: context.destination, isAboutICMPError: false)
    }

    /// ICMPv6 input: echo, neighbour discovery, errors.
    func receiveICMPv6(_ datagram: IPDatagram<IPv6>) {
        let icmp: ICMPv6Packet
        let message: ICMPv6Message
        do {
            icmp = try ICMPv6Packet(datagram.payload)
            guard icmp.isChecksumValid(source: datagram.source, destination: datagram.destination) else {
                return counters.drop(WireError(.icmpv6, .badChecksum))
            }
            message = try ICMPv6Message(icmp)
        } catch {
            return counters.drop(error)
        }
        let body = icmp.body(of: message)
        switch message {
        case .echoRequest(let identifier, let sequence):
            answerEcho(datagram, identifier: identifier, sequence: sequence, data: body)
        case .neighborSolicitation(let target):
            receiveNeighborSolicitation(datagram, target: target, options: body)
        case .neighborAdvertisement(let router, let solicited, let override, let target):
            receiveNeighborAdvertisement(datagram, target: target, router: router, solicited: solicited,
                                         override: override, options: body)
        case .routerAdvertisement(let advertisement):
            receiveRouterAdvertisement(datagram, advertisement, options: body)
        case .destinationUnreachable(let code):
            let error: ICMPError = switch code {
            case ICMPv6UnreachableCode.port: .portUnreachable
            case 0: .networkUnreachable
            // Administratively prohibited, source address failed policy, reject route.
            case 1, 5, 6: .administrativelyProhibited
            default: .hostUnreachable
            }
            receiveICMPError(IPv6.self, error, quoted: body)
        case .packetTooBig(let mtu):
            receiveICMPError(IPv6.self, .packetTooBig(mtu: Int(mtu)), quoted: body)
        case .timeExceeded(let code):
            receiveICMPError(IPv6.self, code == ICMPv6TimeExceededCode.reassembly ? .reassemblyTimeExceeded
                             : .hopLimitExceeded, quoted: body)
        case .parameterProblem(let code, let pointer):
            receiveICMPError(IPv6.self, .parameterProblem(code: code, pointer: Int(pointer)), quoted: body)
        case .other(ICMPv6Type.echoRequest, let code, let rest):
            // A code other than 0 is answered as Linux does, the code kept.
            answerEcho(datagram, identifier: UInt16(rest >> 16), sequence: UInt16(truncatingIfNeeded: rest),
                       code: code, data: body)
        case .multicastListenerQuery(let code, let group):
            receiveMulticastListenerQuery(datagram, maximumResponseCode: code, group: group, body: body)
        case .echoReply, .routerSolicitation, .redirect, .multicastListenerReport, .multicastListenerDone,
             .multicastListenerReportV2, .other:
            // Hosts ignore solicitations for routers (RFC 4861 §6.2.6) and
            // may ignore redirects; an MLDv2 listener ignores others' reports.
            counters.drop(.icmpIgnored)
        }
    }
}

extension IPv6 {
    /// Whether no host can have `source`: loopback (RFC 4291 §2.5.3),
    /// multicast (§2.7), IPv4-mapped (§2.5.5.2: for sockets, never the wire;
    /// Linux drops them as well) or one of our own addresses, which comes
    /// back only over a loop or from a spoofer.
    static func isMartianSource(_ source: IPv6Address, in layer: IPLayer<IPv6>) -> Bool {
        source.isLoopback || source.isMulticast || source.isIPv4Mapped || layer.isOurs(source)
    }
}

/// What the extension-header walk carries from the fixed header.
struct IPv6Context {
    var source: IPv6Address
    var destination: IPv6Address
    var kind: DestinationKind
    var hopLimit: UInt8
    var offload = ReceiveOffload.none
}
