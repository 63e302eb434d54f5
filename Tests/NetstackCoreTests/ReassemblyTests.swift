import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

@Suite struct ReassemblyTests {
    let host = HostFrames()

    func echoPayload(_ size: Int, sequence: UInt16 = 1) -> [UInt8] {
        HostFrames.icmpv4(.echoRequest(identifier: 3, sequence: sequence),
                          body: (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) })
    }

    func replies(_ sent: [Dissection]) -> [Dissection] {
        sent.filter { if case .arp = $0.network { return false } else { return true } }
    }

    @Test func fragmentsInAnyOrderReassemble() {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: host.stackIPv4))
        _ = driver.takeSent()
        let fragments = host.fragments4(.icmp, echoPayload(4000), identification: 42)
        #expect(fragments.count == 3)
        for fragment in fragments.reversed() { driver.receive(fragment) }
        let sent = replies(driver.takeSent())
        #expect(sent.count == 3, "a 4008-byte reply goes out in three fragments")
        #expect(driver.stack.counters[.datagramsReassembled] == 1)
        #expect(driver.stack.incompleteDatagrams == 0 && driver.stack.reassemblyMemory == 0)
    }

    @Test func exactDuplicatesAreIgnoredButOverlapsDiscardTheDatagram() {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: host.stackIPv4))
        _ = driver.takeSent()
        let fragments = host.fragments4(.icmp, echoPayload(4000), identification: 5)
        driver.receive(fragments[0])
        driver.receive(fragments[0])
        driver.receive(fragments[1])
        driver.receive(fragments[2])
        #expect(replies(driver.takeSent()).count == 3, "a duplicate changes nothing")

        // A fragment that overlaps the first one with different bytes (RFC 5722).
        let second = host.fragments4(.icmp, echoPayload(4000, sequence: 2), identification: 6)
        let overlapping = host.ipv4Packet(.icmp, [UInt8](repeating: 0xee, count: 16), identification: 6,
                                          fragmentOffset: 1472, moreFragments: true)
        driver.receive(second[0])
        driver.receive(overlapping)
        driver.receive(second[1])
        driver.receive(second[2])
        #expect(driver.stack.counters[.fragmentOverlap] == 1)
        #expect(replies(driver.takeSent()).isEmpty, "the overlapped datagram is gone")
        #expect(driver.stack.incompleteDatagrams == 1, "the later fragments started a new one that never completes")
    }

    @Test func bogusOffsetsAndLengths() {
        let driver = StackDriver()
        // Ends past 65535 bytes.
        driver.receive(host.ipv4Packet(.icmp, [UInt8](repeating: 1, count: 64), identification: 9,
                                       fragmentOffset: 65_528, moreFragments: false))
        // A non-final fragment whose length is not a multiple of 8.
        driver.receive(host.ipv4Packet(.icmp, [UInt8](repeating: 1, count: 13), identification: 10,
                                       fragmentOffset: 0, moreFragments: true))
        // A last fragment that ends before data already received.
        driver.receive(host.ipv4Packet(.icmp, [UInt8](repeating: 1, count: 64), identification: 11,
                                       fragmentOffset: 64, moreFragments: true))
        driver.receive(host.ipv4Packet(.icmp, [UInt8](repeating: 1, count: 8), identification: 11,
                                       fragmentOffset: 8, moreFragments: false))
        let counters = driver.stack.counters
        #expect(counters[.fragmentTooLarge] == 1)
        #expect(counters[.fragmentBadLength] == 1)
        #expect(counters[.fragmentOverlap] == 1)
        #expect(driver.stack.incompleteDatagrams == 0)
    }

    /// 10,000 first fragments of datagrams that never complete: memory stays
    /// under the cap, the oldest are evicted and counted, and a ping still works.
    @Test func tenThousandIncompleteDatagramsStayUnderTheCap() {
        var configuration = FixtureReplay.replayConfiguration
        configuration.reassembly.totalBytes = 1 << 20
        let driver = StackDriver(configuration)
        driver.receive(host.arp(.request, target: host.stackIPv4))
        _ = driver.takeSent()
        var peak = 0
        for id in 0..<10_000 {
            driver.receive(host.ipv4Packet(.udp, [UInt8](repeating: 0xab, count: 1480),
                                           identification: UInt16(truncatingIfNeeded: id),
                                           fragmentOffset: 0, moreFragments: true))
            peak = max(peak, driver.stack.reassemblyMemory)
        }
        #expect(peak <= 1 << 20, "peak \(peak)")
        #expect(driver.stack.incompleteDatagrams <= 1024)
        let evicted = driver.stack.counters[.reassemblyEvicted]
        #expect(evicted + UInt64(driver.stack.incompleteDatagrams) == 10_000)
        let notices = driver.stack.takeNotices().filter { if case .limitReached = $0 { true } else { false } }
        #expect(notices == [.limitReached(.reassemblyMemory, value: 1 << 20, times: 1)], "\(notices)")
        // The whole fragmented ping still goes through.
        for fragment in host.fragments4(.icmp, echoPayload(3000), identification: 60_000) { driver.receive(fragment) }
        #expect(replies(driver.takeSent()).count == 3)
    }

    @Test func timeoutSendsTimeExceededQuotingTheFirstFragment() {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: host.stackIPv4))
        _ = driver.takeSent()
        let fragments = host.fragments4(.icmp, echoPayload(3000), identification: 77)
        driver.receive(fragments[0])
        driver.advance(by: .seconds(29))
        #expect(driver.takeSent().isEmpty)
        driver.advance(by: .seconds(2))
        let sent = driver.takeSent()
        #expect(sent.count == 1)
        guard case .icmpv4(.timeExceeded(code: 1))? = sent.first?.transport else {
            Issue.record("expected time exceeded (reassembly), got \(sent)")
            return
        }
        #expect(driver.stack.counters[.reassemblyTimeout] == 1)
        #expect(driver.stack.reassemblyMemory == 0)
    }

    @Test func ipv6TimeoutIsSixtySecondsAndNonFirstFragmentsAreNotReported() {
        let driver = StackDriver()
        driver.receive(host.neighborSolicitation(for: host.stackIPv6))
        _ = driver.takeSent()
        let payload = HostFrames.icmpv6(.echoRequest(identifier: 1, sequence: 1), body: Array(repeating: 1, count: 3000),
                                        source: host.ipv6, destination: host.stackIPv6)
        let fragments = host.fragments6(.icmpv6, payload, identification: 99)
        driver.receive(fragments[1]) // no first fragment: nothing to report
        driver.advance(by: .seconds(61))
        #expect(driver.takeSent().isEmpty)
        driver.receive(fragments[0])
        driver.advance(by: .seconds(59))
        #expect(driver.takeSent().isEmpty)
        driver.advance(by: .seconds(2))
        let sent = driver.takeSent()
        guard case .icmpv6(.timeExceeded(code: 1))? = sent.first?.transport else {
            Issue.record("expected ICMPv6 time exceeded, got \(sent)")
            return
        }
        #expect(driver.stack.counters[.reassemblyTimeout] == 2)
    }

    @Test func ipv6FragmentLengthAndOffsetErrorsAreReported() {
        let driver = StackDriver()
        driver.receive(host.neighborSolicitation(for: host.stackIPv6))
        _ = driver.takeSent()
        // A middle fragment of 13 bytes: parameter problem pointing at the payload length (4).
        var header = [UInt8](repeating: 0, count: 8)
        header.withMutableBytes { IPv6Fragment(offset: 0, moreFragments: true, identification: 1).emit(nextHeader: .udp, into: &$0) }
        driver.receive(host.ipv6Packet(.fragment, Array(repeating: 0, count: 13), extensionHeaders: header))
        // One ending past 65535: pointing at the fragment offset field (40 + 2).
        header.withMutableBytes { IPv6Fragment(offset: 65_528, moreFragments: false, identification: 2).emit(nextHeader: .udp, into: &$0) }
        driver.receive(host.ipv6Packet(.fragment, Array(repeating: 0, count: 16), extensionHeaders: header))
        let problems = driver.takeSent().compactMap { d -> UInt32? in
            if case .icmpv6(.parameterProblem(0, let pointer)) = d.transport { return pointer }
            return nil
        }
        #expect(problems == [4, 42])
    }

    /// RFC 7112 §5: a first fragment must hold the whole header chain, else
    /// it is dropped and answered by parameter problem code 3, pointer 0.
    @Test func ipv6FirstFragmentWithoutTheHeaderChainIsReported() {
        let driver = StackDriver()
        driver.receive(host.neighborSolicitation(for: host.stackIPv6))
        _ = driver.takeSent()
        func firstFragment(nextHeader: IPProtocol, _ data: [UInt8], identification: UInt32) -> [UInt8] {
            var header = [UInt8](repeating: 0, count: 8)
            header.withMutableBytes {
                IPv6Fragment(offset: 0, moreFragments: true, identification: identification)
                    .emit(nextHeader: nextHeader, into: &$0)
            }
            return host.ipv6Packet(.fragment, data, extensionHeaders: header)
        }
        // 16 bytes of a TCP header (20 needed).
        driver.receive(firstFragment(nextHeader: .tcp, Array(repeating: 0, count: 16), identification: 1))
        // A destination options header claiming 16 bytes, with 8 present.
        driver.receive(firstFragment(nextHeader: .destinationOptions, [IPProtocol.udp.rawValue, 1, 1, 4, 0, 0, 0, 0],
                                     identification: 2))
        // A whole UDP header in 8 bytes: kept for reassembly, not reported.
        driver.receive(firstFragment(nextHeader: .udp, Array(repeating: 0, count: 8), identification: 3))
        let problems = driver.takeSent().compactMap { d -> UInt32? in
            if case .icmpv6(.parameterProblem(3, let pointer)) = d.transport { return pointer }
            return nil
        }
        #expect(problems == [0, 0])
        #expect(driver.stack.counters[.fragmentIncompleteChain] == 2)
    }
}
