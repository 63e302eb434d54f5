/// The ARP operation (RFC 826).
public struct ARPOperation: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let request = ARPOperation(rawValue: 1)
    public static let reply = ARPOperation(rawValue: 2)
}

/// A view of an ARP packet for Ethernet and IPv4 (RFC 826), the only pairing a
/// stack on Ethernet needs. Other hardware or protocol types are rejected with
/// `.badValue`.
public struct ARPPacket: ~Escapable {
    enum Field {
        static let hardwareType = 0
        static let protocolType = 2
        static let hardwareLength = 4
        static let protocolLength = 5
        static let operation = 6
        static let senderHardware = 8
        static let senderProtocol = 14
        static let targetHardware = 18
        static let targetProtocol = 24
    }

    public static let length = 28
    static let ethernetHardwareType: UInt16 = 1

    public let bytes: RawSpan

    @_lifetime(copy bytes)
    public init(_ bytes: RawSpan) throws(WireError) {
        guard bytes.byteCount >= Self.length else { throw WireError(.arp, .truncated) }
        guard bytes.u16(Field.hardwareType) == Self.ethernetHardwareType,
              bytes.u16(Field.protocolType) == EtherType.ipv4.rawValue,
              bytes.u8(Field.hardwareLength) == 6, bytes.u8(Field.protocolLength) == 4
        else { throw WireError(.arp, .badValue) }
        // Trailing Ethernet padding is not part of the packet.
        self.bytes = bytes.extracting(0..<Self.length)
    }

    public var operation: ARPOperation { ARPOperation(rawValue: bytes.u16(Field.operation)) }
    public var senderHardwareAddress: MACAddress { MACAddress(bytes, at: Field.senderHardware) }
    public var senderProtocolAddress: IPv4Address { IPv4Address(bytes, at: Field.senderProtocol) }
    public var targetHardwareAddress: MACAddress { MACAddress(bytes, at: Field.targetHardware) }
    public var targetProtocolAddress: IPv4Address { IPv4Address(bytes, at: Field.targetProtocol) }
}

/// The fields of an Ethernet/IPv4 ARP packet.
public struct ARPMessage: Hashable, Sendable {
    public var operation: ARPOperation
    public var senderHardwareAddress: MACAddress
    public var senderProtocolAddress: IPv4Address
    public var targetHardwareAddress: MACAddress
    public var targetProtocolAddress: IPv4Address

    public init(operation: ARPOperation, senderHardwareAddress: MACAddress, senderProtocolAddress: IPv4Address,
                targetHardwareAddress: MACAddress, targetProtocolAddress: IPv4Address) {
        self.operation = operation
        self.senderHardwareAddress = senderHardwareAddress
        self.senderProtocolAddress = senderProtocolAddress
        self.targetHardwareAddress = targetHardwareAddress
        self.targetProtocolAddress = targetProtocolAddress
    }

    public init(_ packet: borrowing ARPPacket) {
        self.init(operation: packet.operation,
                  senderHardwareAddress: packet.senderHardwareAddress,
                  senderProtocolAddress: packet.senderProtocolAddress,
                  targetHardwareAddress: packet.targetHardwareAddress,
                  targetProtocolAddress: packet.targetProtocolAddress)
    }

    public var length: Int { ARPPacket.length }

    public func emit(into span: inout MutableRawSpan) {
        typealias F = ARPPacket.Field
        span.put(ARPPacket.ethernetHardwareType, at: F.hardwareType)
        span.put(EtherType.ipv4.rawValue, at: F.protocolType)
        span.put(UInt8(6), at: F.hardwareLength)
        span.put(UInt8(4), at: F.protocolLength)
        span.put(operation.rawValue, at: F.operation)
        senderHardwareAddress.write(to: &span, at: F.senderHardware)
        senderProtocolAddress.write(to: &span, at: F.senderProtocol)
        targetHardwareAddress.write(to: &span, at: F.targetHardware)
        targetProtocolAddress.write(to: &span, at: F.targetProtocol)
    }
}
