import NetstackWire

extension Stack {
    /// Answers an echo request with the same identifier, sequence number and
    /// data (RFC 792, RFC 4443 §4.2), from the address it was sent to; the
    /// code is kept, as Linux keeps it.
    func answerEcho<I: IPVersion>(_ request: IPDatagram<I>, identifier: UInt16, sequence: UInt16, code: UInt8 = 0,
                                  data: RawSpan) {
        let layer = I.layer(of: self)
        let source: I.Address
        if request.isUnicast {
            source = request.destination
        } else {
            // Group echo: Linux ignores IPv4 broadcast pings by default
            // (icmp_echo_ignore_broadcasts) and answers IPv6 multicast ones.
            guard layer.answersGroupEcho, let chosen = sourceAddress(I.self, for: request.source) else {
                return counters.drop(.echoToBroadcastIgnored)
            }
            source = chosen
        }
        guard !request.source.isUnspecified, !request.source.isMulticast,
              !I.isBroadcast(request.source, in: layer) else { return counters.drop(.martianSource) }
        let sent = sendIP(I.self, source: source, destination: request.source, protocol: I.icmpProtocol,
                          payloadLength: 8 + data.byteCount) { span in
            I.emitEchoReply(identifier: identifier, sequence: sequence, code: code, data: data, source: source,
                            destination: request.source, into: &span)
        }
        if sent { counters.count(.echoRequestsAnswered) }
    }

    /// Sends an ICMP error about `datagram` to its source, quoting as much of
    /// it as the version allows, unless a rule forbids it (RFC 1122 §3.2.2,
    /// RFC 4443 §2.4(e)): never about an ICMP error, never to a source that is
    /// not a single host, and not about a packet sent to a group unless
    /// `evenToGroups` (packet too big, unknown option with action 10).
    func sendICMPError<I: IPVersion>(_ error: ICMPError, about datagram: IPDatagram<I>,
                                     evenToGroups: Bool = false) {
        guard datagram.isUnicast || evenToGroups else { return }
        sendICMPError(I.self, error, quoting: datagram.packet, source: datagram.source,
                      to: datagram.isUnicast ? datagram.destination : nil,
                      isAboutICMPError: datagram.protocol == I.icmpProtocol
                          && datagram.payload.byteCount > 0 && I.isICMPError(type: datagram.payload.u8(0)))
    }

    /// Sends an ICMP error quoting `packet` (from its IP header) to `source`,
    /// from `ourAddress` (the address the packet was sent to) or, for packets
    /// sent to a group, from the best address for the source.
    func sendICMPError<I: IPVersion>(_ version: I.Type, _ error: ICMPError, quoting packet: RawSpan,
                                     source: I.Address, to ourAddress: I.Address?, isAboutICMPError: Bool) {
        let layer = I.layer(of: self)
        guard !isAboutICMPError, !source.isUnspecified, !source.isMulticast,
              !I.isBroadcast(source, in: layer) else { return }
        if case .packetTooBig = error {
            // Exempt from the per-destination limit: path MTU discovery.
        } else if layer.icmpErrorsByDestination?.take(source, now: now) == false {
            return counters.drop(.icmpErrorRateLimited)
        }
        guard layer.icmpErrors.take(now: now) else { return counters.drop(.icmpErrorRateLimited) }
        guard let from = ourAddress ?? sourceAddress(I.self, for: source) else { return }
        let quoteLength = min(packet.byteCount, I.icmpErrorMaximumLength)
        let quote = packet.extracting(0..<quoteLength)
        let headerLength = I.icmpErrorHeaderLength
        let sent = sendIP(I.self, source: from, destination: source, protocol: I.icmpProtocol,
                          payloadLength: headerLength + quoteLength) { span in
            span.copy(quote, to: headerLength)
            I.emitICMPError(error, quotedLength: quoteLength, source: from, destination: source, into: &span)
        }
        if sent { counters.count(.icmpErrorsSent) }
    }

    /// An ICMP error arrived about a packet we sent: the transport that sent
    /// it hears of it (RFC 1122 §4.1.3.3 for UDP, RFC 5927 for TCP).
    func receiveICMPError<I: IPVersion>(_ version: I.Type, _ error: ICMPError, quoted: RawSpan) {
        counters.count(.icmpErrorsReceived)
        guard let packet = I.quotedPacket(quoted), I.layer(of: self).state(of: packet.source) != nil,
              quoted.byteCount >= packet.transportOffset + 4 else { return }
        let sourcePort = UInt16(quoted.u8(packet.transportOffset)) << 8 | UInt16(quoted.u8(packet.transportOffset + 1))
        let destinationPort = UInt16(quoted.u8(packet.transportOffset + 2)) << 8
            | UInt16(quoted.u8(packet.transportOffset + 3))
        let local = Endpoint<I>(packet.source, sourcePort)
        let remote = Endpoint<I>(packet.destination, destinationPort)
        switch packet.protocol {
        case .udp:
            let delivered = deliverUDPError(I.self, error.socketError, local: local, remote: remote)
            // A connected socket sent what the message quotes (RFC 5927's
            // check, as far as UDP allows): later datagrams to the peer are
            // fragmented at the path MTU (RFC 8200 §5 for IPv6).
            if delivered, case .packetTooBig(let reported) = error {
                lowerPathMTU(I.self, to: remote.address, reported: reported)
            }
        case .tcp where quoted.byteCount >= packet.transportOffset + 8:
            let sequence = (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(quoted.u8(packet.transportOffset + 4 + $1)) }
            deliverTCPError(I.self, error, local: local, remote: remote, sequence: SequenceNumber(sequence))
        default:
            break
        }
    }

    /// Lowers the path MTU to `destination` after a validated "packet too
    /// big" (RFC 1191 §6.2, RFC 8201 §5): never below the version's floor and
    /// never up. Returns the path MTU now in force.
    @discardableResult
    func lowerPathMTU<I: IPVersion>(_ version: I.Type, to destination: I.Address, reported: Int) -> Int {
        let layer = I.layer(of: self)
        let mtu = max(reported, I.minimumPathMTU)
        if mtu < layer.linkMTU,
           layer.pathMTUs.lower(destination, to: mtu, belowFloor: reported < I.minimumPathMTU, now: now) {
            counters.count(.pathMTULowered)
        }
        return layer.pathMTU(to: destination)
    }

    /// Drops datagrams that waited too long for their fragments, and reports
    /// each whose first fragment had come (RFC 792 time exceeded code 1, RFC
    /// 8200 §4.5).
    func expireFragments<I: IPVersion>(_ version: I.Type) {
        let layer = I.layer(of: self)
        guard let deadline = layer.reassembler.nextDeadline(), deadline <= now else { return }
        var reports: [(FragmentKey<I>, [UInt8])] = []
        let expired = layer.reassembler.expire(now: now) { key, first in
            reports.append((key, first.array))
        }
        for _ in 0..<expired { counters.drop(.reassemblyTimeout) }
        for (key, bytes) in reports where layer.isOurs(key.destination) {
            bytes.withSpan { packet in
                sendICMPError(I.self, .reassemblyTimeExceeded, quoting: packet, source: key.source, to: key.destination,
                              isAboutICMPError: false)
            }
        }
    }
}

extension ICMPError {
    /// What a socket reports for this error (Linux's mapping).
    var socketError: SocketError {
        switch self {
        case .portUnreachable, .protocolUnreachable: .connectionRefused
        case .hostUnreachable, .hopLimitExceeded, .reassemblyTimeExceeded: .hostUnreachable
        case .networkUnreachable: .networkUnreachable
        case .administrativelyProhibited: .permissionDenied
        case .packetTooBig: .messageTooLong
        case .parameterProblem: .protocolError
        }
    }
}
