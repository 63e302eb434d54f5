/// The prefix information option of a router advertisement (RFC 4861 §4.6.2).
public struct NDPPrefixInformation: Hashable, Sendable {
    public var prefixLength: UInt8
    public var onLink: Bool
    public var autonomous: Bool
    /// Seconds; 0xffffffff is infinity.
    public var validLifetime: UInt32
    /// Seconds; 0xffffffff is infinity.
    public var preferredLifetime: UInt32
    public var prefix: IPv6Address

    public init(prefix: IPv6Address, prefixLength: UInt8, onLink: Bool, autonomous: Bool,
                validLifetime: UInt32, preferredLifetime: UInt32) {
        self.prefix = prefix
        self.prefixLength = prefixLength
        self.onLink = onLink
        self.autonomous = autonomous
        self.validLifetime = validLifetime
        self.preferredLifetime = preferredLifetime
    }
}

/// One option of a neighbour discovery message (RFC 4861 §4.6). Options this
/// stack does not use are reported as `.other` and skipped by their length.
public enum NDPOption: Hashable, Sendable {
    case sourceLinkLayerAddress(MACAddress)
    case targetLinkLayerAddress(MACAddress)
    case prefixInformation(NDPPrefixInformation)
    case mtu(UInt32)
    /// Any other option: its type and total length in bytes.
    case other(type: UInt8, length: Int)

    public static let sourceLinkLayerAddressType: UInt8 = 1
    public static let targetLinkLayerAddressType: UInt8 = 2
    public static let prefixInformationType: UInt8 = 3
    public static let mtuType: UInt8 = 5

    /// Calls `body` with each option in `bytes` (the body of an NDP message).
    /// An option with length zero or one that runs past the end makes the whole
    /// message invalid (RFC 4861 §4.6): this throws `.badOption`.
    public static func forEach(in bytes: RawSpan, _ body: (NDPOption) throws(WireError) -> Void) throws(WireError) {
        var offset = 0
        while offset < bytes.byteCount {
            guard offset + 2 <= bytes.byteCount else { throw WireError(.ndpOption, .truncated) }
            let type = bytes.u8(offset)
            let length = Int(bytes.u8(offset + 1)) * 8
            guard length > 0 else { throw WireError(.ndpOption, .badOption) }
            guard offset + length <= bytes.byteCount else { throw WireError(.ndpOption, .truncated) }
            let option: NDPOption
            switch type {
            case sourceLinkLayerAddressType where length >= 8:
                option = .sourceLinkLayerAddress(MACAddress(bytes, at: offset + 2))
            case targetLinkLayerAddressType where length >= 8:
                option = .targetLinkLayerAddress(MACAddress(bytes, at: offset + 2))
            case prefixInformationType where length == 32:
                let flags = bytes.u8(offset + 3)
                option = .prefixInformation(NDPPrefixInformation(
                    prefix: IPv6Address(bytes, at: offset + 16), prefixLength: bytes.u8(offset + 2),
                    onLink: flags & 0x80 != 0, autonomous: flags & 0x40 != 0,
                    validLifetime: bytes.u32(offset + 4), preferredLifetime: bytes.u32(offset + 8)))
            case mtuType where length == 8:
                option = .mtu(bytes.u32(offset + 4))
            default:
                option = .other(type: type, length: length)
            }
            try body(option)
            offset += length
        }
    }

    /// The option's length in bytes, padding included.
    public var length: Int {
        switch self {
        case .sourceLinkLayerAddress, .targetLinkLayerAddress, .mtu: 8
        case .prefixInformation: 32
        case .other(_, let length): length
        }
    }

    /// Writes the option at the start of `span`. `.other` options are written
    /// as their type and length followed by zeros.
    public func emit(into span: inout MutableRawSpan) {
        span.zero(from: 0, count: length)
        span.put(UInt8(length / 8), at: 1)
        switch self {
        case .sourceLinkLayerAddress(let mac):
            span.put(Self.sourceLinkLayerAddressType, at: 0)
            mac.write(to: &span, at: 2)
        case .targetLinkLayerAddress(let mac):
            span.put(Self.targetLinkLayerAddressType, at: 0)
            mac.write(to: &span, at: 2)
        case .prefixInformation(let info):
            span.put(Self.prefixInformationType, at: 0)
            span.put(info.prefixLength, at: 2)
            span.put((info.onLink ? 0x80 : 0) | (info.autonomous ? 0x40 : 0) as UInt8, at: 3)
            span.put(info.validLifetime, at: 4)
            span.put(info.preferredLifetime, at: 8)
            info.prefix.write(to: &span, at: 16)
        case .mtu(let mtu):
            span.put(Self.mtuType, at: 0)
            span.put(mtu, at: 4)
        case .other(let type, _):
            span.put(type, at: 0)
        }
    }
}
