/// The header in front of every frame on a TAP opened with `IFF_VNET_HDR`:
/// `struct virtio_net_hdr` (virtio 1.x §5.1.6), here in its 12-byte form,
/// little-endian. It says what the sender left undone: a checksum to finish
/// ("partial": the field holds the pseudo-header sum, the rest is to be summed
/// from `checksumStart`) and a large TCP or UDP segment to cut into pieces of
/// `segmentSize` payload bytes (GSO).
///
/// The kernel writes one in front of each frame it gives us and reads one in
/// front of each frame we write, so the stack receives and sends 64 KiB
/// segments in one system call and never sums what the kernel sums anyway.
public struct VirtioNetHeader: Hashable, Sendable {
    enum Field {
        static let flags = 0
        static let segmentationType = 1
        static let headerLength = 2
        static let segmentSize = 4
        static let checksumStart = 6
        static let checksumOffset = 8
        static let buffers = 10
    }

    /// Bytes of the header (with virtio 1.0's `num_buffers`), set on the
    /// device with `TUNSETVNETHDRSZ`.
    public static let length = 12

    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The checksum at `checksumStart + checksumOffset` is partial.
        public static let needsChecksum = Flags(rawValue: 1)
        /// The receiver (here: the kernel's own checks) validated the checksums.
        public static let dataValid = Flags(rawValue: 2)
        static let known: Flags = [.needsChecksum, .dataValid]
    }

    /// What a large frame stands for (`VIRTIO_NET_HDR_GSO_*`).
    public enum Segmentation: UInt8, Hashable, Sendable {
        case none = 0
        case tcpv4 = 1
        case tcpv6 = 4
        /// UDP segmentation offload (USO): datagrams of `segmentSize` bytes each.
        case udp = 5
    }

    /// `VIRTIO_NET_HDR_GSO_ECN`: the TCP segments carry CWR on the first one.
    static let ecnBit: UInt8 = 0x80

    public var flags: Flags
    public var segmentation: Segmentation
    public var ecn: Bool
    /// Bytes of headers (Ethernet through TCP or UDP) in a segmented frame.
    public var headerLength: UInt16
    /// Payload bytes per segment when `segmentation` is not `.none`.
    public var segmentSize: UInt16
    /// Where, from the start of the Ethernet frame, the partial checksum's
    /// coverage starts, and where from there the checksum field is.
    public var checksumStart: UInt16
    public var checksumOffset: UInt16

    public init(flags: Flags = [], segmentation: Segmentation = .none, ecn: Bool = false, headerLength: UInt16 = 0,
                segmentSize: UInt16 = 0, checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0) {
        self.flags = flags
        self.segmentation = segmentation
        self.ecn = ecn
        self.headerLength = headerLength
        self.segmentSize = segmentSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    /// A frame with nothing left to do.
    public static let plain = VirtioNetHeader()

    /// Parses the header at the start of `bytes` (a header, then an Ethernet
    /// frame) and checks that it does not lie about that frame: a known
    /// segmentation type with a non-zero segment size, and offsets inside it.
    public init(_ bytes: RawSpan) throws(WireError) {
        guard bytes.byteCount >= Self.length else { throw WireError(.virtio, .truncated) }
        let frameLength = bytes.byteCount - Self.length
        func le16(_ offset: Int) -> UInt16 { UInt16(littleEndian: bytes.unsafeLoadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
        let flags = Flags(rawValue: bytes.u8(Field.flags))
        guard Flags.known.isSuperset(of: flags) else { throw WireError(.virtio, .badValue) }
        let type = bytes.u8(Field.segmentationType)
        guard let segmentation = Segmentation(rawValue: type & ~Self.ecnBit) else { throw WireError(.virtio, .badValue) }
        self.init(flags: flags, segmentation: segmentation, ecn: type & Self.ecnBit != 0,
                  headerLength: le16(Field.headerLength), segmentSize: le16(Field.segmentSize),
                  checksumStart: le16(Field.checksumStart), checksumOffset: le16(Field.checksumOffset))
        if ecn && segmentation == .none { throw WireError(.virtio, .badValue) }
        if segmentation != .none {
            guard segmentSize > 0 else { throw WireError(.virtio, .badSegmentSize) }
            guard Int(headerLength) <= frameLength else { throw WireError(.virtio, .badOffset) }
            // Segmentation needs the checksum to be finished per segment.
            guard flags.contains(.needsChecksum) else { throw WireError(.virtio, .badValue) }
        }
        if flags.contains(.needsChecksum) {
            guard Int(checksumStart) + Int(checksumOffset) + 2 <= frameLength else {
                throw WireError(.virtio, .badOffset)
            }
        }
    }

    /// Writes the header at the start of `span`.
    public func emit(into span: inout MutableRawSpan) {
        func le16(_ value: UInt16, _ offset: Int) {
            span.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
        }
        span.put(flags.rawValue, at: Field.flags)
        span.put(segmentation.rawValue | (ecn ? Self.ecnBit : 0), at: Field.segmentationType)
        le16(headerLength, Field.headerLength)
        le16(segmentSize, Field.segmentSize)
        le16(checksumStart, Field.checksumStart)
        le16(checksumOffset, Field.checksumOffset)
        le16(0, Field.buffers)
    }

    /// The checksum of the frame's TCP or UDP part is the kernel's to finish,
    /// or it already checked it: either way the receiver need not sum it.
    public var checksumTrusted: Bool { !flags.isDisjoint(with: [.needsChecksum, .dataValid]) }
}
