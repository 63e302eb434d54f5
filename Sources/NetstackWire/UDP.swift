/// A view of a UDP datagram (RFC 768). Construction checks that the length
/// field covers the header and fits in the bytes given; bytes past it are not
/// part of the view.
public struct UDPDatagram: ~Escapable {
    enum Field {
        static let sourcePort = 0
        static let destinationPort = 2
        static let length = 4
        static let checksum = 6
    }

    public static let headerLength = 8
    /// Where the checksum is, from the start of the header (for checksum offload).
    public static let checksumFieldOffset = Field.checksum

    /// Header and payload, exactly `length` bytes.
    public let bytes: RawSpan

    @_lifetime(copy bytes)
    public init(_ bytes: RawSpan) throws(WireError) {
        guard bytes.byteCount >= Self.headerLength else { throw WireError(.udp, .truncated) }
        let length = Int(bytes.u16(Field.length))
        guard length >= Self.headerLength else { throw WireError(.udp, .badLength) }
        guard length <= bytes.byteCount else { throw WireError(.udp, .truncated) }
        self.bytes = bytes.extracting(0..<length)
    }

    public var sourcePort: UInt16 { bytes.u16(Field.sourcePort) }
    public var destinationPort: UInt16 { bytes.u16(Field.destinationPort) }
    public var length: Int { bytes.byteCount }
    public var checksum: UInt16 { bytes.u16(Field.checksum) }

    public var payload: RawSpan {
        @_lifetime(copy self) get { bytes.extracting(Self.headerLength...) }
    }

    /// Whether the checksum verifies. Over IPv4 a zero checksum means "none
    /// computed" and is accepted (RFC 768).
    public func isChecksumValid(source: IPv4Address, destination: IPv4Address) -> Bool {
        if checksum == 0 { return true }
        var sum = InternetChecksum()
        sum.addPseudoHeader(source: source, destination: destination, protocol: .udp, length: length)
        sum.add(bytes)
        return sum.value == 0
    }

    /// Whether the checksum verifies. Over IPv6 the checksum is mandatory and a
    /// zero one is invalid (RFC 8200 §8.1).
    public func isChecksumValid(source: IPv6Address, destination: IPv6Address) -> Bool {
        if checksum == 0 { return false }
        var sum = InternetChecksum()
        sum.addPseudoHeader(source: source, destination: destination, protocol: .udp, length: length)
        sum.add(bytes)
        return sum.value == 0
    }
}

/// The fields of a UDP header.
public struct UDPHeader: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var payloadLength: Int

    public init(sourcePort: UInt16, destinationPort: UInt16, payloadLength: Int) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.payloadLength = payloadLength
    }

    public init(_ datagram: borrowing UDPDatagram) {
        self.init(sourcePort: datagram.sourcePort, destinationPort: datagram.destinationPort,
                  payloadLength: datagram.payload.byteCount)
    }

    public var headerLength: Int { UDPDatagram.headerLength }
    public var length: Int { UDPDatagram.headerLength + payloadLength }

    /// Writes the header at the start of `span`, with the checksum over the
    /// pseudo-header (whose sum the caller adds to `pseudoHeader`) and the
    /// payload that must already follow the header. A computed checksum of zero
    /// is sent as 0xffff (RFC 768). With `partialChecksum` the field holds only
    /// the pseudo-header's sum, for the device to finish (checksum offload).
    public func emit(into span: inout MutableRawSpan, pseudoHeader: InternetChecksum, partialChecksum: Bool = false) {
        typealias F = UDPDatagram.Field
        precondition(length <= 0xffff, "UDP length exceeds 65535")
        span.put(sourcePort, at: F.sourcePort)
        span.put(destinationPort, at: F.destinationPort)
        span.put(UInt16(length), at: F.length)
        if partialChecksum {
            span.put(pseudoHeader.partialValue, at: F.checksum)
            return
        }
        span.put(UInt16(0), at: F.checksum)
        var checksum = pseudoHeader
        checksum.add(span.bytes.extracting(0..<length))
        let value = checksum.value
        span.put(value == 0 ? 0xffff : value, at: F.checksum)
    }

    /// Emits with the IPv4 pseudo-header.
    public func emit(into span: inout MutableRawSpan, source: IPv4Address, destination: IPv4Address) {
        var pseudo = InternetChecksum()
        pseudo.addPseudoHeader(source: source, destination: destination, protocol: .udp, length: length)
        emit(into: &span, pseudoHeader: pseudo)
    }

    /// Emits with the IPv6 pseudo-header.
    public func emit(into span: inout MutableRawSpan, source: IPv6Address, destination: IPv6Address) {
        var pseudo = InternetChecksum()
        pseudo.addPseudoHeader(source: source, destination: destination, protocol: .udp, length: length)
        emit(into: &span, pseudoHeader: pseudo)
    }
}
