/// The TCP control bits (RFC 9293 §3.1, RFC 3168 for ECE and CWR).
public struct TCPFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue & 0x1ff }

    public static let fin = TCPFlags(rawValue: 0x001)
    public static let syn = TCPFlags(rawValue: 0x002)
    public static let rst = TCPFlags(rawValue: 0x004)
    public static let psh = TCPFlags(rawValue: 0x008)
    public static let ack = TCPFlags(rawValue: 0x010)
    public static let urg = TCPFlags(rawValue: 0x020)
    public static let ece = TCPFlags(rawValue: 0x040)
    public static let cwr = TCPFlags(rawValue: 0x080)
    /// The former NS bit (RFC 3540, historic), now reserved for AccECN.
    public static let ae = TCPFlags(rawValue: 0x100)

    public var description: String {
        let names: [(TCPFlags, String)] = [(.syn, "S"), (.fin, "F"), (.rst, "R"), (.psh, "P"), (.ack, "."),
                                           (.urg, "U"), (.ece, "E"), (.cwr, "W"), (.ae, "A")]
        let text = names.filter { contains($0.0) }.map(\.1).joined()
        return text.isEmpty ? "none" : text
    }
}

/// A view of a TCP segment (RFC 9293 §3.1). Construction checks the data
/// offset against the bytes given; the payload is everything after the header
/// (the IP layer has already cut the segment to its length).
public struct TCPSegment: ~Escapable {
    enum Field {
        static let sourcePort = 0
        static let destinationPort = 2
        static let sequenceNumber = 4
        static let acknowledgmentNumber = 8
        static let dataOffsetAndFlags = 12
        static let window = 14
        static let checksum = 16
        static let urgentPointer = 18
        static let options = 20
    }

    public static let minimumHeaderLength = 20
    public static let maximumHeaderLength = 60
    /// Where the checksum is, from the start of the header (for checksum offload).
    public static let checksumFieldOffset = Field.checksum

    public let bytes: RawSpan

    @_lifetime(copy bytes)
    public init(_ bytes: RawSpan) throws(WireError) {
        guard bytes.byteCount >= Self.minimumHeaderLength else { throw WireError(.tcp, .truncated) }
        let headerLength = Int(bytes.u8(Field.dataOffsetAndFlags) >> 4) * 4
        guard headerLength >= Self.minimumHeaderLength else { throw WireError(.tcp, .badHeaderLength) }
        guard headerLength <= bytes.byteCount else { throw WireError(.tcp, .truncated) }
        self.bytes = bytes
    }

    public var sourcePort: UInt16 { bytes.u16(Field.sourcePort) }
    public var destinationPort: UInt16 { bytes.u16(Field.destinationPort) }
    public var sequenceNumber: UInt32 { bytes.u32(Field.sequenceNumber) }
    public var acknowledgmentNumber: UInt32 { bytes.u32(Field.acknowledgmentNumber) }
    public var headerLength: Int { Int(bytes.u8(Field.dataOffsetAndFlags) >> 4) * 4 }
    public var flags: TCPFlags { TCPFlags(rawValue: bytes.u16(Field.dataOffsetAndFlags)) }
    /// The three bits between the data offset and the flags, which must be zero.
    public var reservedBits: UInt8 { bytes.u8(Field.dataOffsetAndFlags) >> 1 & 0x7 }
    public var window: UInt16 { bytes.u16(Field.window) }
    public var checksum: UInt16 { bytes.u16(Field.checksum) }
    public var urgentPointer: UInt16 { bytes.u16(Field.urgentPointer) }

    public var options: RawSpan {
        @_lifetime(copy self) get { bytes.extracting(Field.options..<headerLength) }
    }

    public var payload: RawSpan {
        @_lifetime(copy self) get { bytes.extracting(headerLength...) }
    }

    /// The sequence space the segment occupies: payload bytes plus one for each
    /// of SYN and FIN (RFC 9293 §3.4).
    public var sequenceLength: Int {
        payload.byteCount + (flags.contains(.syn) ? 1 : 0) + (flags.contains(.fin) ? 1 : 0)
    }

    public func isChecksumValid(source: IPv4Address, destination: IPv4Address) -> Bool {
        var sum = InternetChecksum()
        sum.addPseudoHeader(source: source, destination: destination, protocol: .tcp, length: bytes.byteCount)
        sum.add(bytes)
        return sum.value == 0
    }

    public func isChecksumValid(source: IPv6Address, destination: IPv6Address) -> Bool {
        var sum = InternetChecksum()
        sum.addPseudoHeader(source: source, destination: destination, protocol: .tcp, length: bytes.byteCount)
        sum.add(bytes)
        return sum.value == 0
    }

    /// Calls `body` with each option, in order, up to and including an
    /// end-of-list option. Known options with a wrong length are reported as
    /// `.unknown` (and so ignored, as Linux does); an option whose length is
    /// below 2 or runs past the header throws `.badOption`.
    public func forEachOption(_ body: (TCPOption) throws(WireError) -> Void) throws(WireError) {
        try TCPOption.forEach(in: options, body)
    }
}

/// Up to four SACK blocks (RFC 2018 §3), kept inline.
public struct SACKBlocks: Hashable, Sendable {
    public static let capacity = 4
    private var lefts: InlineArray<4, UInt32> = InlineArray(repeating: 0)
    private var rights: InlineArray<4, UInt32> = InlineArray(repeating: 0)
    public private(set) var count = 0

    public init() {}

    public init(_ blocks: [(left: UInt32, right: UInt32)]) {
        for block in blocks.prefix(Self.capacity) { append(left: block.left, right: block.right) }
    }

    /// Appends a block; false when there are already four.
    @discardableResult
    public mutating func append(left: UInt32, right: UInt32) -> Bool {
        guard count < Self.capacity else { return false }
        lefts[count] = left
        rights[count] = right
        count += 1
        return true
    }

    public subscript(index: Int) -> (left: UInt32, right: UInt32) {
        precondition(index >= 0 && index < count, "SACK block index out of range")
        return (lefts[index], rights[index])
    }

    public var isEmpty: Bool { count == 0 }

    public static func == (a: SACKBlocks, b: SACKBlocks) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where a[i] != b[i] { return false }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        for i in 0..<count {
            hasher.combine(lefts[i])
            hasher.combine(rights[i])
        }
    }
}

/// One TCP option (RFC 9293 §3.2, RFC 7323, RFC 2018).
public enum TCPOption: Hashable, Sendable {
    case endOfList
    case noOperation
    case maximumSegmentSize(UInt16)
    /// The shift count (RFC 7323 §2).
    case windowScale(UInt8)
    case sackPermitted
    case sack(SACKBlocks)
    case timestamps(value: UInt32, echoReply: UInt32)
    /// Any other option, or a known one with the wrong length: skipped.
    case unknown(kind: UInt8, length: Int)

    enum Kind {
        static let endOfList: UInt8 = 0
        static let noOperation: UInt8 = 1
        static let maximumSegmentSize: UInt8 = 2
        static let windowScale: UInt8 = 3
        static let sackPermitted: UInt8 = 4
        static let sack: UInt8 = 5
        static let timestamps: UInt8 = 8
    }

    /// Calls `body` with each option in `bytes` (a TCP header's option area).
    public static func forEach(in bytes: RawSpan, _ body: (TCPOption) throws(WireError) -> Void) throws(WireError) {
        var offset = 0
        while offset < bytes.byteCount {
            let kind = bytes.u8(offset)
            switch kind {
            case Kind.endOfList:
                try body(.endOfList)
                return
            case Kind.noOperation:
                try body(.noOperation)
                offset += 1
                continue
            default:
                break
            }
            guard offset + 2 <= bytes.byteCount else { throw WireError(.tcpOption, .badOption) }
            let length = Int(bytes.u8(offset + 1))
            guard length >= 2, offset + length <= bytes.byteCount else { throw WireError(.tcpOption, .badOption) }
            let option: TCPOption
            switch (kind, length) {
            case (Kind.maximumSegmentSize, 4): option = .maximumSegmentSize(bytes.u16(offset + 2))
            case (Kind.windowScale, 3): option = .windowScale(bytes.u8(offset + 2))
            case (Kind.sackPermitted, 2): option = .sackPermitted
            case (Kind.timestamps, 10):
                option = .timestamps(value: bytes.u32(offset + 2), echoReply: bytes.u32(offset + 6))
            case (Kind.sack, _) where length >= 10 && (length - 2) % 8 == 0:
                var blocks = SACKBlocks()
                var at = offset + 2
                while at < offset + length {
                    blocks.append(left: bytes.u32(at), right: bytes.u32(at + 4))
                    at += 8
                }
                option = .sack(blocks)
            default:
                option = .unknown(kind: kind, length: length)
            }
            try body(option)
            offset += length
        }
    }

    /// The option's encoded length in bytes.
    public var length: Int {
        switch self {
        case .endOfList, .noOperation: 1
        case .maximumSegmentSize: 4
        case .windowScale: 3
        case .sackPermitted: 2
        case .sack(let blocks): 2 + 8 * blocks.count
        case .timestamps: 10
        case .unknown(_, let length): length
        }
    }
}

extension OptionBytes {
    /// Appends the encoding of `option`; false (and nothing appended) when it
    /// does not fit. `.unknown` options are encoded with zero data bytes.
    @discardableResult
    public mutating func append(_ option: TCPOption) -> Bool {
        guard option.length <= remainingCapacity else { return false }
        func u16(_ v: UInt16) { append(UInt8(v >> 8)); append(UInt8(truncatingIfNeeded: v)) }
        func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(truncatingIfNeeded: v)) }
        switch option {
        case .endOfList:
            append(TCPOption.Kind.endOfList)
        case .noOperation:
            append(TCPOption.Kind.noOperation)
        case .maximumSegmentSize(let mss):
            append(TCPOption.Kind.maximumSegmentSize); append(4); u16(mss)
        case .windowScale(let shift):
            append(TCPOption.Kind.windowScale); append(3); append(shift)
        case .sackPermitted:
            append(TCPOption.Kind.sackPermitted); append(2)
        case .sack(let blocks):
            append(TCPOption.Kind.sack); append(UInt8(option.length))
            for i in 0..<blocks.count { u32(blocks[i].left); u32(blocks[i].right) }
        case .timestamps(let value, let echo):
            append(TCPOption.Kind.timestamps); append(10); u32(value); u32(echo)
        case .unknown(let kind, let length):
            append(kind); append(UInt8(length))
            for _ in 2..<max(length, 2) { append(0) }
        }
        return true
    }
}

/// The fields of a TCP header. Options are kept encoded (`OptionBytes`), so a
/// header value is fixed-size and a parsed header re-emits byte for byte.
public struct TCPHeader: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var sequenceNumber: UInt32
    public var acknowledgmentNumber: UInt32
    public var flags: TCPFlags
    public var window: UInt16
    public var urgentPointer: UInt16 = 0
    /// Encoded options; emitted padded with zeros to a multiple of 4.
    public var options = OptionBytes()
    public var payloadLength: Int

    public init(sourcePort: UInt16, destinationPort: UInt16, sequenceNumber: UInt32, acknowledgmentNumber: UInt32,
                flags: TCPFlags, window: UInt16, payloadLength: Int = 0) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.sequenceNumber = sequenceNumber
        self.acknowledgmentNumber = acknowledgmentNumber
        self.flags = flags
        self.window = window
        self.payloadLength = payloadLength
    }

    public init(_ segment: borrowing TCPSegment) {
        self.init(sourcePort: segment.sourcePort, destinationPort: segment.destinationPort,
                  sequenceNumber: segment.sequenceNumber, acknowledgmentNumber: segment.acknowledgmentNumber,
                  flags: segment.flags, window: segment.window, payloadLength: segment.payload.byteCount)
        urgentPointer = segment.urgentPointer
        // A view's option area is at most 40 bytes, so this always fits.
        options = OptionBytes(segment.options) ?? OptionBytes()
    }

    public var headerLength: Int { TCPSegment.minimumHeaderLength + (options.count + 3) / 4 * 4 }
    public var length: Int { headerLength + payloadLength }

    /// Writes the header at the start of `span`, with the checksum over the
    /// pseudo-header (`pseudoHeader`), the header and the payload that must
    /// already follow it. With `partialChecksum` the field holds only the
    /// pseudo-header's sum, for the device to finish (checksum offload), and
    /// the payload need not be there yet.
    public func emit(into span: inout MutableRawSpan, pseudoHeader: InternetChecksum, partialChecksum: Bool = false) {
        typealias F = TCPSegment.Field
        let headerLength = headerLength
        span.put(sourcePort, at: F.sourcePort)
        span.put(destinationPort, at: F.destinationPort)
        span.put(sequenceNumber, at: F.sequenceNumber)
        span.put(acknowledgmentNumber, at: F.acknowledgmentNumber)
        span.put(UInt16(headerLength / 4) << 12 | flags.rawValue, at: F.dataOffsetAndFlags)
        span.put(window, at: F.window)
        span.put(UInt16(0), at: F.checksum)
        span.put(urgentPointer, at: F.urgentPointer)
        options.write(to: &span, at: F.options)
        span.zero(from: F.options + options.count, count: headerLength - F.options - options.count)
        if partialChecksum {
            span.put(pseudoHeader.partialValue, at: F.checksum)
            return
        }
        var checksum = pseudoHeader
        checksum.add(span.bytes.extracting(0..<length))
        span.put(checksum.value, at: F.checksum)
    }

    public func emit(into span: inout MutableRawSpan, source: IPv4Address, destination: IPv4Address) {
        var pseudo = InternetChecksum()
        pseudo.addPseudoHeader(source: source, destination: destination, protocol: .tcp, length: length)
        emit(into: &span, pseudoHeader: pseudo)
    }

    public func emit(into span: inout MutableRawSpan, source: IPv6Address, destination: IPv6Address) {
        var pseudo = InternetChecksum()
        pseudo.addPseudoHeader(source: source, destination: destination, protocol: .tcp, length: length)
        emit(into: &span, pseudoHeader: pseudo)
    }
}
