/// The EtherType field: which protocol an Ethernet frame carries.
public struct EtherType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let ipv4 = EtherType(rawValue: 0x0800)
    public static let arp = EtherType(rawValue: 0x0806)
    public static let vlan = EtherType(rawValue: 0x8100)
    public static let ipv6 = EtherType(rawValue: 0x86dd)

    public var description: String {
        switch self {
        case .ipv4: "IPv4"
        case .arp: "ARP"
        case .vlan: "802.1Q"
        case .ipv6: "IPv6"
        default: "0x" + String(rawValue, radix: 16)
        }
    }
}

/// An IEEE 802.1Q tag: priority, drop eligibility and VLAN identifier.
public struct VLANTag: Hashable, Sendable {
    public var priority: UInt8
    public var dropEligible: Bool
    public var identifier: UInt16

    public init(priority: UInt8 = 0, dropEligible: Bool = false, identifier: UInt16) {
        self.priority = priority & 0x7
        self.dropEligible = dropEligible
        self.identifier = identifier & 0xfff
    }

    init(controlInformation tci: UInt16) {
        self.init(priority: UInt8(tci >> 13), dropEligible: tci & 0x1000 != 0, identifier: tci & 0xfff)
    }

    var controlInformation: UInt16 {
        UInt16(priority) << 13 | (dropEligible ? 0x1000 : 0) | identifier
    }
}

/// A view of an Ethernet II frame: destination, source, an optional 802.1Q tag,
/// the EtherType, and the payload. The frame check sequence is not part of it
/// (TAP devices and pcap files do not carry it).
public struct EthernetFrame: ~Escapable {
    enum Field {
        static let destination = 0
        static let source = 6
        static let etherType = 12
        static let vlanTCI = 14
        static let innerEtherType = 16
    }

    public static let headerLength = 14
    public static let taggedHeaderLength = 18

    /// The whole frame.
    public let bytes: RawSpan
    /// 14, or 18 with a VLAN tag.
    public let headerLength: Int

    /// Checks that the frame holds a complete header.
    @_lifetime(copy bytes)
    public init(_ bytes: RawSpan) throws(WireError) {
        guard bytes.byteCount >= Self.headerLength else { throw WireError(.ethernet, .truncated) }
        if bytes.u16(Field.etherType) == EtherType.vlan.rawValue {
            guard bytes.byteCount >= Self.taggedHeaderLength else { throw WireError(.ethernet, .truncated) }
            headerLength = Self.taggedHeaderLength
        } else {
            headerLength = Self.headerLength
        }
        self.bytes = bytes
    }

    public var destination: MACAddress { MACAddress(bytes, at: Field.destination) }
    public var source: MACAddress { MACAddress(bytes, at: Field.source) }

    /// The 802.1Q tag, when the frame carries one.
    public var vlan: VLANTag? {
        headerLength == Self.taggedHeaderLength ? VLANTag(controlInformation: bytes.u16(Field.vlanTCI)) : nil
    }

    /// The EtherType of the payload (after the VLAN tag, if any).
    public var etherType: EtherType {
        EtherType(rawValue: bytes.u16(headerLength - 2))
    }

    public var payload: RawSpan {
        @_lifetime(copy self) get { bytes.extracting(headerLength...) }
    }
}

/// The fields of an Ethernet header, to emit or after parsing.
public struct EthernetHeader: Hashable, Sendable {
    public var destination: MACAddress
    public var source: MACAddress
    public var vlan: VLANTag?
    public var etherType: EtherType

    public init(destination: MACAddress, source: MACAddress, vlan: VLANTag? = nil, etherType: EtherType) {
        self.destination = destination
        self.source = source
        self.vlan = vlan
        self.etherType = etherType
    }

    public init(_ frame: borrowing EthernetFrame) {
        self.init(destination: frame.destination, source: frame.source, vlan: frame.vlan, etherType: frame.etherType)
    }

    public var headerLength: Int {
        vlan == nil ? EthernetFrame.headerLength : EthernetFrame.taggedHeaderLength
    }

    /// Writes the header at the start of `span`.
    public func emit(into span: inout MutableRawSpan) {
        destination.write(to: &span, at: EthernetFrame.Field.destination)
        source.write(to: &span, at: EthernetFrame.Field.source)
        if let vlan {
            span.put(EtherType.vlan.rawValue, at: EthernetFrame.Field.etherType)
            span.put(vlan.controlInformation, at: EthernetFrame.Field.vlanTCI)
            span.put(etherType.rawValue, at: EthernetFrame.Field.innerEtherType)
        } else {
            span.put(etherType.rawValue, at: EthernetFrame.Field.etherType)
        }
    }
}
