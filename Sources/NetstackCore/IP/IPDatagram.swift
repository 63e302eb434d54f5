import NetstackWire

/// A received IP datagram on its way to ICMP, UDP or TCP: who sent it to
/// which of our addresses, and its bytes from the IP header on (so that an
/// ICMP error can quote it). A reassembled datagram is one of these too, over
/// the reassembler's buffer.
public struct IPDatagram<I: IPVersion>: ~Escapable {
    public let source: I.Address
    public let destination: I.Address
    let destinationKind: DestinationKind
    public let hopLimit: UInt8
    /// The upper-layer protocol.
    public let `protocol`: IPProtocol
    /// The packet from the start of its IP header.
    public let packet: RawSpan
    /// Where the upper-layer data starts in `packet`.
    public let payloadOffset: Int
    /// Where, in `packet`, the byte that names `protocol` is (for parameter
    /// problems about it).
    let protocolFieldOffset: Int
    /// What the sending kernel left undone (checksums, segmentation); nothing
    /// for reassembled datagrams and plain frames.
    let offload: ReceiveOffload

    @_lifetime(copy packet)
    init(source: I.Address, destination: I.Address, destinationKind: DestinationKind, hopLimit: UInt8,
         protocol: IPProtocol, packet: RawSpan, payloadOffset: Int, protocolFieldOffset: Int,
         offload: ReceiveOffload = .none) {
        self.offload = offload
        self.source = source
        self.destination = destination
        self.destinationKind = destinationKind
        self.hopLimit = hopLimit
        self.protocol = `protocol`
        self.packet = packet
        self.payloadOffset = payloadOffset
        self.protocolFieldOffset = protocolFieldOffset
    }

    /// The ECN field (RFC 3168 §5): 0 not ECN-capable, 1 ECT(1), 2 ECT(0),
    /// 3 congestion experienced.
    public var ecn: UInt8 {
        guard packet.byteCount >= 2 else { return 0 }
        return packet.u8(0) >> 4 == 6 ? (packet.u8(1) >> 4) & 0x3 : packet.u8(1) & 0x3
    }

    /// The upper-layer bytes.
    public var payload: RawSpan {
        @_lifetime(copy self) get { packet.extracting(payloadOffset...) }
    }

    /// Whether it was sent to one of our unicast addresses (not a broadcast or group).
    public var isUnicast: Bool { destinationKind == .unicast }
}
