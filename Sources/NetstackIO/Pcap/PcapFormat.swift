/// The two capture file formats a capture can be written in. Both are what
/// tcpdump, Wireshark and libpcap read.
public enum CaptureFormat: String, Sendable, Hashable, CaseIterable {
    /// The classic libpcap format: one file header, then a record per frame.
    case pcap
    /// pcapng: a section and an interface description, then an enhanced
    /// packet block per frame, which also says the frame's direction.
    case pcapng
}

/// Which way a captured frame went, seen from the stack.
public enum CaptureDirection: UInt8, Sendable, Hashable {
    case received = 1
    case sent = 2
}

/// Encodes Ethernet captures byte by byte, in either format, into a buffer
/// that the caller writes wherever it likes (a file, a pipe, a socket).
/// Little-endian, as libpcap writes on this machine's architecture.
public struct PcapEncoder: Sendable, Hashable {
    public let format: CaptureFormat
    public let precision: PcapPrecision
    public let snapshotLength: Int

    public init(format: CaptureFormat = .pcap, precision: PcapPrecision = .microsecond, snapshotLength: Int = 262_144) {
        self.format = format
        self.precision = precision
        self.snapshotLength = snapshotLength
    }

    /// What a file or stream starts with.
    public func header() -> [UInt8] {
        var out: [UInt8] = []
        switch format {
        case .pcap:
            // Magic (a1b2c3d4 for microseconds, a1b23c4d for nanoseconds),
            // version 2.4, zone and accuracy 0, snapshot length, Ethernet.
            Self.u32(precision == .nanosecond ? 0xA1B2_3C4D : 0xA1B2_C3D4, &out)
            Self.u16(2, &out)
            Self.u16(4, &out)
            Self.u32(0, &out)
            Self.u32(0, &out)
            Self.u32(UInt32(snapshotLength), &out)
            Self.u32(1, &out)
        case .pcapng:
            // Section header block: type, length, byte-order magic, version
            // 1.0, section length unknown (-1), no options, length again.
            Self.u32(0x0A0D_0D0A, &out)
            Self.u32(28, &out)
            Self.u32(0x1A2B_3C4D, &out)
            Self.u16(1, &out)
            Self.u16(0, &out)
            Self.u32(0xFFFF_FFFF, &out)
            Self.u32(0xFFFF_FFFF, &out)
            Self.u32(28, &out)
            // Interface description block: Ethernet, the snapshot length and
            // the timestamp resolution option (if_tsresol, code 9: 10^-6 or
            // 10^-9 seconds), then the end of options.
            Self.u32(1, &out)
            Self.u32(32, &out)
            Self.u16(1, &out)
            Self.u16(0, &out)
            Self.u32(UInt32(snapshotLength), &out)
            Self.u16(9, &out)
            Self.u16(1, &out)
            out += [precision == .nanosecond ? 9 : 6, 0, 0, 0]
            Self.u32(0, &out)
            Self.u32(32, &out)
        }
        return out
    }

    /// How many bytes `append` adds for a frame of `length` bytes, at most.
    public func recordSize(_ length: Int) -> Int {
        let captured = min(length, snapshotLength)
        switch format {
        case .pcap: return 16 + captured
        case .pcapng: return 32 + ((captured + 3) & ~3) + 12
        }
    }

    /// Appends one frame's record to `out`.
    public func append(_ frame: UnsafeRawBufferPointer, timestamp: PcapTimestamp, direction: CaptureDirection?,
                       to out: inout [UInt8]) {
        let captured = min(frame.count, snapshotLength)
        let fraction = precision == .nanosecond ? UInt64(timestamp.nanoseconds) : UInt64(timestamp.nanoseconds / 1000)
        switch format {
        case .pcap:
            Self.u32(UInt32(truncatingIfNeeded: timestamp.seconds), &out)
            Self.u32(UInt32(fraction), &out)
            Self.u32(UInt32(captured), &out)
            Self.u32(UInt32(frame.count), &out)
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: frame[0..<captured]))
        case .pcapng:
            // Enhanced packet block: interface 0, a 64-bit timestamp in the
            // interface's units, lengths, the data padded to 4 bytes, then
            // the epb_flags option (code 2) with the direction (1 inbound,
            // 2 outbound), the end of options, and the length again.
            let padded = (captured + 3) & ~3
            let options = direction == nil ? 4 : 12
            let total = UInt32(28 + padded + options + 4)
            let units = UInt64(timestamp.seconds) * (precision == .nanosecond ? 1_000_000_000 : 1_000_000) + fraction
            Self.u32(6, &out)
            Self.u32(total, &out)
            Self.u32(0, &out)
            Self.u32(UInt32(truncatingIfNeeded: units >> 32), &out)
            Self.u32(UInt32(truncatingIfNeeded: units), &out)
            Self.u32(UInt32(captured), &out)
            Self.u32(UInt32(frame.count), &out)
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: frame[0..<captured]))
            out.append(contentsOf: repeatElement(0, count: padded - captured))
            if let direction {
                Self.u16(2, &out)
                Self.u16(4, &out)
                Self.u32(UInt32(direction.rawValue), &out)
            }
            Self.u32(0, &out)
            Self.u32(total, &out)
        }
    }

    private static func u16(_ value: UInt16, _ out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: value))
        out.append(UInt8(truncatingIfNeeded: value >> 8))
    }

    private static func u32(_ value: UInt32, _ out: inout [UInt8]) {
        for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }
}
