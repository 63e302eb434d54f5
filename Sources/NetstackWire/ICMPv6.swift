/// A view of an ICMPv6 message (RFC 4443 §2.1, RFC 4861 §4): type, code,
/// checksum and the rest. How long the type-specific header is depends on the
/// type; `ICMPv6Message(_:)` checks it.
public struct ICMPv6Packet: ~Escapable {
    enum Field {
        static let type = 0
        static let code = 1
        static let checksum = 2
        static let rest = 4
    }

    public static let minimumLength = 8

    public let bytes: RawSpan

    @_lifetime(copy bytes)
    public init(_ bytes: RawSpan) throws(WireError) {
        guard bytes.byteCount >= Self.minimumLength else { throw WireError(.icmpv6, .truncated) }
        self.bytes = bytes
    }

    public var type: UInt8 { bytes.u8(Field.type) }
    public var code: UInt8 { bytes.u8(Field.code) }
    public var checksum: UInt16 { bytes.u16(Field.checksum) }
    public var restOfHeader: UInt32 { bytes.u32(Field.rest) }

    /// Whether the checksum over the pseudo-header and the message verifies
    /// (ICMPv6 always carries one, RFC 4443 §2.3).
    public func isChecksumValid(source: IPv6Address, destination: IPv6Address) -> Bool {
        var checksum = InternetChecksum()
        checksum.addPseudoHeader(source: source, destination: destination, protocol: .icmpv6,
                                 length: bytes.byteCount)
        checksum.add(bytes)
        return checksum.value == 0
    }

    /// The bytes after the type-specific header of `message` (options, echo
    /// data, or the invoking packet of an error).
    @_lifetime(copy self)
    public func body(of message: ICMPv6Message) -> RawSpan {
        bytes.extracting(message.headerLength...)
    }
}

/// ICMPv6 type numbers (RFC 4443, RFC 4861, RFC 2710, RFC 3810).
public enum ICMPv6Type {
    public static let destinationUnreachable: UInt8 = 1
    public static let packetTooBig: UInt8 = 2
    public static let timeExceeded: UInt8 = 3
    public static let parameterProblem: UInt8 = 4
    public static let echoRequest: UInt8 = 128
    public static let echoReply: UInt8 = 129
    public static let multicastListenerQuery: UInt8 = 130
    public static let multicastListenerReport: UInt8 = 131
    public static let multicastListenerDone: UInt8 = 132
    public static let routerSolicitation: UInt8 = 133
    public static let routerAdvertisement: UInt8 = 134
    public static let neighborSolicitation: UInt8 = 135
    public static let neighborAdvertisement: UInt8 = 136
    public static let redirect: UInt8 = 137
    public static let multicastListenerReportV2: UInt8 = 143
}

/// Destination-unreachable codes (RFC 4443 §3.1).
public enum ICMPv6UnreachableCode {
    public static let noRoute: UInt8 = 0
    public static let administrativelyProhibited: UInt8 = 1
    public static let beyondScope: UInt8 = 2
    public static let address: UInt8 = 3
    public static let port: UInt8 = 4
}

/// Parameter-problem codes (RFC 4443 §3.4).
public enum ICMPv6ParameterProblemCode {
    public static let erroneousHeaderField: UInt8 = 0
    public static let unrecognizedNextHeader: UInt8 = 1
    public static let unrecognizedOption: UInt8 = 2
    /// A first fragment without the whole header chain (RFC 7112 §5).
    public static let incompleteHeaderChain: UInt8 = 3
}

/// Time-exceeded codes (RFC 4443 §3.3).
public enum ICMPv6TimeExceededCode {
    public static let hopLimit: UInt8 = 0
    public static let reassembly: UInt8 = 1
}

/// The fixed fields of a router advertisement (RFC 4861 §4.2).
public struct RouterAdvertisement: Hashable, Sendable {
    public var currentHopLimit: UInt8
    public var managedConfiguration: Bool
    public var otherConfiguration: Bool
    /// Seconds; zero means "not a default router".
    public var routerLifetime: UInt16
    /// Milliseconds; zero means unspecified.
    public var reachableTime: UInt32
    /// Milliseconds; zero means unspecified.
    public var retransmitTimer: UInt32

    public init(currentHopLimit: UInt8, managedConfiguration: Bool = false, otherConfiguration: Bool = false,
                routerLifetime: UInt16, reachableTime: UInt32 = 0, retransmitTimer: UInt32 = 0) {
        self.currentHopLimit = currentHopLimit
        self.managedConfiguration = managedConfiguration
        self.otherConfiguration = otherConfiguration
        self.routerLifetime = routerLifetime
        self.reachableTime = reachableTime
        self.retransmitTimer = retransmitTimer
    }
}

/// The header of an ICMPv6 message, by type. The body (NDP options, echo data,
/// or the invoking packet of an error) is not part of it.
public enum ICMPv6Message: Hashable, Sendable {
    case destinationUnreachable(code: UInt8)
    case packetTooBig(mtu: UInt32)
    case timeExceeded(code: UInt8)
    case parameterProblem(code: UInt8, pointer: UInt32)
    case echoRequest(identifier: UInt16, sequence: UInt16)
    case echoReply(identifier: UInt16, sequence: UInt16)
    case routerSolicitation
    case routerAdvertisement(RouterAdvertisement)
    case neighborSolicitation(target: IPv6Address)
    case neighborAdvertisement(router: Bool, solicited: Bool, override: Bool, target: IPv6Address)
    case redirect(target: IPv6Address, destination: IPv6Address)
    /// A multicast listener query (RFC 2710 §3.6, RFC 3810 §5.1): the group
    /// is :: for a general query. An MLDv2 query (28 bytes or more) has its
    /// further fields (S flag, QRV, QQIC, sources) in the body.
    case multicastListenerQuery(maximumResponseCode: UInt16, group: IPv6Address)
    /// MLDv1 report and done (RFC 2710 §3.7, §3.8).
    case multicastListenerReport(group: IPv6Address)
    case multicastListenerDone(group: IPv6Address)
    /// An MLDv2 report (RFC 3810 §5.2): its records are the body.
    case multicastListenerReportV2(recordCount: UInt16)
    /// Any other type, kept as its first eight bytes.
    case other(type: UInt8, code: UInt8, restOfHeader: UInt32)

    /// The message of `packet` (checksum not checked here). NDP messages must
    /// have code 0 and their full fixed length (RFC 4861 §6.1.1, §7.1.1), or
    /// this throws.
    public init(_ packet: borrowing ICMPv6Packet) throws(WireError) {
        let bytes = packet.bytes
        let rest = packet.restOfHeader
        let type = packet.type
        let code = packet.code
        func requireNDP(_ length: Int) throws(WireError) {
            guard code == 0 else { throw WireError(.icmpv6, .badValue) }
            guard bytes.byteCount >= length else { throw WireError(.icmpv6, .truncated) }
        }
        switch type {
        case ICMPv6Type.destinationUnreachable: self = .destinationUnreachable(code: code)
        case ICMPv6Type.packetTooBig: self = .packetTooBig(mtu: rest)
        case ICMPv6Type.timeExceeded: self = .timeExceeded(code: code)
        case ICMPv6Type.parameterProblem: self = .parameterProblem(code: code, pointer: rest)
        case ICMPv6Type.echoRequest where code == 0:
            self = .echoRequest(identifier: UInt16(rest >> 16), sequence: UInt16(truncatingIfNeeded: rest))
        case ICMPv6Type.echoReply where code == 0:
            self = .echoReply(identifier: UInt16(rest >> 16), sequence: UInt16(truncatingIfNeeded: rest))
        case ICMPv6Type.routerSolicitation:
            try requireNDP(8)
            self = .routerSolicitation
        case ICMPv6Type.routerAdvertisement:
            try requireNDP(16)
            let flags = bytes.u8(5)
            self = .routerAdvertisement(RouterAdvertisement(
                currentHopLimit: bytes.u8(4), managedConfiguration: flags & 0x80 != 0,
                otherConfiguration: flags & 0x40 != 0, routerLifetime: bytes.u16(6),
                reachableTime: bytes.u32(8), retransmitTimer: bytes.u32(12)))
        case ICMPv6Type.neighborSolicitation:
            try requireNDP(24)
            self = .neighborSolicitation(target: IPv6Address(bytes, at: 8))
        case ICMPv6Type.neighborAdvertisement:
            try requireNDP(24)
            let flags = bytes.u8(4)
            self = .neighborAdvertisement(router: flags & 0x80 != 0, solicited: flags & 0x40 != 0,
                                          override: flags & 0x20 != 0, target: IPv6Address(bytes, at: 8))
        case ICMPv6Type.redirect:
            try requireNDP(40)
            self = .redirect(target: IPv6Address(bytes, at: 8), destination: IPv6Address(bytes, at: 24))
        case ICMPv6Type.multicastListenerQuery, ICMPv6Type.multicastListenerReport,
             ICMPv6Type.multicastListenerDone:
            guard bytes.byteCount >= 24 else { throw WireError(.icmpv6, .truncated) }
            let group = IPv6Address(bytes, at: 8)
            switch type {
            case ICMPv6Type.multicastListenerQuery:
                self = .multicastListenerQuery(maximumResponseCode: bytes.u16(4), group: group)
            case ICMPv6Type.multicastListenerReport: self = .multicastListenerReport(group: group)
            default: self = .multicastListenerDone(group: group)
            }
        case ICMPv6Type.multicastListenerReportV2:
            self = .multicastListenerReportV2(recordCount: bytes.u16(6))
        default:
            self = .other(type: type, code: code, restOfHeader: rest)
        }
    }

    public var type: UInt8 {
        switch self {
        case .destinationUnreachable: ICMPv6Type.destinationUnreachable
        case .packetTooBig: ICMPv6Type.packetTooBig
        case .timeExceeded: ICMPv6Type.timeExceeded
        case .parameterProblem: ICMPv6Type.parameterProblem
        case .echoRequest: ICMPv6Type.echoRequest
        case .echoReply: ICMPv6Type.echoReply
        case .routerSolicitation: ICMPv6Type.routerSolicitation
        case .routerAdvertisement: ICMPv6Type.routerAdvertisement
        case .neighborSolicitation: ICMPv6Type.neighborSolicitation
        case .neighborAdvertisement: ICMPv6Type.neighborAdvertisement
        case .redirect: ICMPv6Type.redirect
        case .multicastListenerQuery: ICMPv6Type.multicastListenerQuery
        case .multicastListenerReport: ICMPv6Type.multicastListenerReport
        case .multicastListenerDone: ICMPv6Type.multicastListenerDone
        case .multicastListenerReportV2: ICMPv6Type.multicastListenerReportV2
        case .other(let type, _, _): type
        }
    }

    public var code: UInt8 {
        switch self {
        case .destinationUnreachable(let code), .timeExceeded(let code), .parameterProblem(let code, _): code
        case .other(_, let code, _): code
        default: 0
        }
    }

    /// Whether this is an error message (types 0...127, RFC 4443 §2.1).
    public var isError: Bool { type < 128 }

    /// The length of the type-specific header, before the body.
    public var headerLength: Int {
        switch self {
        case .routerAdvertisement: 16
        case .neighborSolicitation, .neighborAdvertisement: 24
        case .multicastListenerQuery, .multicastListenerReport, .multicastListenerDone: 24
        case .redirect: 40
        default: 8
        }
    }

    /// Writes the header at the start of `span`, then the checksum over the
    /// pseudo-header, the header and the `bodyLength` bytes that must already
    /// follow it.
    public func emit(into span: inout MutableRawSpan, bodyLength: Int,
                     source: IPv6Address, destination: IPv6Address) {
        typealias F = ICMPv6Packet.Field
        span.put(type, at: F.type)
        span.put(code, at: F.code)
        span.put(UInt16(0), at: F.checksum)
        switch self {
        case .destinationUnreachable, .timeExceeded, .routerSolicitation:
            span.put(UInt32(0), at: F.rest)
        case .packetTooBig(let mtu):
            span.put(mtu, at: F.rest)
        case .parameterProblem(_, let pointer):
            span.put(pointer, at: F.rest)
        case .echoRequest(let id, let seq), .echoReply(let id, let seq):
            span.put(id, at: 4)
            span.put(seq, at: 6)
        case .routerAdvertisement(let ra):
            span.put(ra.currentHopLimit, at: 4)
            span.put((ra.managedConfiguration ? 0x80 : 0) | (ra.otherConfiguration ? 0x40 : 0) as UInt8, at: 5)
            span.put(ra.routerLifetime, at: 6)
            span.put(ra.reachableTime, at: 8)
            span.put(ra.retransmitTimer, at: 12)
        case .neighborSolicitation(let target):
            span.put(UInt32(0), at: F.rest)
            target.write(to: &span, at: 8)
        case .neighborAdvertisement(let router, let solicited, let override, let target):
            let flags: UInt32 = (router ? 0x8000_0000 : 0) | (solicited ? 0x4000_0000 : 0)
                | (override ? 0x2000_0000 : 0)
            span.put(flags, at: F.rest)
            target.write(to: &span, at: 8)
        case .redirect(let target, let destination):
            span.put(UInt32(0), at: F.rest)
            target.write(to: &span, at: 8)
            destination.write(to: &span, at: 24)
        case .multicastListenerQuery(let code, let group):
            span.put(code, at: 4)
            span.put(UInt16(0), at: 6)
            group.write(to: &span, at: 8)
        case .multicastListenerReport(let group), .multicastListenerDone(let group):
            span.put(UInt32(0), at: F.rest)
            group.write(to: &span, at: 8)
        case .multicastListenerReportV2(let count):
            span.put(UInt16(0), at: 4)
            span.put(count, at: 6)
        case .other(_, _, let rest):
            span.put(rest, at: F.rest)
        }
        let length = headerLength + bodyLength
        var checksum = InternetChecksum()
        checksum.addPseudoHeader(source: source, destination: destination, protocol: .icmpv6, length: length)
        checksum.add(span.bytes.extracting(0..<length))
        span.put(checksum.value, at: F.checksum)
    }

    /// Copies `body` after the header, then writes the header and checksum.
    public func emit(into span: inout MutableRawSpan, body: RawSpan,
                     source: IPv6Address, destination: IPv6Address) {
        span.copy(body, to: headerLength)
        emit(into: &span, bodyLength: body.byteCount, source: source, destination: destination)
    }
}

/// One multicast address record of an MLDv2 report (RFC 3810 §5.2.4).
public struct MulticastAddressRecord: Hashable, Sendable {
    /// Record types (RFC 3810 §5.2.12).
    public enum Kind: UInt8, Sendable {
        case modeIsInclude = 1, modeIsExclude, changeToInclude, changeToExclude, allowNewSources, blockOldSources
    }

    public var kind: Kind
    public var group: IPv6Address
    public var sources: [IPv6Address]

    public init(_ kind: Kind, group: IPv6Address, sources: [IPv6Address] = []) {
        self.kind = kind
        self.group = group
        self.sources = sources
    }

    public var length: Int { 20 + 16 * sources.count }

    /// Writes the record at `offset` of `span` (no auxiliary data).
    public func emit(into span: inout MutableRawSpan, at offset: Int) {
        span.put(kind.rawValue, at: offset)
        span.put(UInt8(0), at: offset + 1)
        span.put(UInt16(sources.count), at: offset + 2)
        group.write(to: &span, at: offset + 4)
        for (index, source) in sources.enumerated() { source.write(to: &span, at: offset + 20 + 16 * index) }
    }

    /// The `count` records of a report body; throws when one is cut short or
    /// of an unknown type.
    public static func parse(_ body: RawSpan, count: Int) throws(WireError) -> [MulticastAddressRecord] {
        var records: [MulticastAddressRecord] = []
        var offset = 0
        for _ in 0..<count {
            guard body.byteCount - offset >= 20 else { throw WireError(.icmpv6, .truncated) }
            guard let kind = Kind(rawValue: body.u8(offset)) else { throw WireError(.icmpv6, .badValue) }
            let sourceCount = Int(body.u16(offset + 2))
            let length = 20 + 16 * sourceCount + 4 * Int(body.u8(offset + 1))
            guard body.byteCount - offset >= length else { throw WireError(.icmpv6, .truncated) }
            let sources = (0..<sourceCount).map { IPv6Address(body, at: offset + 20 + 16 * $0) }
            records.append(MulticastAddressRecord(kind, group: IPv6Address(body, at: offset + 4), sources: sources))
            offset += length
        }
        return records
    }
}
