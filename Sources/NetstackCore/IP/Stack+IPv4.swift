import NetstackWire

extension IPLayer where I == IPv4 {
    /// How a packet to `destination` reaches us, or nil if it is not for us.
    func classify(_ destination: IPv4Address) -> DestinationKind? {
        if isOurs(destination) { return .unicast }
        if IPv4.isBroadcast(destination, in: self) { return .broadcast }
        // All-hosts (RFC 1112): the only group an interface always belongs to.
        if destination == IPv4Address(224, 0, 0, 1) { return .multicast }
        return nil
    }
}

extension IPv4 {
    /// Whether no host can have `source` (RFC 1122 §3.2.1.3): a group or a
    /// broadcast address, loopback (127/8 never leaves a host), this network
    /// (0/8), except 0.0.0.0 to the limited broadcast, which a host that is
    /// still configuring itself sends (DHCP; Linux takes it too), or one of
    /// our own addresses, which arrives only over a loop or from a spoofer.
    static func isMartianSource(_ source: IPv4Address, to destination: IPv4Address, in layer: IPLayer<IPv4>) -> Bool {
        if source.isUnspecified { return !destination.isBroadcast }
        return source.isMulticast || source.isLoopback || source.rawValue >> 24 == 0
            || isBroadcast(source, in: layer) || layer.isOurs(source)
    }
}

extension Stack {
    /// IPv4 input (RFC 791, RFC 1122 §3.2.1): validate, check it is for us,
    /// reassemble, and hand the datagram to its protocol. Options are skipped:
    /// none of them asks anything of a host that does not forward.
    func receiveIPv4(_ bytes: RawSpan, linkGroup: Bool, offload: ReceiveOffload = .none) {
        let packet: IPv4Packet
        do {
            packet = try IPv4Packet(bytes)
        } catch {
            return counters.drop(error)
        }
        guard packet.isChecksumValid else { return counters.drop(WireError(.ipv4, .badChecksum)) }
        counters.count(.ipv4PacketsReceived)
        let source = packet.source
        let destination = packet.destination
        guard !IPv4.isMartianSource(source, to: destination, in: ipv4) else { return counters.drop(.martianSource) }
        guard let kind = ipv4.classify(destination) else { return counters.drop(.notOurAddress) }
        // RFC 1122 §3.3.6: a unicast datagram in a link-layer broadcast is not for us.
        guard !(linkGroup && kind == .unicast) else { return counters.drop(.notOurAddress) }

        if packet.isFragment {
            // A fragment that claims to be a segmentation offload is a lie.
            guard offload.segmentation == .none else { return counters.drop(WireError(.virtio, .badValue)) }
            let fragment = Fragment(headers: packet.header, data: packet.payload, offset: packet.fragmentOffset,
                                    moreFragments: packet.moreFragments, payloadProtocol: packet.protocol)
            let key = FragmentKey<IPv4>(source: source, destination: destination,
                                        identification: UInt32(packet.identification),
                                        protocolNumber: packet.protocol.rawValue)
            var evictions = 0
            let result = ipv4.reassembler.add(fragment, key: key, now: now) { _ in evictions += 1 }
            for _ in 0..<evictions { counters.drop(.reassemblyEvicted) }
            if evictions > 0 { reachedLimit(.reassemblyMemory) }
            switch result {
            case .incomplete:
                return
            case .dropped(let reason):
                return counters.drop(reason)
            case .complete(let headersLength, _, let payloadProtocol):
                counters.count(.datagramsReassembled)
                let whole = ipv4.reassembler.output
                whole.withSpan { bytes in
                    let datagram = IPDatagram<IPv4>(
                        source: source, destination: destination, destinationKind: kind,
                        hopLimit: packet.timeToLive, protocol: payloadProtocol, packet: bytes,
                        payloadOffset: headersLength, protocolFieldOffset: 9)
                    deliver(datagram)
                }
            }
            return
        }
        let datagram = IPDatagram<IPv4>(
            source: source, destination: destination, destinationKind: kind, hopLimit: packet.timeToLive,
            protocol: packet.protocol, packet: packet.bytes, payloadOffset: packet.headerLength, protocolFieldOffset: 9,
            offload: offload)
        deliver(datagram)
    }

    /// Hands a datagram for us to its upper layer, or answers that there is none.
    func deliver<I: IPVersion>(_ datagram: IPDatagram<I>) {
        // A segmentation offload names the protocol (and version) it cut.
        switch datagram.offload.segmentation {
        case .none: break
        case .udp where datagram.protocol == .udp: break
        case I.tcpSegmentation where datagram.protocol == .tcp: break
        default: return counters.drop(WireError(.virtio, .badValue))
        }
        switch datagram.protocol {
        case I.icmpProtocol:
            I.receiveICMP(datagram, in: self)
        case .udp:
            receiveUDP(datagram)
        case .tcp:
            receiveTCP(datagram)
        default:
            counters.drop(.unknownProtocol)
            sendICMPError(I.unknownProtocolError(fieldOffset: datagram.protocolFieldOffset), about: datagram)
        }
    }

    /// ICMPv4 input: echo requests are answered, errors counted, the rest ignored.
    func receiveICMPv4(_ datagram: IPDatagram<IPv4>) {
        let icmp: ICMPv4Packet
        do {
            icmp = try ICMPv4Packet(datagram.payload)
        } catch {
            return counters.drop(error)
        }
        guard icmp.isChecksumValid else { return counters.drop(WireError(.icmpv4, .badChecksum)) }
        switch ICMPv4Message(icmp) {
        case .echoRequest(let identifier, let sequence):
            answerEcho(datagram, identifier: identifier, sequence: sequence, data: icmp.body)
        case .destinationUnreachable(let code, let mtu):
            let error: ICMPError = switch code {
            case ICMPv4UnreachableCode.port: .portUnreachable
            case ICMPv4UnreachableCode.protocol: .protocolUnreachable
            case ICMPv4UnreachableCode.fragmentationNeeded where mtu == 0 && icmp.body.byteCount >= 4:
                // RFC 1191 §5: a router from before path MTU discovery names
                // no MTU; guess from the size of the packet it refused.
                .packetTooBig(mtu: MTUPlateaus.below(Int(icmp.body.u8(2)) << 8 | Int(icmp.body.u8(3))))
            case ICMPv4UnreachableCode.fragmentationNeeded: .packetTooBig(mtu: Int(mtu))
            // Net unreachable, net unknown, net prohibited, net for the TOS
            // (the rest, filtered (13) included, is the host's: Linux's errnos).
            case 0, 6, 9, 11: .networkUnreachable
            default: .hostUnreachable
            }
            receiveICMPError(IPv4.self, error, quoted: icmp.body)
        case .timeExceeded(let code):
            receiveICMPError(IPv4.self, code == ICMPv4TimeExceededCode.reassembly ? .reassemblyTimeExceeded
                             : .hopLimitExceeded, quoted: icmp.body)
        case .parameterProblem(let code, let pointer):
            receiveICMPError(IPv4.self, .parameterProblem(code: code, pointer: Int(pointer)), quoted: icmp.body)
        case .other(ICMPv4Type.echoRequest, let code, let rest):
            // A code other than 0 is answered as Linux does, the code kept.
            answerEcho(datagram, identifier: UInt16(rest >> 16), sequence: UInt16(truncatingIfNeeded: rest),
                       code: code, data: icmp.body)
        case .echoReply, .other:
            counters.drop(.icmpIgnored)
        }
    }

    // MARK: ARP (RFC 826, RFC 1122 §2.3.2, RFC 5227)

    /// ARP input. The sender's mapping refreshes an existing entry, and makes a
    /// new one when the packet is for us (RFC 826 "merge"); requests for our
    /// addresses are answered.
    func receiveARP(_ bytes: RawSpan) {
        let message: ARPMessage
        do {
            message = ARPMessage(try ARPPacket(bytes))
        } catch {
            return counters.drop(error)
        }
        let sender = message.senderProtocolAddress
        let senderMAC = message.senderHardwareAddress
        guard senderMAC.isUnicast, senderMAC != mac, !sender.isMulticast, !sender.isBroadcast else {
            return counters.drop(.arpBadSender)
        }
        guard message.operation == .request || message.operation == .reply else {
            return counters.drop(.arpUnknownOperation)
        }
        if ipv4.isOurs(sender) {
            // Someone else uses our address (RFC 5227 §2.4): say so; keep it.
            notices.append(.addressConflict(address: "\(sender)", mac: senderMAC))
            return counters.drop(.arpBadSender)
        }
        let target = message.targetProtocolAddress
        let forUs = ipv4.isOurs(target)
        if !sender.isUnspecified {
            learnNeighbor(IPv4.self, sender, mac: senderMAC, solicited: forUs && message.operation == .reply,
                          override: true, create: forUs)
        }
        guard forUs else { return counters.drop(.arpNotForUs) }
        guard message.operation == .request else { return }
        let reply = ARPMessage(operation: .reply, senderHardwareAddress: mac, senderProtocolAddress: target,
                               targetHardwareAddress: senderMAC, targetProtocolAddress: sender)
        if sendARP(reply, to: senderMAC) { counters.count(.arpRequestsAnswered) }
    }

    /// Asks who has `target`: broadcast, or unicast to `mac` to confirm a
    /// cached mapping.
    func sendARPRequest(for target: IPv4Address, unicastTo unicast: MACAddress?) {
        guard let source = sourceAddress(IPv4.self, for: target) else { return }
        let request = ARPMessage(operation: .request, senderHardwareAddress: mac, senderProtocolAddress: source,
                                 targetHardwareAddress: .zero, targetProtocolAddress: target)
        if sendARP(request, to: unicast ?? .broadcast) { counters.count(.arpRequestsSent) }
    }

    @discardableResult
    func sendARP(_ message: ARPMessage, to destination: MACAddress) -> Bool {
        let length = EthernetFrame.headerLength + message.length
        guard var frame = output.makeFrame(length: length) else {
            counters.drop(.outputBuffersExhausted)
            return false
        }
        frame.withMutableBytes(0..<length) { span in
            EthernetHeader(destination: destination, source: mac, etherType: .arp).emit(into: &span)
            span.withRegion(EthernetFrame.headerLength..<length) { message.emit(into: &$0) }
        }
        output.enqueue(consume frame)
        return true
    }

    /// Gratuitous ARP announcements of each address on start (RFC 5227 §2.3).
    func pollAnnouncements() {
        guard let deadline = announcementDeadline, deadline <= now, announcementsLeft > 0 else { return }
        for address in ipv4.usableAddresses {
            sendARP(ARPMessage(operation: .request, senderHardwareAddress: mac, senderProtocolAddress: address,
                               targetHardwareAddress: .zero, targetProtocolAddress: address), to: .broadcast)
        }
        announcementsLeft -= 1
        announcementDeadline = announcementsLeft > 0 ? now + .seconds(2) : nil
    }
}
