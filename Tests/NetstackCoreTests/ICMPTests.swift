import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

@Suite struct ICMPTests {
    let host = HostFrames()

    func resolvedDriver() -> StackDriver {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: host.stackIPv4))
        driver.receive(host.neighborSolicitation(for: host.stackIPv6))
        _ = driver.takeSent()
        return driver
    }

    @Test func unknownIPv4ProtocolIsProtocolUnreachable() {
        let driver = resolvedDriver()
        driver.receive(host.ipv4Packet(IPProtocol(rawValue: 253), [1, 2, 3, 4]))
        let sent = driver.takeSent()
        guard case .icmpv4(.destinationUnreachable(code: 2, _))? = sent.first?.transport else {
            Issue.record("expected protocol unreachable, got \(sent)"); return
        }
        // The whole offending packet is quoted: its 20-byte header and 4 bytes.
        #expect(sent.first?.payload.count == 20 + 4)
    }

    @Test func unknownIPv6NextHeaderIsParameterProblemPointingAtIt() {
        let driver = resolvedDriver()
        driver.receive(host.ipv6Packet(IPProtocol(rawValue: 253), [1, 2, 3, 4]))
        // Behind a destination options header (PadN), the pointer is that header's first byte (40).
        driver.receive(host.ipv6Packet(.destinationOptions, [1, 2, 3, 4], extensionHeaders: [253, 0, 1, 4, 0, 0, 0, 0]))
        let pointers = driver.takeSent().compactMap { d -> UInt32? in
            if case .icmpv6(.parameterProblem(1, let pointer)) = d.transport { return pointer }
            return nil
        }
        #expect(pointers == [6, 40])
    }

    @Test func unrecognizedOptionsFollowTheirActionBits() {
        let driver = resolvedDriver()
        let echo = HostFrames.icmpv6(.echoRequest(identifier: 1, sequence: 1), body: [],
                                     source: host.ipv6, destination: host.stackIPv6)
        func withOption(_ type: UInt8) -> [UInt8] {
            host.ipv6Packet(.destinationOptions, echo, extensionHeaders: [58, 0, type, 4, 0, 0, 0, 0])
        }
        driver.receive(withOption(0x1e))   // 00: skip, the echo is answered
        driver.receive(withOption(0x5e))   // 01: discard silently
        driver.receive(withOption(0x9e))   // 10: discard and report
        driver.receive(withOption(0xde))   // 11: discard and report (unicast)
        let sent = driver.takeSent()
        #expect(sent.filter { if case .icmpv6(.echoReply) = $0.transport { true } else { false } }.count == 1)
        let pointers = sent.compactMap { d -> UInt32? in
            if case .icmpv6(.parameterProblem(2, let pointer)) = d.transport { return pointer }
            return nil
        }
        #expect(pointers == [42, 42], "pointing at the option type")
        #expect(driver.stack.counters[.unrecognizedOption] == 3)
    }

    @Test func hopByHopAfterAnotherHeaderIsReported() {
        let driver = resolvedDriver()
        driver.receive(host.ipv6Packet(.destinationOptions, [],
                                       extensionHeaders: [0, 0, 1, 4, 0, 0, 0, 0, 59, 0, 1, 4, 0, 0, 0, 0]))
        #expect(driver.stack.counters[.hopByHopNotFirst] == 1)
        guard case .icmpv6(.parameterProblem(1, 40))? = driver.takeSent().first?.transport else {
            Issue.record("expected a parameter problem at 40"); return
        }
    }

    @Test func routingHeaderWithSegmentsLeftIsReported() {
        let driver = resolvedDriver()
        // Type 0 (deprecated), one segment left.
        var routing = [UInt8](repeating: 0, count: 24)
        routing[0] = 59; routing[1] = 2; routing[2] = 0; routing[3] = 1
        driver.receive(host.ipv6Packet(.routing, [], extensionHeaders: routing))
        #expect(driver.stack.counters[.unsupportedRouting] == 1)
        guard case .icmpv6(.parameterProblem(0, 42))? = driver.takeSent().first?.transport else {
            Issue.record("expected a parameter problem at the routing type"); return
        }
        // With no segments left it is simply skipped.
        routing[3] = 0
        routing[0] = 58
        let echo = HostFrames.icmpv6(.echoRequest(identifier: 1, sequence: 1), body: [],
                                     source: host.ipv6, destination: host.stackIPv6)
        driver.receive(host.ipv6Packet(.routing, echo, extensionHeaders: routing))
        guard case .icmpv6(.echoReply)? = driver.takeSent().first?.transport else {
            Issue.record("expected an echo reply"); return
        }
    }

    /// The driver with `limits` for ICMP errors, the host resolved.
    func resolvedDriver(icmp limits: (inout ICMPLimits) -> Void) -> StackDriver {
        var configuration = FixtureReplay.replayConfiguration
        limits(&configuration.icmp)
        let driver = StackDriver(configuration)
        driver.receive(host.arp(.request, target: host.stackIPv4))
        _ = driver.takeSent()
        return driver
    }

    @Test func errorsAreRateLimited() {
        // The limit for all destinations alone.
        let driver = resolvedDriver { $0.perDestinationInterval = nil }
        for _ in 0..<100 { driver.receive(host.ipv4Packet(IPProtocol(rawValue: 253), [1])) }
        #expect(driver.takeSent().count == 50, "the burst")
        #expect(driver.stack.counters[.icmpErrorRateLimited] == 50)
        driver.advance(by: .milliseconds(10))
        for _ in 0..<20 { driver.receive(host.ipv4Packet(IPProtocol(rawValue: 253), [1])) }
        #expect(driver.takeSent().count == 10, "1000 per second refill 10 in 10 ms")
    }

    /// Linux's icmp_ratelimit: a burst of 6 to one destination, then one a
    /// second; another destination has a budget of its own.
    @Test func errorsToOneDestinationAreLimitedToABurstThenOneASecond() {
        let driver = resolvedDriver()
        for _ in 0..<200 { driver.receive(host.ipv4Packet(IPProtocol(rawValue: 253), [1])) }
        #expect(driver.takeSent().count == 6, "the per-destination burst")
        #expect(driver.stack.counters[.icmpErrorRateLimited] == 194)
        driver.advance(by: .milliseconds(500))
        driver.receive(host.ipv4Packet(IPProtocol(rawValue: 253), [1]))
        #expect(driver.takeSent().isEmpty, "half a token")
        driver.advance(by: .milliseconds(500))
        for _ in 0..<5 { driver.receive(host.ipv4Packet(IPProtocol(rawValue: 253), [1])) }
        #expect(driver.takeSent().count == 1, "one a second")
        // Another host on the link: its own burst (each error waits for its
        // neighbour to resolve; the counter says they were sent).
        let other = IPv4Address(192, 168, 69, 101)
        for _ in 0..<10 { driver.receive(host.ipv4Packet(IPProtocol(rawValue: 253), [1], source: other)) }
        #expect(driver.stack.counters[.icmpErrorsSent] == 6 + 1 + 6)
    }

    @Test func aFullTableOfDestinationsForgetsIdleOnesAndRefusesNewOnes() {
        let driver = resolvedDriver { $0.trackedDestinations = 2 }
        let sources = (101...103).map { IPv4Address(192, 168, 69, UInt8($0)) }
        for source in sources { driver.receive(host.ipv4Packet(IPProtocol(rawValue: 253), [1], source: source)) }
        #expect(driver.stack.counters[.icmpErrorsSent] == 2, "the third destination does not fit")
        // Idle for burst × interval: the first two are as good as new and go.
        driver.advance(by: .seconds(6))
        driver.receive(host.ipv4Packet(IPProtocol(rawValue: 253), [1], source: sources[2]))
        #expect(driver.stack.counters[.icmpErrorsSent] == 3)
    }

    @Test func noErrorAboutAnErrorOrABroadcast() {
        let driver = resolvedDriver()
        // An ICMP error of unknown type 3 code 9 with a bad quote: ignored, not answered.
        driver.receive(host.ipv4Packet(.icmp, HostFrames.icmpv4(.destinationUnreachable(code: 9, nextHopMTU: 0),
                                                                body: [0x45])))
        // An unknown protocol to the broadcast address: no error.
        driver.receive(host.ipv4Packet(IPProtocol(rawValue: 253), [1], destination: .broadcast,
                                       linkDestination: .broadcast))
        #expect(driver.takeSent().isEmpty)
        #expect(driver.stack.counters[.icmpErrorsReceived] == 1)
    }

    /// Linux answers an echo request whatever its code and keeps the code.
    @Test func echoWithANonZeroCodeIsAnsweredWithTheCodeKept() {
        let driver = resolvedDriver()
        let data: [UInt8] = Array(0..<24)
        driver.receive(host.ipv4Packet(.icmp, HostFrames.icmpv4(.other(type: 8, code: 3, restOfHeader: 0x0007_0001),
                                                                body: data)))
        driver.receive(host.icmpv6Packet(.other(type: 128, code: 5, restOfHeader: 0x0007_0002), body: data))
        let replies = driver.takeSent()
        #expect(replies.count == 2)
        guard case .icmpv4(.other(type: 0, code: 3, restOfHeader: 0x0007_0001))? = replies.first?.transport,
              case .icmpv6(.other(type: 129, code: 5, restOfHeader: 0x0007_0002))? = replies.last?.transport else {
            Issue.record("expected echo replies with codes 3 and 5, got \(replies)")
            return
        }
        #expect(replies.allSatisfy { $0.payload.count == data.count })
    }

    @Test func broadcastPingIsIgnoredAndMulticastPingAnsweredFromLinkLocal() {
        let driver = resolvedDriver()
        driver.receive(host.echoRequest4(destination: IPv4Address(192, 168, 69, 255), linkDestination: .broadcast))
        #expect(driver.takeSent().isEmpty)
        #expect(driver.stack.counters[.echoToBroadcastIgnored] == 1)
        driver.receive(host.echoRequest6(destination: .allNodes, source: host.linkLocal))
        // The reply waits for the host's link-local address to be resolved.
        driver.receive(host.neighborAdvertisement(target: host.linkLocal, solicited: true,
                                                  to: .linkLocal(eui64: host.stackMAC)))
        let sent = driver.takeSent()
        let replies = sent.compactMap { d -> IPv6Header? in
            if case .icmpv6(.echoReply) = d.transport, case .ipv6(let ip, _) = d.network { return ip }
            return nil
        }
        #expect(replies.first?.source == IPv6Address.linkLocal(eui64: host.stackMAC))
    }

    @Test func largeEchoIsFragmentedWithTheLinuxSizes() {
        let driver = resolvedDriver()
        driver.receive(host.echoRequest4(data: Array(repeating: 0x42, count: 8000)))
        let sizes = driver.takeSent().map(\.payload.count)
        #expect(sizes == [1480, 1480, 1480, 1480, 1480, 608])
    }

    struct Unreachable: Sendable, CustomTestStringConvertible {
        var v6: Bool
        var code: UInt8
        var error: SocketError
        var testDescription: String { "IPv\(v6 ? 6 : 4) code \(code) → \(error)" }
    }

    static let unreachables = [
        Unreachable(v6: false, code: 0, error: .networkUnreachable),
        Unreachable(v6: false, code: 1, error: .hostUnreachable),
        Unreachable(v6: false, code: 3, error: .connectionRefused),
        Unreachable(v6: false, code: 13, error: .hostUnreachable),
        Unreachable(v6: true, code: 0, error: .networkUnreachable),
        Unreachable(v6: true, code: 1, error: .permissionDenied),
        Unreachable(v6: true, code: 3, error: .hostUnreachable),
        Unreachable(v6: true, code: 4, error: .connectionRefused),
    ]

    /// A destination unreachable about a connect's SYN ends the connect at
    /// once with Linux's errno (ENETUNREACH, EHOSTUNREACH, ECONNREFUSED,
    /// EACCES), not after its retries; on an established connection the same
    /// message is a soft error (RFC 1122 §4.2.3.9).
    @Test(arguments: unreachables)
    func unreachableEndsAConnectAtOnce(_ case: Unreachable) throws {
        let driver = resolvedDriver()
        let code = `case`.code
        let status = if `case`.v6 {
            try connectAndHear(IPv6.self, to: host.ipv6, driver) {
                host.icmpv6Packet(.destinationUnreachable(code: code), body: $0)
            }
        } else {
            try connectAndHear(IPv4.self, to: host.ipv4, driver) {
                host.ipv4Packet(.icmp, HostFrames.icmpv4(.destinationUnreachable(code: code, nextHopMTU: 0), body: $0))
            }
        }
        #expect(status == .failed(`case`.error))
        #expect(driver.takeSent().isEmpty, "no reset for a connect that never began")
    }

    /// Connects to `peer`, answers the SYN with the ICMP message `answer`
    /// makes of its quote (the IP header and 8 bytes), and says how the
    /// connect stands.
    func connectAndHear<I: IPVersion>(_ version: I.Type, to peer: I.Address, _ driver: StackDriver,
                                      answer: ([UInt8]) -> [UInt8]) throws -> TCPConnectStatus {
        let socket = driver.stack.tcpOpen(I.self)
        try driver.stack.tcpConnect(I.self, socket, to: Endpoint(peer, 80))
        driver.advance(by: .zero)
        let syn = try #require(driver.sent.last)
        _ = driver.takeSent()
        driver.receive(answer(Array(syn[14...].prefix(I.headerLength + 8))))
        return driver.stack.tcpConnectStatus(I.self, socket)
    }

    @Test func unreachableIsSoftOnAnEstablishedConnection() throws {
        let driver = StackDriver()
        let (id, ours) = try driver.acceptConnection(from: host)
        _ = try [UInt8](repeating: 1, count: 100).withSpan { span throws(SocketError) in
            try driver.stack.tcpSend(IPv4.self, id, span)
        }
        driver.advance(by: .zero)
        let segment = try #require(driver.sent.last)
        _ = driver.takeSent()
        #expect(segment.count > 54)
        driver.receive(host.ipv4Packet(.icmp, HostFrames.icmpv4(.destinationUnreachable(code: 1, nextHopMTU: 0),
                                                                body: Array(segment[14..<42]))))
        #expect(driver.stack.tcpConnectStatus(IPv4.self, id) == .established)
        // The data is still acknowledged as usual.
        driver.receive(host.tcp(40000, 80, sequence: 1001, acknowledgment: ours &+ 100, flags: .ack))
        #expect(driver.stack.tcpSockets(IPv4.self).first { $0.id == id }?.sendQueue == 0)
    }
}
