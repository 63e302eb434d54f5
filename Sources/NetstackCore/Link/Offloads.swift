import NetstackWire

/// What the link does for the stack: on a TAP opened with a virtio-net
/// header (`IFF_VNET_HDR`), the kernel finishes checksums and cuts large TCP
/// segments, in both directions. The driver sets this once it knows what the
/// device accepted; with `.none` frames are plain Ethernet frames.
public struct LinkOffloads: Sendable, Hashable, CustomStringConvertible {
    /// Every frame, received and sent, starts with a `VirtioNetHeader`.
    public var virtioHeader = false
    /// The link finishes the TCP and UDP checksums of frames the stack sends
    /// (they leave with the pseudo-header's sum only).
    public var transmitChecksum = false
    /// The link cuts TCP segments of up to 64 KiB into MSS-sized ones (TSO),
    /// both IP versions. Needs `transmitChecksum`.
    public var tcpSegmentation = false

    public init(virtioHeader: Bool = false, transmitChecksum: Bool = false, tcpSegmentation: Bool = false) {
        self.virtioHeader = virtioHeader
        self.transmitChecksum = transmitChecksum && virtioHeader
        self.tcpSegmentation = tcpSegmentation && self.transmitChecksum
    }

    public static let none = LinkOffloads()

    /// Everything a TAP with a virtio header offers.
    public static let virtio = LinkOffloads(virtioHeader: true, transmitChecksum: true, tcpSegmentation: true)

    /// The largest IP packet one TSO frame may carry.
    static let segmentationLimit = 65_535

    public var description: String {
        guard virtioHeader else { return "none" }
        var parts = ["virtio-header"]
        if transmitChecksum { parts.append("checksum") }
        if tcpSegmentation { parts.append("tso") }
        return parts.joined(separator: ",")
    }
}

/// What the sending kernel did, or left undone, for one received frame (from
/// its virtio header).
struct ReceiveOffload {
    /// The TCP or UDP checksum need not be verified: the kernel left it to be
    /// finished (the frame never crossed a wire) or checked it itself.
    var checksumTrusted = false
    /// A large TCP segment (or a train of UDP datagrams) standing for
    /// segments of `segmentSize` payload bytes each.
    var segmentation: VirtioNetHeader.Segmentation = .none
    var segmentSize = 0

    static let none = ReceiveOffload()

    init() {}

    init(_ header: VirtioNetHeader) {
        checksumTrusted = header.checksumTrusted
        segmentation = header.segmentation
        segmentSize = Int(header.segmentSize)
    }
}

/// What the link is to finish for one frame the stack sends.
enum TransmitOffload {
    /// Nothing: the frame is complete.
    case none
    /// The transport checksum at this offset from the transport header is partial.
    case checksum(fieldOffset: Int)
    /// A TCP segment to cut into `segmentSize`-byte pieces; its checksum is partial.
    case tcpSegmentation(segmentSize: Int, headerLength: Int)

    var isNone: Bool { if case .none = self { true } else { false } }
}
