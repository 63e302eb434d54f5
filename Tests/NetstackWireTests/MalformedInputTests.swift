import NetstackIO
import NetstackTestSupport
import NetstackWire
import Testing

/// Cut and corrupted frames must give a typed error or a valid parse: never a
/// trap, never a read outside the bytes (run once under `--sanitize address`).
@Suite struct MalformedInputTests {
    /// Cutting a frame anywhere inside its network packet fails to parse (every
    /// layer's length field then points past the end); cutting only Ethernet
    /// padding parses to the same headers.
    @Test(arguments: Fixtures.all)
    func truncationAtEveryOffset(fixture: String) throws {
        for (index, record) in try Fixtures.frames(fixture).enumerated() {
            let full = try record.bytes.withSpan { try Dissection($0) }
            let packetEnd = record.bytes.count - full.trailerLength
            for cut in 0..<record.bytes.count {
                let result: Result<Dissection, WireError> = record.bytes.withSpan { bytes in
                    Result { () throws(WireError) in try Dissection(bytes.extracting(0..<cut)) }
                }
                if cut < packetEnd {
                    if case .success(let parsed) = result {
                        Issue.record("\(fixture) #\(index) cut at \(cut) of \(packetEnd) parsed: \(parsed)")
                    }
                } else {
                    #expect(try result.get().network == full.network, "\(fixture) #\(index) cut in padding")
                }
            }
        }
    }

    /// Flipping any header byte gives an error or a parse; where a checksum or a
    /// length covers the byte, it must be an error.
    @Test(arguments: Fixtures.all)
    func flippedHeaderBytes(fixture: String) throws {
        for (index, record) in try Fixtures.frames(fixture).enumerated() {
            let full = try record.bytes.withSpan { try Dissection($0) }
            let covered = Self.checkedBytes(full, frameLength: record.bytes.count)
            for position in 0..<full.payload.lowerBound {
                for pattern: UInt8 in [0xff, 0x01, 0x80] {
                    var corrupt = record.bytes
                    corrupt[position] ^= pattern
                    let result: Result<Dissection, WireError> = corrupt.withSpan { bytes in
                        Result { () throws(WireError) in try Dissection(bytes) }
                    }
                    guard covered.contains(position), case .success(let parsed) = result else { continue }
                    if Self.isZeroedUDPv4Checksum(parsed, corrupt, full) { continue }
                    Issue.record("\(fixture) #\(index): byte \(position) ^ \(pattern) went unnoticed: \(parsed)")
                }
            }
        }
    }

    /// The header bytes whose corruption a parser must notice: the whole IPv4
    /// header (its checksum), the IPv6 length and addresses (lengths and the
    /// pseudo-header), and transport headers of unfragmented packets. Nothing
    /// in a fragment beyond the IPv4 header is checked before reassembly.
    static func checkedBytes(_ d: Dissection, frameLength: Int) -> Set<Int> {
        let start = d.ethernet.headerLength
        var set = Set<Int>()
        var transportStart = start
        switch d.network {
        case .ipv4(let ip):
            set.formUnion(start..<(start + ip.headerLength))
            transportStart = start + ip.headerLength
        case .ipv6(_, let extensions):
            // Only a verified transport checksum (pseudo-header) covers these.
            if case .icmpv6 = d.transport { set.formUnion((start + 4)..<(start + 6)) }
            set.formUnion((start + 8)..<(start + 40))
            transportStart = start + 40 + extensions.reduce(0) { $0 + $1.bytes.count }
        case .arp, .other:
            return set
        }
        switch d.transport {
        case .icmpv4, .icmpv6, .udp, .tcp:
            set.formUnion(transportStart..<d.payload.lowerBound)
        default:
            if case .ipv6 = d.network { return [] }
        }
        return set
    }

    /// Over IPv4 a UDP checksum of zero means "none": a flip that zeroes the
    /// field legitimately parses.
    static func isZeroedUDPv4Checksum(_ parsed: Dissection, _ bytes: [UInt8], _ full: Dissection) -> Bool {
        guard case .ipv4 = parsed.network, case .udp = parsed.transport else { return false }
        let field = parsed.payload.lowerBound - 2
        return bytes[field] == 0 && bytes[field - 1] == 0
    }

    // Each length rule of each header, one at a time.

    @Test func ethernetTooShort() {
        #expect(throws: WireError(.ethernet, .truncated)) {
            try [UInt8](repeating: 0, count: 13).withSpan { _ = try EthernetFrame($0) }
        }
        var tagged = [UInt8](repeating: 0, count: 17)
        tagged[12] = 0x81
        #expect(throws: WireError(.ethernet, .truncated)) { try tagged.withSpan { _ = try EthernetFrame($0) } }
    }

    @Test func vlanTagIsRead() throws {
        var frame = [UInt8](repeating: 0, count: 60)
        frame[12] = 0x81; frame[13] = 0x00; frame[14] = 0xa0; frame[15] = 0x2a; frame[16] = 0x08; frame[17] = 0x06
        try frame.withSpan { bytes throws in
            let ethernet = try EthernetFrame(bytes)
            #expect(ethernet.vlan == VLANTag(priority: 5, identifier: 42))
            #expect(ethernet.etherType == .arp)
            #expect(ethernet.payload.byteCount == 42)
        }
    }

    @Test func ipv4LengthRules() {
        func parse(_ edit: (inout [UInt8]) -> Void) -> WireError? {
            var packet: [UInt8] = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
            edit(&packet)
            return packet.withSpan { bytes in
                do throws(WireError) { _ = try IPv4Packet(bytes); return nil } catch { return error }
            }
        }
        #expect(parse { _ in } == nil)
        #expect(parse { $0.removeLast() } == WireError(.ipv4, .truncated))
        #expect(parse { $0[0] = 0x65 } == WireError(.ipv4, .badVersion))
        #expect(parse { $0[0] = 0x44 } == WireError(.ipv4, .badHeaderLength))
        #expect(parse { $0[0] = 0x46 } == WireError(.ipv4, .badLength), "IHL 24 > total length 20")
        #expect(parse { $0[0] = 0x4f; $0[3] = 60 } == WireError(.ipv4, .truncated))
        #expect(parse { $0[3] = 19 } == WireError(.ipv4, .badLength))
        #expect(parse { $0[3] = 21 } == WireError(.ipv4, .truncated))
        // Options (RFC 791 §3.1): each must end inside the header.
        func options(_ bytes: [UInt8]) -> WireError? {
            parse { packet in
                packet[0] = 0x45 + UInt8(bytes.count / 4)
                packet[3] = UInt8(20 + bytes.count)
                packet.insert(contentsOf: bytes, at: 20)
            }
        }
        #expect(options([1, 1, 1, 0]) == nil, "no-operations and the end of the list")
        #expect(options([7, 3, 4, 0]) == nil, "record route, 3 bytes")
        #expect(options([7, 40, 4, 0]) == WireError(.ipv4, .badOption), "longer than the header")
        #expect(options([7, 1, 0, 0]) == WireError(.ipv4, .badOption), "a length under 2")
        #expect(options([1, 1, 1, 7]) == WireError(.ipv4, .badOption), "a kind with no length byte")
    }

    @Test func ipv6ExtensionHeaderRules() throws {
        // 40-byte header + 8-byte hop-by-hop header whose length byte claims 16.
        var packet = [UInt8](repeating: 0, count: 48)
        packet[0] = 0x60; packet[5] = 8; packet[6] = 0 // payload 8, next header hop-by-hop
        packet[40] = 59; packet[41] = 1
        try packet.withSpan { bytes throws in
            let ip = try IPv6Packet(bytes)
            #expect(throws: WireError(.ipv6Extension, .truncated)) { _ = try ip.extensionHeader(.hopByHopOptions, at: 40) }
        }
        // A PadN option running past the end of its header.
        packet[41] = 0; packet[42] = 1; packet[43] = 9
        try packet.withSpan { bytes throws in
            let ip = try IPv6Packet(bytes)
            let header = try ip.extensionHeader(.hopByHopOptions, at: 40)
            #expect(throws: WireError(.ipv6Extension, .badOption)) { try header.forEachOption { _ in } }
        }
        // A well-formed one: PadN of 4 data bytes, then nothing follows.
        packet[43] = 4
        try packet.withSpan { bytes throws in
            let ip = try IPv6Packet(bytes)
            let header = try ip.extensionHeader(.hopByHopOptions, at: 40)
            var options: [IPv6Option] = []
            try header.forEachOption { options.append($0) }
            #expect(options == [IPv6Option(type: 1, offset: 2, dataLength: 4)])
            #expect(header.nextHeader == .noNextHeader)
        }
    }

    @Test func udpLengthRules() {
        func parse(_ length: UInt16, bytes count: Int) -> WireError? {
            var datagram = [UInt8](repeating: 0, count: count)
            if count >= 6 { datagram[4] = UInt8(length >> 8); datagram[5] = UInt8(length & 0xff) }
            return datagram.withSpan { bytes in
                do throws(WireError) { _ = try UDPDatagram(bytes); return nil } catch { return error }
            }
        }
        #expect(parse(8, bytes: 8) == nil)
        #expect(parse(8, bytes: 7) == WireError(.udp, .truncated))
        #expect(parse(7, bytes: 8) == WireError(.udp, .badLength))
        #expect(parse(9, bytes: 8) == WireError(.udp, .truncated))
    }

    @Test func tcpHeaderAndOptionRules() throws {
        var segment = [UInt8](repeating: 0, count: 24)
        segment[12] = 0x40
        #expect(throws: WireError(.tcp, .badHeaderLength)) { try segment.withSpan { _ = try TCPSegment($0) } }
        segment[12] = 0x70
        #expect(throws: WireError(.tcp, .truncated)) { try segment.withSpan { _ = try TCPSegment($0) } }
        func options(_ bytes: [UInt8]) throws(WireError) -> [TCPOption] {
            var list: [TCPOption] = []
            try bytes.withSpan { span throws(WireError) in try TCPOption.forEach(in: span) { list.append($0) } }
            return list
        }
        #expect(throws: WireError(.tcpOption, .badOption)) { try options([2, 0, 0, 0]) }   // length 0
        #expect(throws: WireError(.tcpOption, .badOption)) { try options([2, 1, 0, 0]) }   // length 1
        #expect(throws: WireError(.tcpOption, .badOption)) { try options([8, 10, 0, 0]) }  // runs past the end
        #expect(throws: WireError(.tcpOption, .badOption)) { try options([1, 1, 1, 2]) }   // kind without length
        #expect(try options([2, 3, 5, 1]) == [.unknown(kind: 2, length: 3), .noOperation], "MSS of wrong length")
        #expect(try options([1, 0, 2, 0]) == [.noOperation, .endOfList], "nothing read after end-of-list")
    }

    @Test func ndpOptionRules() throws {
        func walk(_ bytes: [UInt8]) throws(WireError) -> [NDPOption] {
            var list: [NDPOption] = []
            try bytes.withSpan { span throws(WireError) in try NDPOption.forEach(in: span) { list.append($0) } }
            return list
        }
        #expect(throws: WireError(.ndpOption, .badOption)) { try walk([1, 0, 0, 0, 0, 0, 0, 0]) }
        #expect(throws: WireError(.ndpOption, .truncated)) { try walk([1, 2, 0, 0, 0, 0, 0, 0]) }
        #expect(throws: WireError(.ndpOption, .truncated)) { try walk([1]) }
        #expect(try walk([1, 1, 2, 0, 0, 0, 0, 1]) == [.sourceLinkLayerAddress(MACAddress(2, 0, 0, 0, 0, 1))])
    }

    @Test func ndpMessagesNeedCodeZeroAndFullLength() {
        func parse(_ bytes: [UInt8]) throws(WireError) -> ICMPv6Message {
            try bytes.withSpan { span throws(WireError) in try ICMPv6Message(ICMPv6Packet(span)) }
        }
        var ns = [UInt8](repeating: 0, count: 24)
        ns[0] = ICMPv6Type.neighborSolicitation
        #expect(throws: Never.self) { try parse(ns) }
        #expect(throws: WireError(.icmpv6, .truncated)) { try parse(Array(ns.prefix(23))) }
        ns[1] = 1
        #expect(throws: WireError(.icmpv6, .badValue)) { try parse(ns) }
    }

    @Test func arpRejectsOtherHardware() {
        var arp = [UInt8](repeating: 0, count: 28)
        arp[1] = 6 // IEEE 802 hardware type
        arp[2] = 0x08; arp[4] = 6; arp[5] = 4
        #expect(throws: WireError(.arp, .badValue)) { try arp.withSpan { _ = try ARPPacket($0) } }
        #expect(throws: WireError(.arp, .truncated)) { try Array(arp.prefix(27)).withSpan { _ = try ARPPacket($0) } }
    }
}
