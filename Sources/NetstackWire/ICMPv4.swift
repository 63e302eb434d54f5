/// A view of an ICMPv4 message (RFC 792): type, code, checksum, the four bytes
/// whose meaning depends on the type, and the body (echo data, or the start of
/// the datagram an error is about).
public struct ICMPv4Packet: ~Escapable {
    enum Field {
        static let type = 0
        static let code = 1
        static let checksum = 2
        static let rest = 4
        static let body = 8
    }

    public static let headerLength = 8

    public let bytes: RawSpan

    @_lifetime(copy bytes)
    public init(_ bytes: RawSpan) throws(WireError) {
        guard bytes.byteCount >= Self.headerLength else { throw WireError(.icmpv4, .truncated) }
        self.bytes = bytes
    }

    public var type: UInt8 { bytes.u8(Field.type) }
    public var code: UInt8 { bytes.u8(Field.code) }
    public var checksum: UInt16 { bytes.u16(Field.checksum) }
    /// The second 32-bit word, read as a whole.
    public var restOfHeader: UInt32 { bytes.u32(Field.rest) }

    public var isChecksumValid: Bool { InternetChecksum.compute(bytes) == 0 }

    public var body: RawSpan {
        @_lifetime(copy self) get { bytes.extracting(Field.body...) }
    }
}

/// ICMPv4 type numbers the stack uses.
public enum ICMPv4Type {
    public static let echoReply: UInt8 = 0
    public static let destinationUnreachable: UInt8 = 3
    public static let echoRequest: UInt8 = 8
    public static let timeExceeded: UInt8 = 11
    public static let parameterProblem: UInt8 = 12
}

/// Destination-unreachable codes (RFC 792, RFC 1812 §5.2.7.1).
public enum ICMPv4UnreachableCode {
    public static let network: UInt8 = 0
    public static let host: UInt8 = 1
    public static let `protocol`: UInt8 = 2
    public static let port: UInt8 = 3
    public static let fragmentationNeeded: UInt8 = 4
    public static let administrativelyProhibited: UInt8 = 13
}

/// Time-exceeded codes.
public enum ICMPv4TimeExceededCode {
    public static let timeToLive: UInt8 = 0
    public static let reassembly: UInt8 = 1
}

/// The header of an ICMPv4 message, by type. The body (echo data, or the
/// invoking datagram of an error) is not part of it.
public enum ICMPv4Message: Hashable, Sendable {
    case echoReply(identifier: UInt16, sequence: UInt16)
    case echoRequest(identifier: UInt16, sequence: UInt16)
    /// `nextHopMTU` is meaningful for code 4 (RFC 1191), zero otherwise.
    case destinationUnreachable(code: UInt8, nextHopMTU: UInt16)
    case timeExceeded(code: UInt8)
    /// `pointer` is the offset of the octet where the error was found.
    case parameterProblem(code: UInt8, pointer: UInt8)
    case other(type: UInt8, code: UInt8, restOfHeader: UInt32)

    /// The message of `packet` (checksum not checked here).
    public init(_ packet: borrowing ICMPv4Packet) {
        let rest = packet.restOfHeader
        let high = UInt16(truncatingIfNeeded: rest >> 16)
        let low = UInt16(truncatingIfNeeded: rest)
        switch (packet.type, packet.code) {
        case (ICMPv4Type.echoReply, 0): self = .echoReply(identifier: high, sequence: low)
        case (ICMPv4Type.echoRequest, 0): self = .echoRequest(identifier: high, sequence: low)
        case (ICMPv4Type.destinationUnreachable, let code) where high == 0:
            self = .destinationUnreachable(code: code, nextHopMTU: low)
        case (ICMPv4Type.timeExceeded, let code) where rest == 0:
            self = .timeExceeded(code: code)
        case (ICMPv4Type.parameterProblem, let code) where rest & 0x00ff_ffff == 0:
            self = .parameterProblem(code: code, pointer: UInt8(rest >> 24))
        default:
            self = .other(type: packet.type, code: packet.code, restOfHeader: rest)
        }
    }

    public var type: UInt8 {
        switch self {
        case .echoReply: ICMPv4Type.echoReply
        case .echoRequest: ICMPv4Type.echoRequest
        case .destinationUnreachable: ICMPv4Type.destinationUnreachable
        case .timeExceeded: ICMPv4Type.timeExceeded
        case .parameterProblem: ICMPv4Type.parameterProblem
        case .other(let type, _, _): type
        }
    }

    public var code: UInt8 {
        switch self {
        case .echoReply, .echoRequest: 0
        case .destinationUnreachable(let code, _), .timeExceeded(let code), .parameterProblem(let code, _): code
        case .other(_, let code, _): code
        }
    }

    /// Whether this is an error message (whose body quotes another datagram).
    public var isError: Bool {
        switch self {
        case .destinationUnreachable, .timeExceeded, .parameterProblem: true
        case .echoReply, .echoRequest, .other: false
        }
    }

    var restOfHeader: UInt32 {
        switch self {
        case .echoReply(let id, let seq), .echoRequest(let id, let seq): UInt32(id) << 16 | UInt32(seq)
        case .destinationUnreachable(_, let mtu): UInt32(mtu)
        case .timeExceeded: 0
        case .parameterProblem(_, let pointer): UInt32(pointer) << 24
        case .other(_, _, let rest): rest
        }
    }

    public var headerLength: Int { ICMPv4Packet.headerLength }

    /// Writes the header at the start of `span` and the checksum over it and the
    /// `bodyLength` bytes that must already follow it.
    public func emit(into span: inout MutableRawSpan, bodyLength: Int) {
        typealias F = ICMPv4Packet.Field
        span.put(type, at: F.type)
        span.put(code, at: F.code)
        span.put(UInt16(0), at: F.checksum)
        span.put(restOfHeader, at: F.rest)
        let checksum = InternetChecksum.compute(span.bytes.extracting(0..<(F.body + bodyLength)))
        span.put(checksum, at: F.checksum)
    }

    /// Copies `body` after the header, then writes the header and checksum.
    public func emit(into span: inout MutableRawSpan, body: RawSpan) {
        span.copy(body, to: ICMPv4Packet.Field.body)
        emit(into: &span, bodyLength: body.byteCount)
    }
}
