/// A 48-bit IEEE 802 MAC address, stored in the low bits of an integer so that
/// comparing and hashing are one machine operation.
public struct MACAddress: Hashable, Sendable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    /// The address as a number: the first byte on the wire is bits 40...47.
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue & 0xffff_ffff_ffff
    }

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        self.init(rawValue: UInt64(b0) << 40 | UInt64(b1) << 32 | UInt64(b2) << 24
            | UInt64(b3) << 16 | UInt64(b4) << 8 | UInt64(b5))
    }

    /// Reads six bytes at `offset`.
    /// Reads the address in wire order at `offset` of `bytes`.
    public init(_ bytes: RawSpan, at offset: Int) {
        self.init(rawValue: UInt64(bytes.u16(offset)) << 32 | UInt64(bytes.u32(offset + 2)))
    }

    /// Parses `"02:00:00:00:00:01"` (colons or dashes, one or two hex digits each).
    public init?(_ text: String) {
        var parts = text.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 1 {
            parts = text.split(separator: "-", omittingEmptySubsequences: false)
        }
        guard parts.count == 6 else { return nil }
        var value: UInt64 = 0
        for part in parts {
            guard (1...2).contains(part.count), let byte = UInt8(part, radix: 16) else { return nil }
            value = value << 8 | UInt64(byte)
        }
        self.init(rawValue: value)
    }

    public static let broadcast = MACAddress(rawValue: 0xffff_ffff_ffff)
    public static let zero = MACAddress(rawValue: 0)

    /// The i-th byte (0...5) in wire order.
    public subscript(byte index: Int) -> UInt8 {
        precondition((0..<6).contains(index))
        return UInt8(truncatingIfNeeded: rawValue >> UInt64(40 - 8 * index))
    }

    public var isBroadcast: Bool { rawValue == 0xffff_ffff_ffff }
    /// The I/G bit: group (multicast or broadcast) addresses.
    public var isMulticast: Bool { self[byte: 0] & 1 == 1 }
    public var isUnicast: Bool { !isMulticast }

    /// The Ethernet address an IPv6 multicast group maps to (RFC 2464 §7).
    public init(ipv6Multicast group: IPv6Address) {
        self.init(rawValue: 0x3333_0000_0000 | (group.low & 0xffff_ffff))
    }

    /// The Ethernet address an IPv4 multicast group maps to (RFC 1112 §6.4).
    public init(ipv4Multicast group: IPv4Address) {
        self.init(rawValue: 0x0100_5e00_0000 | UInt64(group.rawValue & 0x7f_ffff))
    }

    /// Writes the address in wire order at `offset` of `span`.
    public func write(to span: inout MutableRawSpan, at offset: Int) {
        span.put(UInt16(truncatingIfNeeded: rawValue >> 32), at: offset)
        span.put(UInt32(truncatingIfNeeded: rawValue), at: offset + 2)
    }

    public var description: String {
        (0..<6).map { index in
            let hex = String(self[byte: index], radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }

    public static func < (a: MACAddress, b: MACAddress) -> Bool { a.rawValue < b.rawValue }
}

/// An IPv4 address, stored as its 32-bit number (first byte on the wire in the
/// top bits).
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    public let rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        rawValue = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Reads the address in wire order at `offset` of `bytes`.
    public init(_ bytes: RawSpan, at offset: Int) {
        rawValue = bytes.u32(offset)
    }

    /// Parses dotted-quad text: exactly four decimal parts 0...255, no leading
    /// zeros (which some parsers read as octal).
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy(\.isASCII),
                  part.count == 1 || part.first != "0",
                  let byte = UInt8(part, radix: 10) else { return nil }
            value = value << 8 | UInt32(byte)
        }
        rawValue = value
    }

    public static let any = IPv4Address(rawValue: 0)
    public static let broadcast = IPv4Address(rawValue: 0xffff_ffff)

    public var isUnspecified: Bool { rawValue == 0 }
    public var isBroadcast: Bool { rawValue == 0xffff_ffff }
    /// 224.0.0.0/4 (RFC 5771).
    public var isMulticast: Bool { rawValue >> 28 == 0xe }
    /// 127.0.0.0/8.
    public var isLoopback: Bool { rawValue >> 24 == 127 }
    /// 169.254.0.0/16 (RFC 3927).
    public var isLinkLocal: Bool { rawValue >> 16 == 0xa9fe }

    /// Writes the address in wire order at `offset` of `span`.
    public func write(to span: inout MutableRawSpan, at offset: Int) {
        span.put(rawValue, at: offset)
    }

    public var description: String {
        "\(rawValue >> 24).\(rawValue >> 16 & 0xff).\(rawValue >> 8 & 0xff).\(rawValue & 0xff)"
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.rawValue < b.rawValue }
}

/// An IPv6 address as two 64-bit halves (the first byte on the wire is the top
/// byte of `high`).
public struct IPv6Address: Hashable, Sendable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Builds an address from its eight 16-bit groups.
    public init(_ g0: UInt16, _ g1: UInt16, _ g2: UInt16, _ g3: UInt16,
                _ g4: UInt16, _ g5: UInt16, _ g6: UInt16, _ g7: UInt16) {
        high = UInt64(g0) << 48 | UInt64(g1) << 32 | UInt64(g2) << 16 | UInt64(g3)
        low = UInt64(g4) << 48 | UInt64(g5) << 32 | UInt64(g6) << 16 | UInt64(g7)
    }

    /// Reads the address in wire order at `offset` of `bytes`.
    public init(_ bytes: RawSpan, at offset: Int) {
        high = bytes.u64(offset)
        low = bytes.u64(offset + 8)
    }

    /// The i-th 16-bit group (0...7).
    public subscript(group index: Int) -> UInt16 {
        precondition((0..<8).contains(index))
        let half = index < 4 ? high : low
        return UInt16(truncatingIfNeeded: half >> UInt64(48 - 16 * (index % 4)))
    }

    /// The i-th byte (0...15) in wire order.
    public subscript(byte index: Int) -> UInt8 {
        precondition((0..<16).contains(index))
        let half = index < 8 ? high : low
        return UInt8(truncatingIfNeeded: half >> UInt64(56 - 8 * (index % 8)))
    }

    /// Parses the text forms of RFC 4291 §2.2: eight groups, `::` compression,
    /// and a trailing dotted-quad IPv4 part.
    public init?(_ text: String) {
        guard !text.isEmpty, text.allSatisfy(\.isASCII) else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawDoubleColon = false
        let halves = text.split(separator: "::", omittingEmptySubsequences: false).map(String.init)
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String, allowIPv4: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            var result: [UInt16] = []
            for (i, piece) in pieces.enumerated() {
                if allowIPv4, i == pieces.count - 1, piece.contains(".") {
                    guard let v4 = IPv4Address(String(piece)) else { return nil }
                    result.append(UInt16(v4.rawValue >> 16))
                    result.append(UInt16(v4.rawValue & 0xffff))
                } else {
                    guard (1...4).contains(piece.count), let g = UInt16(piece, radix: 16) else { return nil }
                    result.append(g)
                }
            }
            return result
        }
        if halves.count == 2 {
            sawDoubleColon = true
            guard let h = groups(halves[0], allowIPv4: false), let t = groups(halves[1], allowIPv4: true) else {
                return nil
            }
            head = h
            tail = t
            guard head.count + tail.count <= 7 else { return nil }
        } else {
            guard let h = groups(halves[0], allowIPv4: true), h.count == 8 else { return nil }
            head = h
        }
        var all = head
        if sawDoubleColon {
            all += Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        self.init(all[0], all[1], all[2], all[3], all[4], all[5], all[6], all[7])
    }

    public static let unspecified = IPv6Address(high: 0, low: 0)
    public static let loopback = IPv6Address(high: 0, low: 1)
    /// ff02::1, all nodes on the link.
    public static let allNodes = IPv6Address(0xff02, 0, 0, 0, 0, 0, 0, 1)
    /// ff02::2, all routers on the link.
    public static let allRouters = IPv6Address(0xff02, 0, 0, 0, 0, 0, 0, 2)

    public var isUnspecified: Bool { high == 0 && low == 0 }
    public var isLoopback: Bool { high == 0 && low == 1 }
    /// ff00::/8.
    public var isMulticast: Bool { high >> 56 == 0xff }
    /// ::ffff:0:0/96, an IPv4 address in IPv6 form (RFC 4291 §2.5.5.2).
    public var isIPv4Mapped: Bool { high == 0 && low >> 32 == 0xffff }
    /// fe80::/10.
    public var isLinkLocal: Bool { high >> 54 == 0xfe80 >> 6 }
    /// The multicast scope field (RFC 4291 §2.7), for multicast addresses.
    public var multicastScope: UInt8 { UInt8(truncatingIfNeeded: high >> 48) & 0x0f }

    /// The solicited-node multicast group of this address (RFC 4291 §2.7.1):
    /// ff02::1:ffXX:XXXX with the low 24 bits of the address.
    public var solicitedNodeMulticast: IPv6Address {
        IPv6Address(high: 0xff02_0000_0000_0000, low: 0x0000_0001_ff00_0000 | (low & 0xff_ffff))
    }

    /// The link-local address with the modified EUI-64 interface identifier
    /// derived from `mac` (RFC 4291 appendix A, RFC 4862 §5.3).
    public static func linkLocal(eui64 mac: MACAddress) -> IPv6Address {
        IPv6Address(high: 0xfe80_0000_0000_0000, low: interfaceIdentifier(eui64: mac))
    }

    /// The modified EUI-64 interface identifier of `mac`: ff:fe inserted in the
    /// middle and the universal/local bit inverted.
    public static func interfaceIdentifier(eui64 mac: MACAddress) -> UInt64 {
        let upper = mac.rawValue >> 24
        let lower = mac.rawValue & 0xff_ffff
        return (upper << 40 | 0xff_fe00_0000 | lower) ^ 0x0200_0000_0000_0000
    }

    /// Writes the address in wire order at `offset` of `span`.
    public func write(to span: inout MutableRawSpan, at offset: Int) {
        span.put(high, at: offset)
        span.put(low, at: offset + 8)
    }

    /// The canonical text form of RFC 5952: lower case, no leading zeros, the
    /// longest run (leftmost on ties) of two or more zero groups as `::`.
    public var description: String {
        let groups = (0..<8).map { self[group: $0] }
        var bestStart = -1, bestLength = 0
        var i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLength {
                    bestStart = i
                    bestLength = j - i
                }
                i = j
            } else {
                i += 1
            }
        }
        if bestLength < 2 { bestStart = -1 }
        var text = ""
        i = 0
        while i < 8 {
            if i == bestStart {
                text += "::"
                i += bestLength
                continue
            }
            if !text.isEmpty && !text.hasSuffix(":") { text += ":" }
            text += String(groups[i], radix: 16)
            i += 1
        }
        return text
    }

    public static func < (a: IPv6Address, b: IPv6Address) -> Bool {
        (a.high, a.low) < (b.high, b.low)
    }
}
