/// Why a header could not be parsed: which header, and what was wrong with it.
///
/// Every parse failure in this module is one of these, so the core can count
/// dropped frames by reason (`ipv4.badChecksum`, `tcp.truncated`, ...) without
/// formatting strings on the hot path.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The header (or header part) that failed to parse.
    public enum Header: String, Sendable, CaseIterable {
        case virtio, ethernet, arp, ipv4, ipv6, ipv6Extension, icmpv4, icmpv6, ndpOption, udp, tcp, tcpOption
    }

    /// What was wrong with it.
    public enum Reason: String, Sendable, CaseIterable {
        /// Fewer bytes than the header (or a length it announces) needs.
        case truncated
        /// A length field is inconsistent: shorter than the header, or not a
        /// multiple it must be.
        case badLength
        /// The checksum does not verify.
        case badChecksum
        /// The version field is not the expected one.
        case badVersion
        /// A header-length field is below its minimum.
        case badHeaderLength
        /// An option is malformed (length too small, runs past the end, ...).
        case badOption
        /// A field holds a value this header never carries (ARP hardware type,
        /// reserved bits, multicast source, ...).
        case badValue
        /// An offset field points outside the data (a virtio header's
        /// checksum or header offsets).
        case badOffset
        /// A segmentation offload with a segment size of zero.
        case badSegmentSize
    }

    public let header: Header
    public let reason: Reason

    public init(_ header: Header, _ reason: Reason) {
        self.header = header
        self.reason = reason
    }

    /// `"ipv4.badChecksum"`: the form used for drop counters and logs.
    public var description: String { "\(header.rawValue).\(reason.rawValue)" }
}
