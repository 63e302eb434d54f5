/// The IPv4 protocol / IPv6 next-header number (IANA "Assigned Internet
/// Protocol Numbers").
public struct IPProtocol: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let hopByHopOptions = IPProtocol(rawValue: 0)
    public static let icmp = IPProtocol(rawValue: 1)
    public static let igmp = IPProtocol(rawValue: 2)
    public static let tcp = IPProtocol(rawValue: 6)
    public static let udp = IPProtocol(rawValue: 17)
    public static let routing = IPProtocol(rawValue: 43)
    public static let fragment = IPProtocol(rawValue: 44)
    public static let icmpv6 = IPProtocol(rawValue: 58)
    public static let noNextHeader = IPProtocol(rawValue: 59)
    public static let destinationOptions = IPProtocol(rawValue: 60)

    public var description: String {
        switch self {
        case .hopByHopOptions: "hop-by-hop"
        case .icmp: "ICMP"
        case .igmp: "IGMP"
        case .tcp: "TCP"
        case .udp: "UDP"
        case .routing: "routing"
        case .fragment: "fragment"
        case .icmpv6: "ICMPv6"
        case .noNextHeader: "no-next-header"
        case .destinationOptions: "destination-options"
        default: "protocol \(rawValue)"
        }
    }
}

/// Up to 40 bytes of header options (IPv4 and TCP both allow at most 40), kept
/// inline so that a header value never allocates.
public struct OptionBytes: Hashable, Sendable {
    public static let capacity = 40
    private var storage: InlineArray<40, UInt8> = InlineArray(repeating: 0)
    public private(set) var count = 0

    public init() {}

    /// Copies `bytes`; nil if there are more than 40.
    public init?(_ bytes: RawSpan) {
        guard bytes.byteCount <= Self.capacity else { return nil }
        for i in 0..<bytes.byteCount {
            storage[i] = bytes.u8(i)
        }
        count = bytes.byteCount
    }

    public var isEmpty: Bool { count == 0 }
    public var remainingCapacity: Int { Self.capacity - count }

    public subscript(index: Int) -> UInt8 {
        precondition(index >= 0 && index < count, "option byte out of range")
        return storage[index]
    }

    /// Appends one byte; false (and nothing appended) when full.
    @discardableResult
    public mutating func append(_ byte: UInt8) -> Bool {
        guard count < Self.capacity else { return false }
        storage[count] = byte
        count += 1
        return true
    }

    /// Writes the bytes at `offset` of `span`.
    public func write(to span: inout MutableRawSpan, at offset: Int) {
        for i in 0..<count {
            span.put(storage[i], at: offset + i)
        }
    }

    public var array: [UInt8] { (0..<count).map { storage[$0] } }

    public static func == (a: OptionBytes, b: OptionBytes) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where a.storage[i] != b.storage[i] { return false }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        for i in 0..<count { hasher.combine(storage[i]) }
    }
}
