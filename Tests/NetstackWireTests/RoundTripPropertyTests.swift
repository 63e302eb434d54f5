import NetstackTestSupport
import NetstackWire
import PropertyBased
import Testing

// Emit → parse round trips with random field values, one property per header.

let macs = Gen.uint64(in: 0...0xffff_ffff_ffff).map { MACAddress(rawValue: $0) }
let ipv4s = Gen.uint32().map { IPv4Address(rawValue: $0) }
let ipv6s = zip(Gen.uint64(), Gen.uint64()).map { IPv6Address(high: $0, low: $1) }
let bytes = Gen.uint8().array(of: 0...64)

/// Emits with `emit` into a zeroed buffer of `length` bytes and returns it.
func emitted(_ length: Int, _ emit: (inout MutableRawSpan) -> Void) -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: length)
    buffer.withMutableBytes(emit)
    return buffer
}

@Suite struct RoundTripPropertyTests {
    @Test func ethernet() async {
        let vlans = zip(Gen.uint8(in: 0...7), Gen.bool, Gen.uint16(in: 0...4095))
            .map { VLANTag(priority: $0, dropEligible: $1, identifier: $2) }.optional()
        let types = Gen.uint16().filter { $0 != EtherType.vlan.rawValue }.map { EtherType(rawValue: $0) }
        await propertyCheck(input: macs, macs, vlans, types) { destination, source, vlan, type in
            let header = EthernetHeader(destination: destination, source: source, vlan: vlan, etherType: type)
            let frame = emitted(header.headerLength + 4) { header.emit(into: &$0) }
            frame.withSpan { bytes in
                guard let view = try? EthernetFrame(bytes) else { Issue.record("did not parse"); return }
                let payloadLength = view.payload.byteCount
                #expect(EthernetHeader(view) == header)
                #expect(payloadLength == 4)
            }
        }
    }

    @Test func arp() async {
        let operations = Gen.uint16().map { ARPOperation(rawValue: $0) }
        await propertyCheck(input: operations, macs, ipv4s, macs, ipv4s) { op, sha, spa, tha, tpa in
            let message = ARPMessage(operation: op, senderHardwareAddress: sha, senderProtocolAddress: spa,
                                     targetHardwareAddress: tha, targetProtocolAddress: tpa)
            let packet = emitted(message.length) { message.emit(into: &$0) }
            packet.withSpan { bytes in
                guard let view = try? ARPPacket(bytes) else { Issue.record("did not parse"); return }
                #expect(ARPMessage(view) == message)
            }
        }
    }

    @Test func ipv4() async {
        let fields = zip(Gen.uint8(in: 0...63), Gen.uint8(in: 0...3), Gen.uint16(), Gen.bool, Gen.bool,
                         Gen.int(in: 0...0x1fff), Gen.uint8(), Gen.uint8())
        let options = Gen.uint8().array(of: 0...10).map { seeds in
            // Well-formed options (RFC 791 §3.1: no-operations and kinds with a
            // length that ends inside the header), padded with end-of-list to
            // whole 32-bit words, at most 40 bytes (a parser refuses the rest).
            var bytes: [UInt8] = []
            for seed in seeds {
                let option: [UInt8] = seed % 3 == 0 ? [1]
                    : [0x80 | (seed & 0x1f) | 0x40, 2 + seed % 4] + Array(repeating: seed, count: Int(seed % 4))
                if bytes.count + option.count > 40 { break }
                bytes += option
            }
            while bytes.count % 4 != 0 { bytes.append(0) }
            return bytes
        }
        await propertyCheck(input: fields, ipv4s, ipv4s, options, bytes) { fields, source, destination, options, payload in
            var header = IPv4Header(protocol: IPProtocol(rawValue: fields.7), source: source,
                                    destination: destination, payloadLength: payload.count,
                                    timeToLive: fields.6, identification: fields.2, dontFragment: fields.3)
            header.dscp = fields.0
            header.ecn = fields.1
            header.moreFragments = fields.4
            header.fragmentOffset = fields.5 * 8
            header.options = options.withSpan { OptionBytes($0)! }
            var packet = emitted(header.totalLength) { header.emit(into: &$0) }
            packet.replaceSubrange(header.headerLength..., with: payload)
            packet.withSpan { bytes in
                guard let view = try? IPv4Packet(bytes) else { Issue.record("did not parse"); return }
                let valid = view.isChecksumValid, parsedPayload = view.payload.array
                #expect(valid)
                #expect(IPv4Header(view) == header)
                #expect(parsedPayload == payload)
            }
        }
    }

    @Test func ipv6WithFragmentHeader() async {
        let fields = zip(Gen.uint8(), Gen.uint32(in: 0...0xf_ffff), Gen.uint8(), Gen.uint8(),
                         Gen.int(in: 0...0x1fff), Gen.bool, Gen.uint32())
        await propertyCheck(input: fields, ipv6s, ipv6s, bytes) { fields, source, destination, payload in
            let fragment = IPv6Fragment(offset: fields.4 * 8, moreFragments: fields.5, identification: fields.6)
            let header = IPv6Header(nextHeader: .fragment, source: source, destination: destination,
                                    payloadLength: IPv6Fragment.headerLength + payload.count, hopLimit: fields.2,
                                    trafficClass: fields.0, flowLabel: fields.1)
            let upper = IPProtocol(rawValue: fields.3)
            var packet = emitted(40 + header.payloadLength) { header.emit(into: &$0) }
            packet.withMutableBytes(40..<48) { fragment.emit(nextHeader: upper, into: &$0) }
            packet.replaceSubrange(48..., with: payload)
            packet.withSpan { bytes in
                guard let view = try? IPv6Packet(bytes), let ext = try? view.extensionHeader(.fragment, at: 40) else {
                    Issue.record("did not parse"); return
                }
                let parsedFragment = ext.fragment, next = ext.nextHeader
                let parsedPayload = view.bytes.extracting(48...).array
                #expect(IPv6Header(view) == header)
                #expect(parsedFragment == fragment)
                #expect(next == upper)
                #expect(parsedPayload == payload)
            }
        }
    }

    @Test func icmpv4() async {
        let messages = zip(Gen.int(in: 0...5), Gen.uint16(), Gen.uint16(), Gen.uint8(), Gen.uint32())
            .map { kind, a, b, code, rest -> ICMPv4Message in
                switch kind {
                case 0: .echoRequest(identifier: a, sequence: b)
                case 1: .echoReply(identifier: a, sequence: b)
                case 2: .destinationUnreachable(code: code, nextHopMTU: b)
                case 3: .timeExceeded(code: code)
                case 4: .parameterProblem(code: code, pointer: UInt8(truncatingIfNeeded: a))
                // A type with no case of its own.
                default: .other(type: 42, code: code, restOfHeader: rest)
                }
            }
        await propertyCheck(input: messages, bytes) { message, body in
            let packet = emitted(8 + body.count) { span in body.withSpan { message.emit(into: &span, body: $0) } }
            packet.withSpan { bytes in
                guard let view = try? ICMPv4Packet(bytes) else { Issue.record("did not parse"); return }
                let valid = view.isChecksumValid, parsedBody = view.body.array
                #expect(valid)
                #expect(ICMPv4Message(view) == message)
                #expect(parsedBody == body)
            }
        }
    }

    @Test func icmpv6() async {
        let advertisements = zip(Gen.uint8(), Gen.bool, Gen.bool, Gen.uint16(), Gen.uint32(), Gen.uint32())
            .map { RouterAdvertisement(currentHopLimit: $0, managedConfiguration: $1, otherConfiguration: $2,
                                       routerLifetime: $3, reachableTime: $4, retransmitTimer: $5) }
        let messages = zip(Gen.int(in: 0...11), Gen.uint16(), Gen.uint16(), Gen.uint8(), Gen.uint32(),
                           ipv6s, ipv6s, advertisements)
            .map { kind, a, b, code, word, t, d, ra -> ICMPv6Message in
                switch kind {
                case 0: .destinationUnreachable(code: code)
                case 1: .packetTooBig(mtu: word)
                case 2: .timeExceeded(code: code)
                case 3: .parameterProblem(code: code, pointer: word)
                case 4: .echoRequest(identifier: a, sequence: b)
                case 5: .echoReply(identifier: a, sequence: b)
                case 6: .routerSolicitation
                case 7: .routerAdvertisement(ra)
                case 8: .neighborSolicitation(target: t)
                case 9: .neighborAdvertisement(router: a & 1 == 1, solicited: a & 2 == 2, override: a & 4 == 4,
                                               target: t)
                case 10: .redirect(target: t, destination: d)
                default: .other(type: 200, code: code, restOfHeader: word)
                }
            }
        await propertyCheck(input: messages, ipv6s, ipv6s, bytes) { message, source, destination, body in
            let packet = emitted(message.headerLength + body.count) { span in
                body.withSpan { message.emit(into: &span, body: $0, source: source, destination: destination) }
            }
            packet.withSpan { bytes in
                guard let view = try? ICMPv6Packet(bytes), let parsed = try? ICMPv6Message(view) else {
                    Issue.record("did not parse"); return
                }
                let valid = view.isChecksumValid(source: source, destination: destination)
                let parsedBody = view.body(of: parsed).array
                #expect(valid)
                #expect(parsed == message)
                #expect(parsedBody == body)
            }
        }
    }

    @Test func ndpOptions() async {
        let prefixes = zip(ipv6s, Gen.uint8(in: 0...128), Gen.bool, Gen.bool, Gen.uint32(), Gen.uint32())
            .map { NDPPrefixInformation(prefix: $0, prefixLength: $1, onLink: $2, autonomous: $3,
                                        validLifetime: $4, preferredLifetime: $5) }
        let options = zip(Gen.int(in: 0...3), macs, prefixes, Gen.uint32()).map { kind, mac, prefix, mtu -> NDPOption in
            switch kind {
            case 0: .sourceLinkLayerAddress(mac)
            case 1: .targetLinkLayerAddress(mac)
            case 2: .prefixInformation(prefix)
            default: .mtu(mtu)
            }
        }.array(of: 0...5)
        await propertyCheck(input: options) { options in
            var buffer = [UInt8](repeating: 0, count: options.reduce(0) { $0 + $1.length })
            var offset = 0
            for option in options {
                buffer.withMutableBytes(offset..<(offset + option.length)) { option.emit(into: &$0) }
                offset += option.length
            }
            var parsed: [NDPOption] = []
            #expect(throws: Never.self) {
                try buffer.withSpan { span throws(WireError) in try NDPOption.forEach(in: span) { parsed.append($0) } }
            }
            #expect(parsed == options)
        }
    }

    @Test func udpOverBothVersions() async {
        await propertyCheck(input: Gen.uint16(), Gen.uint16(), bytes, ipv4s, ipv6s) { sport, dport, payload, v4, v6 in
            let header = UDPHeader(sourcePort: sport, destinationPort: dport, payloadLength: payload.count)
            var v4Datagram = [UInt8](repeating: 0, count: 8) + payload
            v4Datagram.withMutableBytes { header.emit(into: &$0, source: v4, destination: .broadcast) }
            var v6Datagram = [UInt8](repeating: 0, count: 8) + payload
            v6Datagram.withMutableBytes { header.emit(into: &$0, source: v6, destination: .allNodes) }
            v4Datagram.withSpan { bytes in
                guard let view = try? UDPDatagram(bytes) else { Issue.record("did not parse"); return }
                let valid = view.isChecksumValid(source: v4, destination: .broadcast)
                let parsedPayload = view.payload.array
                #expect(UDPHeader(view) == header)
                #expect(valid)
                #expect(parsedPayload == payload)
            }
            v6Datagram.withSpan { bytes in
                guard let view = try? UDPDatagram(bytes) else { Issue.record("did not parse"); return }
                let valid = view.isChecksumValid(source: v6, destination: .allNodes)
                let checksum = view.checksum
                #expect(UDPHeader(view) == header)
                #expect(checksum != 0, "a zero checksum is sent as 0xffff")
                #expect(valid)
            }
        }
    }

    @Test func tcpWithOptions() async {
        let sack = zip(Gen.uint32(), Gen.uint32()).array(of: 1...4).map { SACKBlocks($0.map { ($0.0, $0.1) }) }
        let option = zip(Gen.int(in: 0...5), Gen.uint16(), Gen.uint8(in: 0...14), Gen.uint32(), Gen.uint32(), sack)
            .map { kind, mss, shift, a, b, blocks -> TCPOption in
                switch kind {
                case 0: .maximumSegmentSize(mss)
                case 1: .windowScale(shift)
                case 2: .sackPermitted
                case 3: .timestamps(value: a, echoReply: b)
                case 4: .sack(blocks)
                default: .noOperation
                }
            }
        let fields = zip(Gen.uint16(), Gen.uint16(), Gen.uint32(), Gen.uint32(), Gen.uint16(in: 0...0x1ff),
                         Gen.uint16(), Gen.uint16())
        await propertyCheck(input: fields, option.array(of: 0...6), bytes, ipv4s, ipv4s) { f, options, payload, s, d in
            var header = TCPHeader(sourcePort: f.0, destinationPort: f.1, sequenceNumber: f.2,
                                   acknowledgmentNumber: f.3, flags: TCPFlags(rawValue: f.4), window: f.5,
                                   payloadLength: payload.count)
            header.urgentPointer = f.6
            var appended: [TCPOption] = []
            for option in options where header.options.append(option) { appended.append(option) }
            // A parsed header holds whole 32-bit words of options: pad as the sender does.
            while header.options.count % 4 != 0 { header.options.append(TCPOption.endOfList) }
            var segment = [UInt8](repeating: 0, count: header.headerLength) + payload
            segment.withMutableBytes { header.emit(into: &$0, source: s, destination: d) }
            segment.withSpan { bytes in
                guard let view = try? TCPSegment(bytes) else { Issue.record("did not parse"); return }
                let valid = view.isChecksumValid(source: s, destination: d)
                let parsedPayload = view.payload.array
                #expect(valid)
                #expect(TCPHeader(view) == header)
                #expect(parsedPayload == payload)
                var parsed: [TCPOption] = []
                do { try view.forEachOption { parsed.append($0) } } catch { Issue.record("\(error)") }
                // The padding reads as one end-of-list (nothing is read after it).
                if parsed.last == .endOfList { parsed.removeLast() }
                #expect(parsed == appended)
            }
        }
    }
}
