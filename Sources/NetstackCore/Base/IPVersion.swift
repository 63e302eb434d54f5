import NetstackWire

/// What every IP address type offers the version-generic code.
public protocol IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// 32 or 128.
    static var bitWidth: Int { get }
    /// 0.0.0.0 or ::.
    static var unspecified: Self { get }
    var isUnspecified: Bool { get }
    var isMulticast: Bool { get }
    var isLoopback: Bool { get }
    /// 169.254.0.0/16 or fe80::/10: valid on the link only, always on-link.
    var isLinkLocal: Bool { get }
    /// A multicast group that never leaves the link: 224.0.0.0/24 (RFC 5771)
    /// or scope 2 (ff02::/16).
    var isLinkScopeMulticast: Bool { get }
    /// The address with all bits after the first `prefixLength` cleared.
    func masked(to prefixLength: Int) -> Self
    /// The address as two 64-bit words (IPv4 in the low one), for keyed hashes.
    var words: (high: UInt64, low: UInt64) { get }
    /// Reads the address (network order) at `offset`.
    init(_ bytes: RawSpan, at offset: Int)
    /// Writes the address (network order) at `offset`.
    func write(to span: inout MutableRawSpan, at offset: Int)
}

extension IPAddress {
    /// 4 or 16.
    public static var byteCount: Int { bitWidth / 8 }
}

extension IPv4Address: IPAddress {
    public static var bitWidth: Int { 32 }
    public static var unspecified: IPv4Address { .any }
    public var isLinkScopeMulticast: Bool { rawValue >> 8 == 0xe0_0000 }
    public var words: (high: UInt64, low: UInt64) { (0, UInt64(rawValue)) }

    public func masked(to prefixLength: Int) -> IPv4Address {
        guard prefixLength < 32 else { return self }
        guard prefixLength > 0 else { return .any }
        return IPv4Address(rawValue: rawValue & ~(UInt32.max >> UInt32(prefixLength)))
    }
}

extension IPv6Address: IPAddress {
    public static var bitWidth: Int { 128 }
    public var isLinkScopeMulticast: Bool { isMulticast && multicastScope == 2 }
    public var words: (high: UInt64, low: UInt64) { (high, low) }

    public func masked(to prefixLength: Int) -> IPv6Address {
        func mask(_ bits: Int) -> UInt64 {
            bits >= 64 ? .max : bits <= 0 ? 0 : ~(UInt64.max >> UInt64(bits))
        }
        return IPv6Address(high: high & mask(prefixLength), low: low & mask(prefixLength - 64))
    }
}

/// One IP version: the types, numbers and encodings in which IPv4 and IPv6
/// differ. Everything above the neighbour layer (IP input and output,
/// reassembly, ICMP echo and errors, UDP, TCP, sockets) is written once, generic
/// over `I: IPVersion`, and specialised for `IPv4` and `IPv6` by the compiler:
/// there is no runtime branching on the version in the generic code.
public protocol IPVersion: Sendable {
    associatedtype Address: IPAddress

    /// "IPv4" or "IPv6".
    static var name: String { get }
    static var etherType: EtherType { get }
    /// The protocol number of this version's ICMP.
    static var icmpProtocol: IPProtocol { get }
    /// The smallest MTU a link must offer (RFC 791: 68, RFC 8200: 1280).
    static var minimumMTU: Int { get }
    /// The smallest path MTU an ICMP message may make us use: IPv6's minimum
    /// link MTU (RFC 8201 §4); for IPv4 Linux's min_pmtu, 552, rather than
    /// RFC 1191's 68, so that a forged message cannot shrink segments to a
    /// few bytes (RFC 5927 §7.2).
    static var minimumPathMTU: Int { get }
    /// The length of the header this stack emits (no options, no extension
    /// headers).
    static var headerLength: Int { get }
    /// Extra bytes each fragment carries (the IPv6 fragment header; IPv4
    /// fragments repeat the header itself).
    static var fragmentHeaderLength: Int { get }
    /// How long fragments of an incomplete datagram are kept (RFC 8200 §4.5
    /// says 60 s for IPv6; Linux uses 30 s for IPv4).
    static var reassemblyTimeout: Duration { get }

    /// The checksum of the pseudo-header for a transport segment.
    static func pseudoHeader(source: Address, destination: Address, protocol: IPProtocol,
                             length: Int) -> InternetChecksum
    /// The Ethernet address a multicast group maps to.
    static func multicastMAC(_ group: Address) -> MACAddress

    /// This version's state inside `stack`.
    static func layer(of stack: Stack) -> IPLayer<Self>
    /// Counted for every packet received and sent.
    static var packetsReceived: StackEvent { get }
    static var packetsSent: StackEvent { get }

    /// Whether `address` is a broadcast address of the link (IPv4 only).
    static func isBroadcast(_ address: Address, in layer: IPLayer<Self>) -> Bool
    /// Whether an ICMP message of this type is an error (which no error may answer).
    static func isICMPError(type: UInt8) -> Bool
    /// Whether a UDP checksum of zero is invalid (IPv6, RFC 8200 §8.1) rather
    /// than "none computed" (IPv4, RFC 768).
    static var udpChecksumRequired: Bool { get }
    /// The virtio segmentation type of a large TCP segment of this version.
    static var tcpSegmentation: VirtioNetHeader.Segmentation { get }
    /// The addresses, upper-layer protocol and upper-layer bytes of the packet
    /// an ICMP error quotes (which may be cut short), if they can be read.
    static func quotedPacket(_ bytes: RawSpan) -> QuotedPacket<Self>?

    /// Asks the link who has `target`: to everyone, or (`mac` given) to the
    /// neighbour's cached address, to confirm it (ARP request or NDP neighbour
    /// solicitation).
    static func solicit(_ target: Address, unicastTo mac: MACAddress?, in stack: Stack)
    /// Handles an ICMP message addressed to the stack.
    static func receiveICMP(_ datagram: IPDatagram<Self>, in stack: Stack)

    /// Writes an unfragmented packet header at the start of `span`, with
    /// `ecn` in its ECN field (RFC 3168 §5). `mayFragment`: IPv4 leaves DF
    /// clear (a path held at the floor MTU); IPv6 routers never fragment.
    static func emitHeader(source: Address, destination: Address, protocol: IPProtocol, hopLimit: UInt8,
                           payloadLength: Int, identification: UInt32, ecn: UInt8, mayFragment: Bool,
                           into span: inout MutableRawSpan)
    /// Writes the header(s) of one fragment: everything before the fragment's
    /// data, `headerLength + fragmentHeaderLength` bytes.
    static func emitFragmentHeader(source: Address, destination: Address, protocol: IPProtocol, hopLimit: UInt8,
                                   fragmentLength: Int, offset: Int, moreFragments: Bool, identification: UInt32,
                                   into span: inout MutableRawSpan)

    /// Writes an ICMP error message (header and checksum) at the start of
    /// `span`; the quoted packet must already follow the ICMP header.
    static func emitICMPError(_ error: ICMPError, quotedLength: Int, source: Address, destination: Address,
                              into span: inout MutableRawSpan)
    /// The error for a datagram whose protocol nobody handles; the protocol
    /// is named by the byte at `fieldOffset` of the packet (RFC 1122
    /// §3.2.2.1: protocol unreachable; RFC 8200 §4: parameter problem,
    /// unrecognized next header).
    static func unknownProtocolError(fieldOffset: Int) -> ICMPError
    /// The length of the ICMP error header before the quoted packet (8 for both).
    static var icmpErrorHeaderLength: Int { get }
    /// How many bytes of the offending packet an error quotes at most (RFC
    /// 1812 §4.3.2.3 for IPv4: the error packet fits in 576 bytes; RFC 4443
    /// §2.4(c) for IPv6: it fits in the minimum MTU).
    static var icmpErrorMaximumLength: Int { get }
    /// Writes an echo reply (header, copied data, checksum) at the start of `span`.
    static func emitEchoReply(identifier: UInt16, sequence: UInt16, code: UInt8, data: RawSpan,
                              source: Address, destination: Address, into span: inout MutableRawSpan)
}

/// The ICMP errors the stack sends, in version-neutral terms; each version
/// maps them to its own type and code.
public enum ICMPError: Hashable, Sendable {
    /// No socket on the destination port (v4 type 3 code 3, v6 type 1 code 4).
    case portUnreachable
    /// No handler for the protocol (v4 type 3 code 2; IPv6 uses a parameter
    /// problem pointing at the next-header field instead).
    case protocolUnreachable
    /// The datagram was not completed in time (v4 type 11 code 1, v6 type 3 code 1).
    case reassemblyTimeExceeded
    /// The hop limit ran out on the way (v4 type 11 code 0, v6 type 3 code 0).
    case hopLimitExceeded
    /// The destination host cannot be reached (v4 type 3 codes 1, 5, 7, 8,
    /// 10, 12–15; v6 type 1 codes 2 and 3).
    case hostUnreachable
    /// No route to the destination network (v4 type 3 codes 0, 6, 9, 11;
    /// v6 type 1 code 0).
    case networkUnreachable
    /// An IPv6 filter refused the packet (type 1 codes 1, 5 and 6; Linux
    /// reports EACCES). IPv4's "communication prohibited" (code 13) is
    /// "host unreachable", as Linux reports it.
    case administrativelyProhibited
    /// A field of the header is wrong; `pointer` is its offset in the quoted packet.
    case parameterProblem(code: UInt8, pointer: Int)
    /// The packet is bigger than the next link's MTU (v4 type 3 code 4, v6 type 2).
    case packetTooBig(mtu: Int)
}

/// The IPv4 marker type: ARP for neighbours, a header checksum, 32-bit addresses.
public enum IPv4: IPVersion {
    public typealias Address = IPv4Address

    public static var name: String { "IPv4" }
    public static var etherType: EtherType { .ipv4 }
    public static var icmpProtocol: IPProtocol { .icmp }
    public static var minimumMTU: Int { 68 }
    public static var minimumPathMTU: Int { 552 }
    public static var headerLength: Int { IPv4Packet.minimumHeaderLength }
    public static var fragmentHeaderLength: Int { 0 }
    public static var reassemblyTimeout: Duration { .seconds(30) }
    public static var icmpErrorHeaderLength: Int { ICMPv4Packet.headerLength }
    public static var icmpErrorMaximumLength: Int { 576 - IPv4Packet.minimumHeaderLength - ICMPv4Packet.headerLength }

    public static func pseudoHeader(source: IPv4Address, destination: IPv4Address, protocol: IPProtocol,
                                    length: Int) -> InternetChecksum {
        var sum = InternetChecksum()
        sum.addPseudoHeader(source: source, destination: destination, protocol: `protocol`, length: length)
        return sum
    }

    public static func multicastMAC(_ group: IPv4Address) -> MACAddress {
        group.isBroadcast ? .broadcast : MACAddress(ipv4Multicast: group)
    }

    public static func layer(of stack: Stack) -> IPLayer<IPv4> { stack.ipv4 }
    public static var packetsReceived: StackEvent { .ipv4PacketsReceived }
    public static var packetsSent: StackEvent { .ipv4PacketsSent }

    public static func isBroadcast(_ address: IPv4Address, in layer: IPLayer<IPv4>) -> Bool {
        address.isBroadcast || layer.addresses.contains { $0.interface.subnet.broadcast == address }
    }

    public static var udpChecksumRequired: Bool { false }
    public static var tcpSegmentation: VirtioNetHeader.Segmentation { .tcpv4 }

    public static func quotedPacket(_ bytes: RawSpan) -> QuotedPacket<IPv4>? {
        guard bytes.byteCount >= IPv4Packet.minimumHeaderLength, bytes.u8(0) >> 4 == 4 else { return nil }
        let headerLength = Int(bytes.u8(0) & 0x0f) * 4
        guard headerLength >= IPv4Packet.minimumHeaderLength, headerLength <= bytes.byteCount else { return nil }
        // Only a first fragment quotes the transport header.
        guard bytes.u8(6) & 0x1f == 0, bytes.u8(7) == 0 else { return nil }
        return QuotedPacket(source: IPv4Address(bytes, at: 12), destination: IPv4Address(bytes, at: 16),
                            protocol: IPProtocol(rawValue: bytes.u8(9)), transportOffset: headerLength)
    }

    public static func isICMPError(type: UInt8) -> Bool {
        // Destination unreachable, source quench, redirect, time exceeded,
        // parameter problem (RFC 1122 §3.2.2).
        [3, 4, 5, 11, 12].contains(type)
    }

    public static func solicit(_ target: IPv4Address, unicastTo mac: MACAddress?, in stack: Stack) {
        stack.sendARPRequest(for: target, unicastTo: mac)
    }

    public static func receiveICMP(_ datagram: IPDatagram<IPv4>, in stack: Stack) {
        stack.receiveICMPv4(datagram)
    }

    public static func emitHeader(source: IPv4Address, destination: IPv4Address, protocol: IPProtocol,
                                  hopLimit: UInt8, payloadLength: Int, identification: UInt32, ecn: UInt8,
                                  mayFragment: Bool, into span: inout MutableRawSpan) {
        // DF is set on unfragmented packets as Linux does (path MTU discovery,
        // RFC 1191); the stack only sends what fits its link.
        var header = IPv4Header(protocol: `protocol`, source: source, destination: destination,
                                payloadLength: payloadLength, timeToLive: hopLimit,
                                identification: UInt16(truncatingIfNeeded: identification),
                                dontFragment: !mayFragment)
        header.ecn = ecn
        header.emit(into: &span)
    }

    public static func emitFragmentHeader(source: IPv4Address, destination: IPv4Address, protocol: IPProtocol,
                                          hopLimit: UInt8, fragmentLength: Int, offset: Int, moreFragments: Bool,
                                          identification: UInt32, into span: inout MutableRawSpan) {
        var header = IPv4Header(protocol: `protocol`, source: source, destination: destination,
                                payloadLength: fragmentLength, timeToLive: hopLimit,
                                identification: UInt16(truncatingIfNeeded: identification))
        header.fragmentOffset = offset
        header.moreFragments = moreFragments
        header.emit(into: &span)
    }

    public static func unknownProtocolError(fieldOffset: Int) -> ICMPError { .protocolUnreachable }

    public static func emitICMPError(_ error: ICMPError, quotedLength: Int, source: IPv4Address,
                                     destination: IPv4Address, into span: inout MutableRawSpan) {
        let message: ICMPv4Message
        switch error {
        case .portUnreachable:
            message = .destinationUnreachable(code: ICMPv4UnreachableCode.port, nextHopMTU: 0)
        case .protocolUnreachable:
            message = .destinationUnreachable(code: ICMPv4UnreachableCode.protocol, nextHopMTU: 0)
        case .reassemblyTimeExceeded:
            message = .timeExceeded(code: ICMPv4TimeExceededCode.reassembly)
        case .hopLimitExceeded:
            message = .timeExceeded(code: ICMPv4TimeExceededCode.timeToLive)
        case .hostUnreachable:
            message = .destinationUnreachable(code: ICMPv4UnreachableCode.host, nextHopMTU: 0)
        case .networkUnreachable:
            message = .destinationUnreachable(code: 0, nextHopMTU: 0)
        case .administrativelyProhibited:
            message = .destinationUnreachable(code: 13, nextHopMTU: 0)
        case .parameterProblem(let code, let pointer):
            message = .parameterProblem(code: code, pointer: UInt8(clamping: pointer))
        case .packetTooBig(let mtu):
            message = .destinationUnreachable(code: ICMPv4UnreachableCode.fragmentationNeeded,
                                              nextHopMTU: UInt16(clamping: mtu))
        }
        message.emit(into: &span, bodyLength: quotedLength)
    }

    public static func emitEchoReply(identifier: UInt16, sequence: UInt16, code: UInt8, data: RawSpan,
                                     source: IPv4Address, destination: IPv4Address, into span: inout MutableRawSpan) {
        let message: ICMPv4Message = code == 0 ? .echoReply(identifier: identifier, sequence: sequence)
            : .other(type: ICMPv4Type.echoReply, code: code, restOfHeader: UInt32(identifier) << 16 | UInt32(sequence))
        message.emit(into: &span, body: data)
    }
}

/// The IPv6 marker type: NDP for neighbours, extension headers, 128-bit addresses.
public enum IPv6: IPVersion {
    public typealias Address = IPv6Address

    public static var name: String { "IPv6" }
    public static var etherType: EtherType { .ipv6 }
    public static var icmpProtocol: IPProtocol { .icmpv6 }
    public static var minimumMTU: Int { 1280 }
    public static var minimumPathMTU: Int { 1280 }
    public static var headerLength: Int { IPv6Packet.headerLength }
    public static var fragmentHeaderLength: Int { IPv6Fragment.headerLength }
    public static var reassemblyTimeout: Duration { .seconds(60) }
    public static var icmpErrorHeaderLength: Int { 8 }
    public static var icmpErrorMaximumLength: Int { 1280 - IPv6Packet.headerLength - 8 }

    public static func pseudoHeader(source: IPv6Address, destination: IPv6Address, protocol: IPProtocol,
                                    length: Int) -> InternetChecksum {
        var sum = InternetChecksum()
        sum.addPseudoHeader(source: source, destination: destination, protocol: `protocol`, length: length)
        return sum
    }

    public static func multicastMAC(_ group: IPv6Address) -> MACAddress {
        MACAddress(ipv6Multicast: group)
    }

    public static func layer(of stack: Stack) -> IPLayer<IPv6> { stack.ipv6 }
    public static var packetsReceived: StackEvent { .ipv6PacketsReceived }
    public static var packetsSent: StackEvent { .ipv6PacketsSent }

    public static func isBroadcast(_ address: IPv6Address, in layer: IPLayer<IPv6>) -> Bool { false }

    public static func isICMPError(type: UInt8) -> Bool { type < 128 }

    public static var udpChecksumRequired: Bool { true }
    public static var tcpSegmentation: VirtioNetHeader.Segmentation { .tcpv6 }

    public static func quotedPacket(_ bytes: RawSpan) -> QuotedPacket<IPv6>? {
        guard bytes.byteCount >= IPv6Packet.headerLength, bytes.u8(0) >> 4 == 6 else { return nil }
        var next = IPProtocol(rawValue: bytes.u8(6))
        var offset = IPv6Packet.headerLength
        // Walk what extension headers the quote holds; a non-first fragment
        // has no transport header to report.
        while next.isIPv6ExtensionHeader {
            guard let header = try? IPv6ExtensionHeader(next, bytes.extracting(offset...)) else { return nil }
            if let fragment = header.fragment, fragment.offset != 0 { return nil }
            next = header.nextHeader
            offset += header.length
        }
        return QuotedPacket(source: IPv6Address(bytes, at: 8), destination: IPv6Address(bytes, at: 24),
                            protocol: next, transportOffset: offset)
    }

    public static func solicit(_ target: IPv6Address, unicastTo mac: MACAddress?, in stack: Stack) {
        stack.sendNeighborSolicitation(for: target, unicastTo: mac)
    }

    public static func receiveICMP(_ datagram: IPDatagram<IPv6>, in stack: Stack) {
        stack.receiveICMPv6(datagram)
    }

    public static func emitHeader(source: IPv6Address, destination: IPv6Address, protocol: IPProtocol,
                                  hopLimit: UInt8, payloadLength: Int, identification: UInt32, ecn: UInt8,
                                  mayFragment: Bool, into span: inout MutableRawSpan) {
        IPv6Header(nextHeader: `protocol`, source: source, destination: destination, payloadLength: payloadLength,
                   hopLimit: hopLimit, trafficClass: ecn).emit(into: &span)
    }

    public static func emitFragmentHeader(source: IPv6Address, destination: IPv6Address, protocol: IPProtocol,
                                          hopLimit: UInt8, fragmentLength: Int, offset: Int, moreFragments: Bool,
                                          identification: UInt32, into span: inout MutableRawSpan) {
        IPv6Header(nextHeader: .fragment, source: source, destination: destination,
                   payloadLength: IPv6Fragment.headerLength + fragmentLength, hopLimit: hopLimit).emit(into: &span)
        let fragment = IPv6Fragment(offset: offset, moreFragments: moreFragments, identification: identification)
        span.withRegion(from: IPv6Packet.headerLength) { fragment.emit(nextHeader: `protocol`, into: &$0) }
    }

    public static func unknownProtocolError(fieldOffset: Int) -> ICMPError {
        .parameterProblem(code: ICMPv6ParameterProblemCode.unrecognizedNextHeader, pointer: fieldOffset)
    }

    public static func emitICMPError(_ error: ICMPError, quotedLength: Int, source: IPv6Address,
                                     destination: IPv6Address, into span: inout MutableRawSpan) {
        let message: ICMPv6Message
        switch error {
        case .portUnreachable:
            message = .destinationUnreachable(code: ICMPv6UnreachableCode.port)
        case .protocolUnreachable:
            // IPv6 has no such code; the next-header field of the fixed header
            // is the nearest thing to point at.
            message = .parameterProblem(code: ICMPv6ParameterProblemCode.unrecognizedNextHeader, pointer: 6)
        case .reassemblyTimeExceeded:
            message = .timeExceeded(code: ICMPv6TimeExceededCode.reassembly)
        case .hopLimitExceeded:
            message = .timeExceeded(code: ICMPv6TimeExceededCode.hopLimit)
        case .hostUnreachable:
            message = .destinationUnreachable(code: ICMPv6UnreachableCode.address)
        case .networkUnreachable:
            message = .destinationUnreachable(code: 0)
        case .administrativelyProhibited:
            message = .destinationUnreachable(code: 1)
        case .parameterProblem(let code, let pointer):
            message = .parameterProblem(code: code, pointer: UInt32(pointer))
        case .packetTooBig(let mtu):
            message = .packetTooBig(mtu: UInt32(mtu))
        }
        message.emit(into: &span, bodyLength: quotedLength, source: source, destination: destination)
    }

    public static func emitEchoReply(identifier: UInt16, sequence: UInt16, code: UInt8, data: RawSpan,
                                     source: IPv6Address, destination: IPv6Address, into span: inout MutableRawSpan) {
        let message: ICMPv6Message = code == 0 ? .echoReply(identifier: identifier, sequence: sequence)
            : .other(type: ICMPv6Type.echoReply, code: code, restOfHeader: UInt32(identifier) << 16 | UInt32(sequence))
        message.emit(into: &span, body: data, source: source, destination: destination)
    }
}

/// The packet an ICMP error quotes, as far as the quote lets it be read.
public struct QuotedPacket<I: IPVersion> {
    /// Our address (we sent the packet).
    public var source: I.Address
    /// The peer's address.
    public var destination: I.Address
    public var `protocol`: IPProtocol
    /// Where the transport header starts in the quote.
    public var transportOffset: Int
}
