/// A view of an IPv6 packet (RFC 8200 §3): the fixed 40-byte header and what
/// follows it. Construction checks the version and that the payload length fits
/// in the bytes given; bytes past it (Ethernet padding) are not part of the view.
/// Extension headers are walked with `extensionHeader(_:at:)`.
public struct IPv6Packet: ~Escapable {
    enum Field {
        static let versionClassLabel = 0
        static let payloadLength = 4
        static let nextHeader = 6
        static let hopLimit = 7
        static let source = 8
        static let destination = 24
    }

    public static let headerLength = 40

    /// The packet: fixed header and payload, exactly `40 + payloadLength` bytes.
    public let bytes: RawSpan

    @_lifetime(copy bytes)
    public init(_ bytes: RawSpan) throws(WireError) {
        guard bytes.byteCount >= Self.headerLength else { throw WireError(.ipv6, .truncated) }
        guard bytes.u8(Field.versionClassLabel) >> 4 == 6 else { throw WireError(.ipv6, .badVersion) }
        let total = Self.headerLength + Int(bytes.u16(Field.payloadLength))
        guard total <= bytes.byteCount else { throw WireError(.ipv6, .truncated) }
        self.bytes = bytes.extracting(0..<total)
    }

    public var trafficClass: UInt8 { UInt8(truncatingIfNeeded: bytes.u32(Field.versionClassLabel) >> 20) }
    public var flowLabel: UInt32 { bytes.u32(Field.versionClassLabel) & 0xf_ffff }
    public var payloadLength: Int { Int(bytes.u16(Field.payloadLength)) }
    public var nextHeader: IPProtocol { IPProtocol(rawValue: bytes.u8(Field.nextHeader)) }
    public var hopLimit: UInt8 { bytes.u8(Field.hopLimit) }
    public var source: IPv6Address { IPv6Address(bytes, at: Field.source) }
    public var destination: IPv6Address { IPv6Address(bytes, at: Field.destination) }

    /// Everything after the fixed header (extension headers included).
    public var payload: RawSpan {
        @_lifetime(copy self) get { bytes.extracting(Self.headerLength...) }
    }

    /// The extension header of kind `kind` that starts at byte `offset` of the
    /// packet. Use it in a loop from `(nextHeader, 40)`, advancing by the header's
    /// `length` while `kind.isIPv6ExtensionHeader`.
    @_lifetime(copy self)
    public func extensionHeader(_ kind: IPProtocol, at offset: Int) throws(WireError) -> IPv6ExtensionHeader {
        guard offset >= Self.headerLength, offset <= bytes.byteCount else {
            throw WireError(.ipv6Extension, .truncated)
        }
        return try IPv6ExtensionHeader(kind, bytes.extracting(offset...))
    }
}

extension IPProtocol {
    /// Whether this number names an IPv6 extension header this module can walk
    /// (hop-by-hop, routing, fragment, destination options).
    public var isIPv6ExtensionHeader: Bool {
        self == .hopByHopOptions || self == .routing || self == .fragment || self == .destinationOptions
    }
}

/// A view of one IPv6 extension header (RFC 8200 §4): hop-by-hop options,
/// routing, fragment or destination options.
public struct IPv6ExtensionHeader: ~Escapable {
    /// Which extension header this is (the next-header value that named it).
    public let kind: IPProtocol
    /// The header's bytes, exactly `length` of them.
    public let bytes: RawSpan

    @_lifetime(copy bytes)
    public init(_ kind: IPProtocol, _ bytes: RawSpan) throws(WireError) {
        guard kind.isIPv6ExtensionHeader else { throw WireError(.ipv6Extension, .badValue) }
        guard bytes.byteCount >= 8 else { throw WireError(.ipv6Extension, .truncated) }
        // The fragment header has a fixed size; its second byte is reserved.
        let length = kind == .fragment ? 8 : (Int(bytes.u8(1)) + 1) * 8
        guard length <= bytes.byteCount else { throw WireError(.ipv6Extension, .truncated) }
        self.kind = kind
        self.bytes = bytes.extracting(0..<length)
    }

    public var nextHeader: IPProtocol { IPProtocol(rawValue: bytes.u8(0)) }
    /// The header's length in bytes (a multiple of 8).
    public var length: Int { bytes.byteCount }

    /// The bytes after the next-header and length fields: the options area of a
    /// hop-by-hop or destination options header.
    public var data: RawSpan {
        @_lifetime(copy self) get { bytes.extracting(2...) }
    }

    /// The fields of a fragment header (RFC 8200 §4.5), for `kind == .fragment`.
    public var fragment: IPv6Fragment? {
        guard kind == .fragment else { return nil }
        let offsetAndFlags = bytes.u16(2)
        return IPv6Fragment(offset: Int(offsetAndFlags >> 3) * 8, moreFragments: offsetAndFlags & 1 == 1,
                            identification: bytes.u32(4))
    }

    /// The routing type and segments left (RFC 8200 §4.4), for `kind == .routing`.
    public var routing: (type: UInt8, segmentsLeft: UInt8)? {
        guard kind == .routing else { return nil }
        return (bytes.u8(2), bytes.u8(3))
    }

    /// Calls `body` with each option of a hop-by-hop or destination options
    /// header (RFC 8200 §4.2), padding included. Throws `.badOption` if an
    /// option runs past the end of the header.
    public func forEachOption(_ body: (IPv6Option) throws(WireError) -> Void) throws(WireError) {
        precondition(kind == .hopByHopOptions || kind == .destinationOptions, "not an options header")
        var offset = 2
        while offset < bytes.byteCount {
            let type = bytes.u8(offset)
            if type == IPv6Option.pad1 {
                try body(IPv6Option(type: type, offset: offset, dataLength: 0))
                offset += 1
                continue
            }
            guard offset + 2 <= bytes.byteCount else { throw WireError(.ipv6Extension, .badOption) }
            let dataLength = Int(bytes.u8(offset + 1))
            guard offset + 2 + dataLength <= bytes.byteCount else { throw WireError(.ipv6Extension, .badOption) }
            try body(IPv6Option(type: type, offset: offset, dataLength: dataLength))
            offset += 2 + dataLength
        }
    }
}

/// The fields of an IPv6 fragment header.
public struct IPv6Fragment: Hashable, Sendable {
    /// In bytes; a multiple of 8.
    public var offset: Int
    public var moreFragments: Bool
    public var identification: UInt32

    public init(offset: Int, moreFragments: Bool, identification: UInt32) {
        self.offset = offset
        self.moreFragments = moreFragments
        self.identification = identification
    }

    public static let headerLength = 8

    /// Writes a fragment header at the start of `span`.
    public func emit(nextHeader: IPProtocol, into span: inout MutableRawSpan) {
        precondition(offset % 8 == 0 && offset <= 0x1fff * 8, "bad IPv6 fragment offset")
        span.put(nextHeader.rawValue, at: 0)
        span.put(UInt8(0), at: 1)
        span.put(UInt16(offset / 8) << 3 | (moreFragments ? 1 : 0), at: 2)
        span.put(identification, at: 4)
    }
}

/// One option of a hop-by-hop or destination options header.
public struct IPv6Option: Hashable, Sendable {
    public static let pad1: UInt8 = 0
    public static let padN: UInt8 = 1
    public static let routerAlert: UInt8 = 5

    public var type: UInt8
    /// Where the option starts, from the start of its extension header.
    public var offset: Int
    public var dataLength: Int

    public init(type: UInt8, offset: Int, dataLength: Int) {
        self.type = type
        self.offset = offset
        self.dataLength = dataLength
    }

    /// What a node that does not recognise the option must do (RFC 8200 §4.2).
    public enum UnrecognizedAction: UInt8, Sendable {
        case skip = 0
        case discard = 1
        case discardAndReport = 2
        case discardAndReportIfUnicast = 3
    }

    public var unrecognizedAction: UnrecognizedAction {
        UnrecognizedAction(rawValue: type >> 6)!
    }

    public var isPadding: Bool { type == Self.pad1 || type == Self.padN }
}

/// The fields of an IPv6 fixed header, to emit or after parsing.
public struct IPv6Header: Hashable, Sendable {
    public var trafficClass: UInt8 = 0
    public var flowLabel: UInt32 = 0
    public var payloadLength: Int
    public var nextHeader: IPProtocol
    public var hopLimit: UInt8
    public var source: IPv6Address
    public var destination: IPv6Address

    public init(nextHeader: IPProtocol, source: IPv6Address, destination: IPv6Address, payloadLength: Int,
                hopLimit: UInt8 = 64, trafficClass: UInt8 = 0, flowLabel: UInt32 = 0) {
        self.nextHeader = nextHeader
        self.source = source
        self.destination = destination
        self.payloadLength = payloadLength
        self.hopLimit = hopLimit
        self.trafficClass = trafficClass
        self.flowLabel = flowLabel
    }

    public init(_ packet: borrowing IPv6Packet) {
        self.init(nextHeader: packet.nextHeader, source: packet.source, destination: packet.destination,
                  payloadLength: packet.payloadLength, hopLimit: packet.hopLimit,
                  trafficClass: packet.trafficClass, flowLabel: packet.flowLabel)
    }

    public var headerLength: Int { IPv6Packet.headerLength }

    /// Writes the fixed header at the start of `span`.
    public func emit(into span: inout MutableRawSpan) {
        typealias F = IPv6Packet.Field
        precondition(payloadLength <= 0xffff, "IPv6 payload length exceeds 65535")
        span.put(6 << 28 | UInt32(trafficClass) << 20 | flowLabel & 0xf_ffff, at: F.versionClassLabel)
        span.put(UInt16(payloadLength), at: F.payloadLength)
        span.put(nextHeader.rawValue, at: F.nextHeader)
        span.put(hopLimit, at: F.hopLimit)
        source.write(to: &span, at: F.source)
        destination.write(to: &span, at: F.destination)
    }
}
