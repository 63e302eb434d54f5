/// A view of an IPv4 packet (RFC 791). Construction checks the version and
/// that the header and total lengths are consistent with the bytes given; bytes
/// past the total length (Ethernet padding) are not part of the view. The header
/// checksum is checked separately, by `isChecksumValid`.
public struct IPv4Packet: ~Escapable {
    enum Field {
        static let versionAndIHL = 0
        static let dscpAndECN = 1
        static let totalLength = 2
        static let identification = 4
        static let flagsAndFragmentOffset = 6
        static let timeToLive = 8
        static let `protocol` = 9
        static let checksum = 10
        static let source = 12
        static let destination = 16
        static let options = 20
    }

    public static let minimumHeaderLength = 20
    public static let maximumHeaderLength = 60

    /// The packet: header and payload, exactly `totalLength` bytes.
    public let bytes: RawSpan

    @_lifetime(copy bytes)
    public init(_ bytes: RawSpan) throws(WireError) {
        guard bytes.byteCount >= Self.minimumHeaderLength else { throw WireError(.ipv4, .truncated) }
        let first = bytes.u8(Field.versionAndIHL)
        guard first >> 4 == 4 else { throw WireError(.ipv4, .badVersion) }
        let headerLength = Int(first & 0x0f) * 4
        guard headerLength >= Self.minimumHeaderLength else { throw WireError(.ipv4, .badHeaderLength) }
        let totalLength = Int(bytes.u16(Field.totalLength))
        guard totalLength >= headerLength else { throw WireError(.ipv4, .badLength) }
        guard totalLength <= bytes.byteCount else { throw WireError(.ipv4, .truncated) }
        // Options must fit the header: end of list, no-operation, or a kind
        // with a length of at least 2 that ends inside it (RFC 791 §3.1).
        // A malformed one makes the whole packet one to drop (Linux's
        // ip_options_compile refuses it too).
        var index = Field.options
        while index < headerLength {
            let kind = bytes.u8(index)
            if kind == 0 { break }
            if kind == 1 {
                index += 1
                continue
            }
            guard index + 1 < headerLength else { throw WireError(.ipv4, .badOption) }
            let length = Int(bytes.u8(index + 1))
            guard length >= 2, index + length <= headerLength else { throw WireError(.ipv4, .badOption) }
            index += length
        }
        self.bytes = bytes.extracting(0..<totalLength)
    }

    public var headerLength: Int { Int(bytes.u8(Field.versionAndIHL) & 0x0f) * 4 }
    public var dscp: UInt8 { bytes.u8(Field.dscpAndECN) >> 2 }
    public var ecn: UInt8 { bytes.u8(Field.dscpAndECN) & 0x3 }
    public var totalLength: Int { bytes.byteCount }
    public var identification: UInt16 { bytes.u16(Field.identification) }
    public var dontFragment: Bool { bytes.u16(Field.flagsAndFragmentOffset) & 0x4000 != 0 }
    public var moreFragments: Bool { bytes.u16(Field.flagsAndFragmentOffset) & 0x2000 != 0 }
    /// The fragment offset in bytes (the field counts 8-byte units).
    public var fragmentOffset: Int { Int(bytes.u16(Field.flagsAndFragmentOffset) & 0x1fff) * 8 }
    /// Whether this is one fragment of a larger datagram.
    public var isFragment: Bool { moreFragments || fragmentOffset != 0 }
    public var timeToLive: UInt8 { bytes.u8(Field.timeToLive) }
    public var `protocol`: IPProtocol { IPProtocol(rawValue: bytes.u8(Field.protocol)) }
    public var headerChecksum: UInt16 { bytes.u16(Field.checksum) }
    public var source: IPv4Address { IPv4Address(bytes, at: Field.source) }
    public var destination: IPv4Address { IPv4Address(bytes, at: Field.destination) }

    /// Whether the header checksum verifies.
    public var isChecksumValid: Bool {
        InternetChecksum.compute(header) == 0
    }

    /// The header, options included.
    public var header: RawSpan {
        @_lifetime(copy self) get { bytes.extracting(0..<headerLength) }
    }

    /// The option bytes (possibly empty).
    public var options: RawSpan {
        @_lifetime(copy self) get { bytes.extracting(Field.options..<headerLength) }
    }

    public var payload: RawSpan {
        @_lifetime(copy self) get { bytes.extracting(headerLength...) }
    }
}

/// The fields of an IPv4 header, to emit or after parsing. Options are kept as
/// bytes: the stack itself never sends any, but preserves what it parsed.
public struct IPv4Header: Hashable, Sendable {
    public var dscp: UInt8 = 0
    public var ecn: UInt8 = 0
    public var identification: UInt16 = 0
    public var dontFragment = false
    public var moreFragments = false
    /// In bytes; a multiple of 8.
    public var fragmentOffset = 0
    public var timeToLive: UInt8 = 64
    public var `protocol`: IPProtocol
    public var source: IPv4Address
    public var destination: IPv4Address
    /// Option bytes; emitted padded with zeros (end-of-list) to a multiple of 4.
    public var options = OptionBytes()
    /// Bytes after the header.
    public var payloadLength: Int

    public init(protocol: IPProtocol, source: IPv4Address, destination: IPv4Address, payloadLength: Int,
                timeToLive: UInt8 = 64, identification: UInt16 = 0, dontFragment: Bool = false) {
        self.protocol = `protocol`
        self.source = source
        self.destination = destination
        self.payloadLength = payloadLength
        self.timeToLive = timeToLive
        self.identification = identification
        self.dontFragment = dontFragment
    }

    /// The fields of `packet` (whose checksum is not checked here).
    public init(_ packet: borrowing IPv4Packet) {
        self.init(protocol: packet.protocol, source: packet.source, destination: packet.destination,
                  payloadLength: packet.payload.byteCount, timeToLive: packet.timeToLive,
                  identification: packet.identification, dontFragment: packet.dontFragment)
        dscp = packet.dscp
        ecn = packet.ecn
        moreFragments = packet.moreFragments
        fragmentOffset = packet.fragmentOffset
        // A view's option area is at most 40 bytes, so this always fits.
        options = OptionBytes(packet.options) ?? OptionBytes()
    }

    public var headerLength: Int { IPv4Packet.minimumHeaderLength + (options.count + 3) / 4 * 4 }
    public var totalLength: Int { headerLength + payloadLength }

    /// Writes the header, checksum included, at the start of `span`.
    public func emit(into span: inout MutableRawSpan) {
        typealias F = IPv4Packet.Field
        let headerLength = headerLength
        precondition(totalLength <= 0xffff, "IPv4 total length exceeds 65535")
        precondition(fragmentOffset % 8 == 0 && fragmentOffset <= 0x1fff * 8, "bad IPv4 fragment offset")
        span.put(UInt8(0x40 | headerLength / 4), at: F.versionAndIHL)
        span.put(dscp << 2 | ecn & 0x3, at: F.dscpAndECN)
        span.put(UInt16(totalLength), at: F.totalLength)
        span.put(identification, at: F.identification)
        let flags: UInt16 = (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0)
        span.put(flags | UInt16(fragmentOffset / 8), at: F.flagsAndFragmentOffset)
        span.put(timeToLive, at: F.timeToLive)
        span.put(`protocol`.rawValue, at: F.protocol)
        span.put(UInt16(0), at: F.checksum)
        source.write(to: &span, at: F.source)
        destination.write(to: &span, at: F.destination)
        options.write(to: &span, at: F.options)
        span.zero(from: F.options + options.count, count: headerLength - F.options - options.count)
        let checksum = InternetChecksum.compute(span.bytes.extracting(0..<headerLength))
        span.put(checksum, at: F.checksum)
    }
}

extension InternetChecksum {
    /// Adds the IPv4 pseudo-header of RFC 793 §3.1 / RFC 768.
    public mutating func addPseudoHeader(source: IPv4Address, destination: IPv4Address,
                                         protocol: IPProtocol, length: Int) {
        add(source.rawValue)
        add(destination.rawValue)
        add(UInt16(`protocol`.rawValue))
        add(UInt16(truncatingIfNeeded: length))
    }

    /// Adds the IPv6 pseudo-header of RFC 8200 §8.1.
    public mutating func addPseudoHeader(source: IPv6Address, destination: IPv6Address,
                                         protocol: IPProtocol, length: Int) {
        add(UInt32(truncatingIfNeeded: source.high >> 32))
        add(UInt32(truncatingIfNeeded: source.high))
        add(UInt32(truncatingIfNeeded: source.low >> 32))
        add(UInt32(truncatingIfNeeded: source.low))
        add(UInt32(truncatingIfNeeded: destination.high >> 32))
        add(UInt32(truncatingIfNeeded: destination.high))
        add(UInt32(truncatingIfNeeded: destination.low >> 32))
        add(UInt32(truncatingIfNeeded: destination.low))
        add(UInt32(truncatingIfNeeded: length))
        add(UInt32(`protocol`.rawValue))
    }
}
