import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// Bad input is counted by reason and dropped; the stack answers the next
/// good packet as if nothing had happened.
@Suite struct MalformedFrameTests {
    let host = HostFrames()

    func expectStillAnswers(_ driver: StackDriver, sourceLocation: SourceLocation = #_sourceLocation) {
        driver.receive(host.echoRequest4(sequence: 99))
        let replies = driver.takeSent().filter {
            if case .icmpv4(.echoReply(_, 99)) = $0.transport { return true }
            return false
        }
        #expect(replies.count == 1, "the next ping is answered", sourceLocation: sourceLocation)
    }

    @Test func badChecksumsAndTruncatedHeadersAreCountedByReason() {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: host.stackIPv4))
        _ = driver.takeSent()

        driver.receive(host.ipv4Packet(.icmp, HostFrames.icmpv4(.echoRequest(identifier: 1, sequence: 1), body: []),
                                       corruptChecksum: true))
        var badICMP = HostFrames.icmpv4(.echoRequest(identifier: 1, sequence: 1), body: [1, 2, 3])
        badICMP[2] ^= 0xff
        driver.receive(host.ipv4Packet(.icmp, badICMP))
        driver.receive(Array(host.echoRequest4().prefix(30)))      // IPv4 header cut
        driver.receive(Array(host.echoRequest4().prefix(10)))      // Ethernet header cut
        driver.receive(Array(host.echoRequest6().prefix(50)))      // IPv6 header cut
        var badICMPv6 = host.echoRequest6()
        badICMPv6[badICMPv6.count - 1] ^= 0x01
        driver.receive(badICMPv6)

        let counters = driver.stack.counters
        #expect(counters[WireError(.ipv4, .badChecksum)] == 1)
        #expect(counters[WireError(.icmpv4, .badChecksum)] == 1)
        #expect(counters[WireError(.ipv4, .truncated)] == 1)
        #expect(counters[WireError(.ethernet, .truncated)] == 1)
        #expect(counters[WireError(.ipv6, .truncated)] == 1)
        #expect(counters[WireError(.icmpv6, .badChecksum)] == 1)
        #expect(driver.takeSent().isEmpty, "nothing answers bad input")
        expectStillAnswers(driver)
    }

    @Test func framesNotForUsAreFiltered() {
        let driver = StackDriver()
        // Another host's MAC, a unicast IP for someone else, a VLAN tag, our own MAC as source.
        driver.receive(host.echoRequest4(linkDestination: MACAddress(2, 0, 0, 0, 0, 0x99)))
        driver.receive(host.echoRequest4(destination: IPv4Address(192, 168, 69, 77)))
        var tagged = host.echoRequest4()
        tagged.insert(contentsOf: [0x81, 0x00, 0x00, 0x05], at: 12)
        driver.receive(tagged)
        var looped = host.echoRequest4()
        looped.replaceSubrange(6..<12, with: [2, 0, 0, 0, 0, 1])
        driver.receive(looped)
        var unknownType = host.echoRequest4()
        unknownType[12] = 0x88; unknownType[13] = 0xb5
        driver.receive(unknownType)
        let counters = driver.stack.counters
        #expect(counters[.foreignDestinationMAC] == 1)
        #expect(counters[.notOurAddress] == 1)
        #expect(counters[.vlanTagged] == 1)
        #expect(counters[.badSourceMAC] == 1)
        #expect(counters[.unknownEtherType] == 1)
        #expect(driver.takeSent().isEmpty)
    }

    @Test func martianSourcesAreDropped() {
        let driver = StackDriver()
        let icmp = HostFrames.icmpv4(.echoRequest(identifier: 1, sequence: 1), body: [])
        driver.receive(host.ipv4Packet(.icmp, icmp, source: IPv4Address(224, 0, 0, 5)))
        driver.receive(host.ipv4Packet(.icmp, icmp, source: .broadcast))
        driver.receive(host.ipv4Packet(.icmp, icmp, source: host.stackIPv4))
        driver.receive(host.echoRequest6(source: IPv6Address("ff02::1")!))
        #expect(driver.stack.counters[.martianSource] == 4)
        // Loopback, this network, and the unspecified source unless it asks
        // for the limited broadcast (a DHCP client).
        driver.receive(host.ipv4Packet(.icmp, icmp, source: IPv4Address(127, 0, 0, 1)))
        driver.receive(host.ipv4Packet(.icmp, icmp, source: IPv4Address(0, 1, 2, 3)))
        driver.receive(host.ipv4Packet(.icmp, icmp, source: .any))
        #expect(driver.stack.counters[.martianSource] == 7)
        driver.receive(host.ipv4Packet(.udp, [0, 68, 0, 67, 0, 8, 0, 0], source: .any, destination: .broadcast,
                                       linkDestination: .broadcast))
        #expect(driver.stack.counters[.martianSource] == 7)
        // IPv6 loopback and IPv4-mapped sources; the unspecified source only
        // for ICMPv6 (address autoconfiguration and MLD), never a transport.
        driver.receive(host.echoRequest6(source: .loopback))
        driver.receive(host.echoRequest6(source: IPv6Address("::ffff:192.168.69.100")!))
        driver.receive(host.ipv6Packet(.udp, [0, 7, 0, 7, 0, 8, 0, 0], source: .unspecified))
        driver.receive(host.ipv6Packet(.tcp, [UInt8](repeating: 0, count: 20), source: .unspecified))
        #expect(driver.stack.counters[.martianSource] == 11)
        #expect(driver.takeSent().isEmpty)
    }

    @Test func malformedARPAndNDP() {
        let driver = StackDriver()
        var arp = host.arp(.request, target: host.stackIPv4)
        arp[14 + 1] = 6 // hardware type IEEE 802
        driver.receive(arp)
        driver.receive(host.arp(ARPOperation(rawValue: 9), target: host.stackIPv4))
        driver.receive(host.neighborSolicitation(for: host.stackIPv6, hopLimit: 64)) // NDP must be 255
        driver.receive(host.neighborSolicitation(for: IPv6Address("ff02::1")!))       // multicast target
        let counters = driver.stack.counters
        #expect(counters[WireError(.arp, .badValue)] == 1)
        #expect(counters[.arpUnknownOperation] == 1)
        #expect(counters[.ndpInvalid] == 2)
        #expect(driver.takeSent().isEmpty)
    }
}
