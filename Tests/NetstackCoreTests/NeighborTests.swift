import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

@Suite struct NeighborTests {
    let host = HostFrames()

    func isEchoReply(_ d: Dissection) -> Bool {
        switch d.transport {
        case .icmpv4(.echoReply), .icmpv6(.echoReply): true
        default: false
        }
    }

    @Test func replyWaitsForARPResolution() throws {
        let driver = StackDriver()
        // The host pings without ARPing first (it had us cached): the stack must resolve it.
        driver.receive(host.echoRequest4())
        let first = driver.takeSent()
        #expect(first.count == 1)
        guard case .arp(let request)? = first.first?.network else { Issue.record("expected ARP request"); return }
        #expect(request.operation == .request && request.targetProtocolAddress == host.ipv4)
        #expect(first[0].ethernet.destination == .broadcast)
        driver.receive(host.arp(.reply, target: host.stackIPv4, to: host.stackMAC, targetMAC: host.stackMAC))
        let second = driver.takeSent()
        #expect(second.count == 1 && isEchoReply(second[0]))
        #expect(second.first?.ethernet.destination == host.mac)
        #expect(driver.stack.ipv4Neighbors.first?.state == .reachable)
    }

    @Test func replyWaitsForNeighborDiscovery() {
        let driver = StackDriver()
        driver.receive(host.echoRequest6())
        let first = driver.takeSent()
        guard case .icmpv6(.neighborSolicitation(let target))? = first.first?.transport else {
            Issue.record("expected a neighbour solicitation, got \(first)"); return
        }
        #expect(target == host.ipv6)
        #expect(first[0].ethernet.destination == MACAddress(ipv6Multicast: host.ipv6.solicitedNodeMulticast))
        driver.receive(host.neighborAdvertisement(target: host.ipv6, solicited: true, to: host.stackIPv6))
        let second = driver.takeSent()
        #expect(second.count == 1 && isEchoReply(second[0]))
    }

    @Test func unansweredResolutionGivesUpAfterThreeSolicitations() {
        let driver = StackDriver()
        for sequence in 1...10 { driver.receive(host.echoRequest4(sequence: UInt16(sequence))) }
        #expect(driver.stack.counters[.neighborQueueOverflow] == 2, "8 frames wait, 2 are pushed out")
        driver.advance(by: .seconds(5))
        let requests = driver.takeSent().filter { if case .arp = $0.network { return true } else { return false } }
        #expect(requests.count == 3)
        #expect(driver.stack.counters[.neighborUnreachable] == 8)
        #expect(driver.stack.ipv4Neighbors.isEmpty)
    }

    /// A full table evicts entries still resolving before resolved ones: a
    /// flood from spoofed sources on the link (each answer needs an ARP
    /// nobody answers) cannot push out the neighbour that does answer.
    @Test func aFullTableEvictsUnresolvedEntriesFirst() {
        var configuration = FixtureReplay.replayConfiguration
        configuration.neighbors.maximumEntries = 4
        let driver = StackDriver(configuration)
        driver.receive(host.arp(.request, target: host.stackIPv4))
        _ = driver.takeSent()
        #expect(driver.stack.ipv4Neighbors.map(\.address) == [host.ipv4])
        for last in 101...120 {
            let echo = HostFrames.icmpv4(.echoRequest(identifier: 1, sequence: UInt16(last)), body: [1, 2, 3])
            driver.receive(host.ipv4Packet(.icmp, echo, source: IPv4Address(192, 168, 69, UInt8(last))))
        }
        let neighbors = driver.stack.ipv4Neighbors
        #expect(neighbors.count == 4)
        #expect(neighbors.contains { $0.address == host.ipv4 && $0.mac == host.mac }, "the host stays: \(neighbors)")
        #expect(driver.stack.counters[.neighborUnreachable] == 17, "the evicted entries' replies")
        #expect(driver.stack.counters[.neighborEvicted] == 17)
        // Reaching the cap is reported once (the next notice waits 10 s).
        let notices = driver.stack.takeNotices().filter { if case .limitReached = $0 { true } else { false } }
        #expect(notices == [.limitReached(.neighborEntries, value: 4, times: 1)], "\(notices)")
        _ = driver.takeSent()
        // The host's ping is answered at once, with no resolution first.
        driver.receive(host.echoRequest4(sequence: 99))
        let sent = driver.takeSent()
        #expect(sent.count == 1 && isEchoReply(sent[0]))
    }

    /// RFC 4861 §7.3.3: reachable → stale after the reachable time; used →
    /// delay → probe with unicast solicitations → reachable again on answer.
    @Test func reachabilityStatesAndUnicastProbes() {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: host.stackIPv4))
        #expect(driver.stack.ipv4Neighbors.first?.state == .stale, "learned unsolicited")
        _ = driver.takeSent()
        driver.receive(host.echoRequest4())
        #expect(driver.stack.ipv4Neighbors.first?.state == .delay)
        _ = driver.takeSent()
        driver.advance(by: .seconds(5) + .milliseconds(1))
        #expect(driver.stack.ipv4Neighbors.first?.state == .probe)
        let probe = driver.takeSent()
        #expect(probe.count == 1)
        #expect(probe.first?.ethernet.destination == host.mac, "a probe is unicast")
        driver.receive(host.arp(.reply, target: host.stackIPv4, to: host.stackMAC, targetMAC: host.stackMAC))
        #expect(driver.stack.ipv4Neighbors.first?.state == .reachable)
        driver.advance(by: .seconds(46))
        #expect(driver.stack.ipv4Neighbors.first?.state == .stale, "reachable time is at most 1.5 × 30 s")
    }

    @Test func offLinkDestinationsGoThroughTheGateway() {
        let driver = StackDriver()
        let remote = IPv4Address(10, 1, 2, 3)
        let icmp = HostFrames.icmpv4(.echoRequest(identifier: 1, sequence: 1), body: [1, 2, 3, 4])
        driver.receive(host.ipv4Packet(.icmp, icmp, source: remote))
        let sent = driver.takeSent()
        guard case .arp(let request)? = sent.first?.network else { Issue.record("expected ARP for the gateway"); return }
        #expect(request.targetProtocolAddress == IPv4Address(192, 168, 69, 100), "the configured gateway")
        driver.receive(host.arp(.reply, target: host.stackIPv4, to: host.stackMAC, targetMAC: host.stackMAC))
        let reply = driver.takeSent()
        guard case .ipv4(let ip)? = reply.first?.network else { Issue.record("expected the reply"); return }
        #expect(ip.destination == remote)
        #expect(reply.first?.ethernet.destination == host.mac)
    }

    @Test func arpConflictIsNoticedAndNotLearned() {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: IPv4Address(192, 168, 69, 50), senderAddress: host.stackIPv4))
        #expect(driver.stack.takeNotices().contains(.addressConflict(address: "192.168.69.1", mac: host.mac)))
        #expect(driver.stack.counters[.arpBadSender] == 1)
        #expect(driver.takeSent().isEmpty)
    }

    @Test func requestsForOtherAddressesAreNotAnswered() {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: IPv4Address(192, 168, 69, 50)))
        driver.receive(host.neighborSolicitation(for: IPv6Address("fdaa::50")!))
        #expect(driver.takeSent().isEmpty)
        #expect(driver.stack.counters[.arpNotForUs] == 1)
    }
}
