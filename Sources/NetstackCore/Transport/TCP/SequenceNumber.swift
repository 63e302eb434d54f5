/// A TCP sequence number: 32 bits that wrap, compared modulo 2^32 (RFC 9293
/// §3.4: `a < b` means `b` is ahead of `a` by less than 2^31).
public struct SequenceNumber: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    public static func + (a: SequenceNumber, b: Int) -> SequenceNumber {
        SequenceNumber(a.rawValue &+ UInt32(truncatingIfNeeded: b))
    }

    public static func - (a: SequenceNumber, b: Int) -> SequenceNumber {
        SequenceNumber(a.rawValue &- UInt32(truncatingIfNeeded: b))
    }

    /// How far `a` is ahead of `b` (negative when behind).
    public static func - (a: SequenceNumber, b: SequenceNumber) -> Int {
        Int(Int32(bitPattern: a.rawValue &- b.rawValue))
    }

    public static func += (a: inout SequenceNumber, b: Int) { a = a + b }

    public static func < (a: SequenceNumber, b: SequenceNumber) -> Bool { a - b < 0 }

    public var description: String { "\(rawValue)" }
}

/// Whether `value` lies in `[low, high)` modulo 2^32.
@inline(__always)
func within(_ value: SequenceNumber, from low: SequenceNumber, to high: SequenceNumber) -> Bool {
    value - low >= 0 && high - value > 0
}
