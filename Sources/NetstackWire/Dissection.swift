/// A frame parsed through every layer this module knows, with every checksum
/// verified: the header values of each layer and where the innermost payload
/// lies in the frame.
///
/// This is the slow, complete path (it copies headers into values and may
/// allocate for IPv6 extension headers); the stack's receive path uses the views
/// directly. Dissections serve logs, tests, the fixture replayer and the
/// benchmark, and `emit()` rebuilds the frame from the values.
public struct Dissection: Hashable, Sendable, CustomStringConvertible {
    /// The network layer.
    public enum Network: Hashable, Sendable {
        case arp(ARPMessage)
        case ipv4(IPv4Header)
        case ipv6(IPv6Header, extensions: [IPv6ExtensionRecord])
        /// An EtherType this module does not parse.
        case other(EtherType)
    }

    /// The transport (or ICMP) layer.
    public enum Transport: Hashable, Sendable {
        case icmpv4(ICMPv4Message)
        case icmpv6(ICMPv6Message)
        case udp(UDPHeader)
        case tcp(TCPHeader)
        /// A fragment of a larger datagram: the transport header, if any, is
        /// only meaningful after reassembly.
        case fragment(IPProtocol)
        /// A protocol this module does not parse.
        case other(IPProtocol)
    }

    public var ethernet: EthernetHeader
    public var network: Network
    public var transport: Transport?
    /// Where the innermost payload (ICMP body, UDP or TCP data, fragment data,
    /// or an unparsed protocol's bytes) lies in the frame.
    public var payload: Range<Int>
    /// Frame bytes after the network packet (Ethernet padding).
    public var trailerLength: Int

    /// Parses `frame` through every layer, verifying the IPv4 header checksum
    /// and the ICMP, UDP and TCP checksums of unfragmented packets.
    public init(_ frame: RawSpan) throws(WireError) {
        let ethernet = try EthernetFrame(frame)
        self.ethernet = EthernetHeader(ethernet)
        let networkStart = ethernet.headerLength
        let l3 = ethernet.payload
        switch ethernet.etherType {
        case .arp:
            let arp = try ARPPacket(l3)
            network = .arp(ARPMessage(arp))
            transport = nil
            payload = (networkStart + ARPPacket.length)..<(networkStart + ARPPacket.length)
            trailerLength = l3.byteCount - ARPPacket.length
        case .ipv4:
            let ip = try IPv4Packet(l3)
            guard ip.isChecksumValid else { throw WireError(.ipv4, .badChecksum) }
            network = .ipv4(IPv4Header(ip))
            trailerLength = l3.byteCount - ip.totalLength
            let start = networkStart + ip.headerLength
            let (t, p) = try Self.transport(ip.protocol, ip.payload, at: start, fragment: ip.isFragment,
                                            source: ip.source, destination: ip.destination)
            transport = t
            payload = p
        case .ipv6:
            let ip = try IPv6Packet(l3)
            var extensions: [IPv6ExtensionRecord] = []
            var next = ip.nextHeader
            var offset = IPv6Packet.headerLength
            var isFragment = false
            while next.isIPv6ExtensionHeader {
                let header = try ip.extensionHeader(next, at: offset)
                if let fragment = header.fragment {
                    isFragment = fragment.offset != 0 || fragment.moreFragments
                }
                if header.kind == .hopByHopOptions || header.kind == .destinationOptions {
                    try header.forEachOption { _ in }
                }
                extensions.append(IPv6ExtensionRecord(header))
                next = header.nextHeader
                offset += header.length
            }
            network = .ipv6(IPv6Header(ip), extensions: extensions)
            trailerLength = l3.byteCount - ip.bytes.byteCount
            let (t, p) = try Self.transport(next, ip.bytes.extracting(offset...), at: networkStart + offset,
                                            fragment: isFragment, source: ip.source, destination: ip.destination)
            transport = t
            payload = p
        default:
            network = .other(ethernet.etherType)
            transport = nil
            payload = networkStart..<frame.byteCount
            trailerLength = 0
        }
    }

    private static func transport(
        _ proto: IPProtocol, _ bytes: RawSpan, at start: Int, fragment: Bool,
        source: IPv4Address, destination: IPv4Address
    ) throws(WireError) -> (Transport?, Range<Int>) {
        let end = start + bytes.byteCount
        if fragment { return (.fragment(proto), start..<end) }
        switch proto {
        case .icmp:
            let icmp = try ICMPv4Packet(bytes)
            guard icmp.isChecksumValid else { throw WireError(.icmpv4, .badChecksum) }
            return (.icmpv4(ICMPv4Message(icmp)), (start + ICMPv4Packet.headerLength)..<end)
        case .udp:
            let udp = try UDPDatagram(bytes)
            guard udp.isChecksumValid(source: source, destination: destination) else {
                throw WireError(.udp, .badChecksum)
            }
            return (.udp(UDPHeader(udp)), (start + UDPDatagram.headerLength)..<(start + udp.length))
        case .tcp:
            let tcp = try TCPSegment(bytes)
            guard tcp.isChecksumValid(source: source, destination: destination) else {
                throw WireError(.tcp, .badChecksum)
            }
            try tcp.forEachOption { _ in }
            return (.tcp(TCPHeader(tcp)), (start + tcp.headerLength)..<end)
        default:
            return (.other(proto), start..<end)
        }
    }

    private static func transport(
        _ proto: IPProtocol, _ bytes: RawSpan, at start: Int, fragment: Bool,
        source: IPv6Address, destination: IPv6Address
    ) throws(WireError) -> (Transport?, Range<Int>) {
        let end = start + bytes.byteCount
        if fragment { return (.fragment(proto), start..<end) }
        switch proto {
        case .icmpv6:
            let icmp = try ICMPv6Packet(bytes)
            guard icmp.isChecksumValid(source: source, destination: destination) else {
                throw WireError(.icmpv6, .badChecksum)
            }
            let message = try ICMPv6Message(icmp)
            if message.type >= ICMPv6Type.routerSolicitation && message.type <= ICMPv6Type.redirect {
                try NDPOption.forEach(in: icmp.body(of: message)) { _ in }
            }
            return (.icmpv6(message), (start + message.headerLength)..<end)
        case .udp:
            let udp = try UDPDatagram(bytes)
            guard udp.isChecksumValid(source: source, destination: destination) else {
                throw WireError(.udp, .badChecksum)
            }
            return (.udp(UDPHeader(udp)), (start + UDPDatagram.headerLength)..<(start + udp.length))
        case .tcp:
            let tcp = try TCPSegment(bytes)
            guard tcp.isChecksumValid(source: source, destination: destination) else {
                throw WireError(.tcp, .badChecksum)
            }
            try tcp.forEachOption { _ in }
            return (.tcp(TCPHeader(tcp)), (start + tcp.headerLength)..<end)
        case .noNextHeader:
            return (nil, start..<end)
        default:
            return (.other(proto), start..<end)
        }
    }

    /// Rebuilds the frame: every header emitted from its values (checksums
    /// computed anew), with `payload` (the innermost payload bytes) in place and
    /// `trailer` bytes of zero padding at the end.
    public func emit(payload data: RawSpan) -> [UInt8] {
        let payloadLength = data.byteCount
        let payloadStart = payload.lowerBound
        var frame = [UInt8](repeating: 0, count: payloadStart + payloadLength + trailerLength)
        frame.withMutableBytes(payloadStart..<(payloadStart + payloadLength)) { $0.copy(data, to: 0) }
        frame.withMutableBytes { ethernet.emit(into: &$0) }
        let networkStart = ethernet.headerLength
        let networkEnd = payloadStart + payloadLength
        switch network {
        case .arp(let arp):
            frame.withMutableBytes(networkStart..<(networkStart + arp.length)) { arp.emit(into: &$0) }
        case .ipv4(var ip):
            // The packet's length is what is emitted: bytes a UDP length left
            // out of the datagram (receivers trim them, as Linux does) are not kept.
            ip.payloadLength = networkEnd - networkStart - ip.headerLength
            let transportStart = networkStart + ip.headerLength
            emitTransport(into: &frame, at: transportStart, end: networkEnd,
                          pseudoHeader: { sum, proto, length in
                              sum.addPseudoHeader(source: ip.source, destination: ip.destination,
                                                  protocol: proto, length: length)
                          }, v6: nil)
            frame.withMutableBytes(networkStart..<networkEnd) { ip.emit(into: &$0) }
        case .ipv6(var ip, let extensions):
            ip.payloadLength = networkEnd - networkStart - ip.headerLength
            var offset = networkStart + ip.headerLength
            for record in extensions {
                frame.withMutableBytes(offset..<(offset + record.bytes.count)) { span in
                    if let fragment = record.fragment {
                        fragment.emit(nextHeader: record.nextHeader, into: &span)
                    } else {
                        record.bytes.withUnsafeBytes { span.copy(RawSpan(_unsafeBytes: $0), to: 0) }
                    }
                }
                offset += record.bytes.count
            }
            emitTransport(into: &frame, at: offset, end: networkEnd,
                          pseudoHeader: { sum, proto, length in
                              sum.addPseudoHeader(source: ip.source, destination: ip.destination,
                                                  protocol: proto, length: length)
                          }, v6: (ip.source, ip.destination))
            frame.withMutableBytes(networkStart..<networkEnd) { ip.emit(into: &$0) }
        case .other:
            break
        }
        return frame
    }

    private func emitTransport(into frame: inout [UInt8], at start: Int, end: Int,
                               pseudoHeader: (inout InternetChecksum, IPProtocol, Int) -> Void,
                               v6: (IPv6Address, IPv6Address)?) {
        guard let transport else { return }
        frame.withMutableBytes(start..<end) { span in
            switch transport {
            case .icmpv4(let message):
                message.emit(into: &span, bodyLength: end - start - message.headerLength)
            case .icmpv6(let message):
                if let (source, destination) = v6 {
                    message.emit(into: &span, bodyLength: end - start - message.headerLength,
                                 source: source, destination: destination)
                }
            case .udp(let udp):
                var sum = InternetChecksum()
                pseudoHeader(&sum, .udp, udp.length)
                udp.emit(into: &span, pseudoHeader: sum)
            case .tcp(let tcp):
                var sum = InternetChecksum()
                pseudoHeader(&sum, .tcp, tcp.length)
                tcp.emit(into: &span, pseudoHeader: sum)
            case .fragment, .other:
                break
            }
        }
    }

    /// A one-line summary in the spirit of tcpdump.
    public var description: String {
        var text = "\(ethernet.source) > \(ethernet.destination)"
        switch network {
        case .arp(let arp):
            let op = arp.operation == .request ? "who-has \(arp.targetProtocolAddress) tell \(arp.senderProtocolAddress)"
                : "reply \(arp.senderProtocolAddress) is-at \(arp.senderHardwareAddress)"
            return text + " ARP " + op
        case .ipv4(let ip):
            text += " IPv4 \(ip.source) > \(ip.destination)"
            if ip.moreFragments || ip.fragmentOffset != 0 {
                text += " frag id \(ip.identification) offset \(ip.fragmentOffset)\(ip.moreFragments ? "+" : "")"
            }
        case .ipv6(let ip, let extensions):
            text += " IPv6 \(ip.source) > \(ip.destination)"
            for record in extensions {
                text += " [\(record.kind)"
                if let fragment = record.fragment {
                    text += " id \(fragment.identification) offset \(fragment.offset)\(fragment.moreFragments ? "+" : "")"
                }
                text += "]"
            }
        case .other(let type):
            return text + " ethertype \(type)"
        }
        let length = payload.count
        switch transport {
        case .icmpv4(let message): text += " ICMP \(message)"
        case .icmpv6(let message): text += " ICMPv6 \(message)"
        case .udp(let udp): text += " UDP \(udp.sourcePort) > \(udp.destinationPort)"
        case .tcp(let tcp):
            text += " TCP \(tcp.sourcePort) > \(tcp.destinationPort) [\(tcp.flags)] seq \(tcp.sequenceNumber)"
            if tcp.flags.contains(.ack) { text += " ack \(tcp.acknowledgmentNumber)" }
            text += " win \(tcp.window)"
        case .fragment(let proto): text += " \(proto)"
        case .other(let proto): text += " \(proto)"
        case nil: break
        }
        return text + " length \(length)"
    }
}

/// One IPv6 extension header as it was parsed: its kind, next header, the
/// fragment fields when it is a fragment header, and its bytes.
public struct IPv6ExtensionRecord: Hashable, Sendable {
    public var kind: IPProtocol
    public var nextHeader: IPProtocol
    public var fragment: IPv6Fragment?
    public var bytes: [UInt8]

    public init(_ header: borrowing IPv6ExtensionHeader) {
        kind = header.kind
        nextHeader = header.nextHeader
        fragment = header.fragment
        bytes = header.bytes.array
    }
}
