/// A pcap file or filter operation that failed, with libpcap's own message.
public enum PcapError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file could not be opened or is not a capture file.
    case open(path: String, message: String)
    /// The BPF filter expression did not compile.
    case filter(expression: String, message: String)
    /// Reading a record failed (a truncated or corrupt file).
    case read(path: String, message: String)
    /// Writing failed.
    case write(path: String, message: String)

    public var description: String {
        switch self {
        case .open(let path, let message): "\(path): cannot open capture: \(message)"
        case .filter(let expression, let message): "bad filter \"\(expression)\": \(message)"
        case .read(let path, let message): "\(path): cannot read capture: \(message)"
        case .write(let path, let message): "\(path): cannot write capture: \(message)"
        }
    }
}

/// A capture timestamp: seconds and nanoseconds since the Unix epoch.
public struct PcapTimestamp: Hashable, Sendable, Comparable {
    public var seconds: Int64
    public var nanoseconds: Int32

    public init(seconds: Int64, nanoseconds: Int32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public init(totalNanoseconds: Int64) {
        seconds = totalNanoseconds / 1_000_000_000
        nanoseconds = Int32(totalNanoseconds % 1_000_000_000)
    }

    public var totalNanoseconds: Int64 { seconds * 1_000_000_000 + Int64(nanoseconds) }

    public static func < (a: PcapTimestamp, b: PcapTimestamp) -> Bool { a.totalNanoseconds < b.totalNanoseconds }
}

/// Timestamp resolution of a capture file.
public enum PcapPrecision: Sendable, Hashable {
    case microsecond
    case nanosecond
}
