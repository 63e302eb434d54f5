import NetstackCore
import NetstackWire

/// What the kernel does at its end of a TAP opened with a virtio-net header,
/// done in software, so that a stack with `LinkOffloads.virtio` can be
/// tested against a plain one:
///
/// - frames the stack sends are finished the way the kernel finishes them:
///   a large TCP segment is cut into `segmentSize` pieces (TSO/GSO, as
///   Linux's `tcp_gso_segment`), and partial checksums are completed;
/// - frames for the stack get a virtio header, and in-order TCP segments of
///   one flow that arrive together are merged into one large segment with a
///   partial checksum (GRO, as the kernel hands them to a TAP reader).
public enum VirtioLink {
    // MARK: From the stack: segment and finish

    /// The plain frames one frame from the stack (header first) stands for.
    public static func finish(_ bytes: [UInt8]) -> [[UInt8]] {
        let header = try! bytes.withSpan { try VirtioNetHeader($0) }
        var frame = Array(bytes[VirtioNetHeader.length...])
        if header.segmentation == .none {
            if header.flags.contains(.needsChecksum) {
                completeChecksum(&frame, start: Int(header.checksumStart), offset: Int(header.checksumOffset))
            }
            return [frame]
        }
        precondition(header.segmentation == .tcpv4 || header.segmentation == .tcpv6, "only TCP segmentation here")
        return segmentTCP(frame, segmentSize: Int(header.segmentSize), v4: header.segmentation == .tcpv4)
    }

    /// Finishes a partial checksum: the field holds the pseudo-header's sum;
    /// sum everything from `start` and store the complement at `offset`.
    static func completeChecksum(_ frame: inout [UInt8], start: Int, offset: Int) {
        let value = frame.withSpan { InternetChecksum.compute($0.extracting(start...)) }
        frame[start + offset] = UInt8(value >> 8)
        frame[start + offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    private static func segmentTCP(_ frame: [UInt8], segmentSize: Int, v4: Bool) -> [[UInt8]] {
        let ipStart = EthernetFrame.headerLength
        let ipHeaderLength = v4 ? Int(frame[ipStart] & 0x0f) * 4 : IPv6Packet.headerLength
        let tcpStart = ipStart + ipHeaderLength
        let tcpHeaderLength = Int(frame[tcpStart + 12] >> 4) * 4
        let payloadStart = tcpStart + tcpHeaderLength
        let payload = frame[payloadStart...]
        let sequence = read32(frame, tcpStart + 4)
        let flags = frame[tcpStart + 13]
        let identification = v4 ? read16(frame, ipStart + 4) : 0
        var segments: [[UInt8]] = []
        var offset = 0
        while offset < payload.count {
            let chunk = min(segmentSize, payload.count - offset)
            let last = offset + chunk == payload.count
            var segment = Array(frame[0..<payloadStart])
            segment += payload[(payload.startIndex + offset)..<(payload.startIndex + offset + chunk)]
            let ipLength = ipHeaderLength + tcpHeaderLength + chunk
            if v4 {
                write16(&segment, ipStart + 2, UInt16(ipLength))
                write16(&segment, ipStart + 4, identification &+ UInt16(truncatingIfNeeded: segments.count))
                write16(&segment, ipStart + 10, 0)
                let checksum = segment.withSpan { InternetChecksum.compute($0.extracting(ipStart..<tcpStart)) }
                write16(&segment, ipStart + 10, checksum)
            } else {
                write16(&segment, ipStart + 4, UInt16(ipLength - IPv6Packet.headerLength))
            }
            write32(&segment, tcpStart + 4, sequence &+ UInt32(offset))
            // FIN and PSH on the last segment only, CWR on the first only.
            var segmentFlags = flags
            if !last { segmentFlags &= ~(0x01 | 0x08) }
            if offset > 0 { segmentFlags &= ~0x80 }
            segment[tcpStart + 13] = segmentFlags
            write16(&segment, tcpStart + 16, 0)
            let checksum = segment.withSpan { span in
                var sum = pseudoHeader(span, v4: v4, tcpLength: tcpHeaderLength + chunk)
                sum.add(span.extracting(tcpStart...))
                return sum.value
            }
            write16(&segment, tcpStart + 16, checksum)
            segments.append(segment)
            offset += chunk
        }
        return segments
    }

    // MARK: To the stack: header and merge

    /// The frames for the stack, each with a virtio header: consecutive
    /// in-order TCP data segments of one connection are merged (up to 64 KiB)
    /// into one large segment with a partial checksum.
    public static func deliver(_ frames: [[UInt8]]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var pending: Merge?
        func flush() {
            if let merge = pending { out.append(merge.frame()) }
            pending = nil
        }
        for frame in frames {
            if let candidate = Merge(frame) {
                if pending?.absorb(candidate) == true { continue }
                flush()
                pending = candidate
            } else {
                flush()
                out.append([UInt8](repeating: 0, count: VirtioNetHeader.length) + frame)
            }
        }
        flush()
        return out
    }

    /// A run of TCP data segments being merged.
    private struct Merge {
        var headers: [UInt8]
        var payload: [UInt8]
        var segmentSize: Int
        var segments = 1
        let v4: Bool
        let tcpStart: Int

        /// A TCP segment with data and only ACK (and PSH) set, else nil.
        init?(_ frame: [UInt8]) {
            guard frame.count > EthernetFrame.headerLength + 20 else { return nil }
            let etherType = read16(frame, 12)
            guard etherType == 0x0800 || etherType == 0x86dd else { return nil }
            v4 = etherType == 0x0800
            let ipStart = EthernetFrame.headerLength
            let ipHeaderLength: Int
            if v4 {
                guard frame[ipStart + 9] == 6, read16(frame, ipStart + 6) & 0x3fff == 0 else { return nil }
                ipHeaderLength = Int(frame[ipStart] & 0x0f) * 4
            } else {
                guard frame[ipStart + 6] == 6 else { return nil }
                ipHeaderLength = IPv6Packet.headerLength
            }
            tcpStart = ipStart + ipHeaderLength
            guard frame.count >= tcpStart + 20 else { return nil }
            let flags = frame[tcpStart + 13]
            guard flags & ~0x08 == 0x10 else { return nil }
            let payloadStart = tcpStart + Int(frame[tcpStart + 12] >> 4) * 4
            guard payloadStart < frame.count else { return nil }
            headers = Array(frame[0..<payloadStart])
            payload = Array(frame[payloadStart...])
            segmentSize = payload.count
        }

        var sequence: UInt32 { read32(headers, tcpStart + 4) }

        /// Appends `next` if it continues this run: same flow, same headers
        /// but for lengths, identification, sequence and checksums, full-sized
        /// before it, room left, no PSH yet.
        mutating func absorb(_ next: Merge) -> Bool {
            guard next.v4 == v4, next.headers.count == headers.count, payload.count % segmentSize == 0,
                  next.payload.count <= segmentSize, headers[tcpStart + 13] & 0x08 == 0,
                  next.sequence == sequence &+ UInt32(payload.count),
                  headers.count + payload.count + next.payload.count <= 65_000 else { return false }
            // Ports, addresses, ACK number, window and options must agree.
            let ipStart = EthernetFrame.headerLength
            let addresses = v4 ? (ipStart + 12)..<(ipStart + 20) : (ipStart + 8)..<(ipStart + 40)
            guard headers[addresses] == next.headers[addresses],
                  headers[tcpStart..<(tcpStart + 4)] == next.headers[tcpStart..<(tcpStart + 4)],
                  headers[(tcpStart + 8)..<(tcpStart + 16)] == next.headers[(tcpStart + 8)..<(tcpStart + 16)],
                  headers[(tcpStart + 20)...] == next.headers[(tcpStart + 20)...] else { return false }
            payload += next.payload
            headers[tcpStart + 13] = next.headers[tcpStart + 13]
            segments += 1
            return true
        }

        /// The frame, with a virtio header: segmented and partial when merged.
        func frame() -> [UInt8] {
            var frame = headers + payload
            let ipStart = EthernetFrame.headerLength
            let ipHeaderLength = tcpStart - ipStart
            let tcpLength = frame.count - tcpStart
            if v4 {
                write16(&frame, ipStart + 2, UInt16(ipHeaderLength + tcpLength))
                write16(&frame, ipStart + 10, 0)
                let checksum = frame.withSpan { InternetChecksum.compute($0.extracting(ipStart..<tcpStart)) }
                write16(&frame, ipStart + 10, checksum)
            } else {
                write16(&frame, ipStart + 4, UInt16(tcpLength))
            }
            let partial = frame.withSpan { pseudoHeader($0, v4: v4, tcpLength: tcpLength).partialValue }
            write16(&frame, tcpStart + 16, partial)
            var header = VirtioNetHeader(flags: .needsChecksum, checksumStart: UInt16(tcpStart), checksumOffset: 16)
            if segments > 1 {
                header.segmentation = v4 ? .tcpv4 : .tcpv6
                header.segmentSize = UInt16(segmentSize)
                header.headerLength = UInt16(headers.count)
            }
            var bytes = [UInt8](repeating: 0, count: VirtioNetHeader.length)
            bytes.withMutableBytes { header.emit(into: &$0) }
            return bytes + frame
        }
    }

    // MARK: Helpers

    static func pseudoHeader(_ frame: RawSpan, v4: Bool, tcpLength: Int) -> InternetChecksum {
        var sum = InternetChecksum()
        let ipStart = EthernetFrame.headerLength
        if v4 {
            sum.add(frame.extracting((ipStart + 12)..<(ipStart + 20)))
        } else {
            sum.add(frame.extracting((ipStart + 8)..<(ipStart + 40)))
        }
        sum.add(UInt16(6))
        sum.add(UInt32(tcpLength))
        return sum
    }
}

func read16(_ bytes: [UInt8], _ offset: Int) -> UInt16 { UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]) }
func read32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    UInt32(read16(bytes, offset)) << 16 | UInt32(read16(bytes, offset + 2))
}
func write16(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt16) {
    bytes[offset] = UInt8(value >> 8)
    bytes[offset + 1] = UInt8(truncatingIfNeeded: value)
}
func write32(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt32) {
    write16(&bytes, offset, UInt16(value >> 16))
    write16(&bytes, offset + 2, UInt16(truncatingIfNeeded: value))
}
