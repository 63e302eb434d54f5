import NetstackIO
import NetstackTestSupport
import NetstackWire
import Testing

@Suite struct FixtureParseTests {
    /// Every frame parses through every layer with checksums verified, and
    /// emitting its header values around its payload gives back its bytes.
    @Test(arguments: Fixtures.all)
    func everyFrameParsesAndReemitsExactly(fixture: String) throws {
        let frames = try Fixtures.frames(fixture)
        #expect(frames.count > 0)
        for (index, record) in frames.enumerated() {
            #expect(record.bytes.count == record.originalLength, "\(fixture) #\(index) was cut by the snap length")
            let dissection = try record.bytes.withSpan { try Dissection($0) }
            if case .other = dissection.network { Issue.record("\(fixture) #\(index): unknown network layer") }
            if case .other = dissection.transport { Issue.record("\(fixture) #\(index): unknown transport") }
            let rebuilt = record.bytes.withSpan { dissection.emit(payload: $0.extracting(dissection.payload)) }
            #expect(rebuilt == record.bytes, "\(fixture) #\(index): \(dissection)")
        }
    }

    /// The handshake options of the TCP captures come out as the values Linux sent.
    @Test(arguments: ["tcp4-echo.pcap", "tcp6-echo.pcap"])
    func synOptionsParse(fixture: String) throws {
        var synCount = 0
        for record in try Fixtures.frames(fixture) {
            try record.bytes.withSpan { bytes throws in
                let dissection = try Dissection(bytes)
                guard case .tcp(let tcp) = dissection.transport, tcp.flags.contains(.syn) else { return }
                synCount += 1
                var mss: UInt16?, scale: UInt8?, sackPermitted = false, timestamps = false
                try TCPOption.forEach(in: tcp.options.array.span.bytes) { option in
                    switch option {
                    case .maximumSegmentSize(let value): mss = value
                    case .windowScale(let value): scale = value
                    case .sackPermitted: sackPermitted = true
                    case .timestamps: timestamps = true
                    default: break
                    }
                }
                let expectedMSS: UInt16 = fixture.contains("6") ? 1440 : 1460
                #expect(mss == expectedMSS)
                #expect(scale != nil && scale! <= 14)
                #expect(sackPermitted && timestamps)
            }
        }
        #expect(synCount == 2, "SYN and SYN-ACK")
    }

    /// Fragmented pings: the fragments of each datagram, put back together,
    /// hold an ICMP message whose checksum verifies.
    @Test(arguments: ["ping4-frag.pcap", "ping6-frag.pcap"])
    func fragmentsReassembleToValidICMP(fixture: String) throws {
        struct Key: Hashable { var source: String; var id: UInt32 }
        var parts: [Key: [(offset: Int, more: Bool, bytes: [UInt8], proto: IPProtocol)]] = [:]
        var pseudo: [Key: (String, String)] = [:]
        for record in try Fixtures.frames(fixture) {
            let dissection = try record.bytes.withSpan { try Dissection($0) }
            guard case .fragment(let proto)? = dissection.transport else { continue }
            let data = Array(record.bytes[dissection.payload])
            switch dissection.network {
            case .ipv4(let ip):
                let key = Key(source: "\(ip.source)", id: UInt32(ip.identification))
                parts[key, default: []].append((ip.fragmentOffset, ip.moreFragments, data, proto))
                pseudo[key] = ("\(ip.source)", "\(ip.destination)")
            case .ipv6(let ip, let extensions):
                let fragment = try #require(extensions.compactMap(\.fragment).first)
                let key = Key(source: "\(ip.source)", id: fragment.identification)
                parts[key, default: []].append((fragment.offset, fragment.moreFragments, data, proto))
                pseudo[key] = ("\(ip.source)", "\(ip.destination)")
            default:
                Issue.record("fragment outside IP")
            }
        }
        #expect(parts.count == 4, "2 requests and 2 replies")
        for (key, fragments) in parts {
            let sorted = fragments.sorted { $0.offset < $1.offset }
            #expect(sorted.count == 3)
            var whole: [UInt8] = []
            for fragment in sorted {
                #expect(fragment.offset == whole.count)
                whole += fragment.bytes
            }
            #expect(sorted.last?.more == false)
            #expect(whole.count == 4008, "8 bytes of ICMP header and 4000 of data")
            let (source, destination) = pseudo[key]!
            let valid: Bool = whole.withSpan { bytes in
                if IPv4Address(source) != nil {
                    // ICMPv4 has no pseudo-header.
                    return (try? ICMPv4Packet(bytes))?.isChecksumValid ?? false
                }
                guard let packet = try? ICMPv6Packet(bytes) else { return false }
                return packet.isChecksumValid(source: IPv6Address(source)!, destination: IPv6Address(destination)!)
            }
            #expect(valid)
        }
    }
}
