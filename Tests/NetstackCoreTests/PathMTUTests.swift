import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// Path MTU discovery (RFC 1191, RFC 8201) with the messages checked as RFC
/// 5927 says: a router with a smaller next link in the simulator, and forged
/// or odd messages sent straight to one stack.
@Suite struct PathMTUTests {
    let host = HostFrames()

    func dontFragment(_ frame: Dissection) -> Bool? {
        if case .ipv4(let header) = frame.network { header.dontFragment } else { nil }
    }

    func sendMSS<I: IPVersion>(_ stack: Stack, _ version: I.Type, _ id: SocketID) -> Int? {
        stack.tcpSockets(I.self).first { $0.id == id }?.sendMSS
    }

    /// Moves `count` bytes left to right across the router; returns the
    /// client socket once all arrived intact.
    func bulk<I: IPVersion>(_ simulation: Simulation, _ version: I.Type, to server: I.Address, port: UInt16,
                            count: Int) throws -> SocketID {
        let (client, receiver) = try simulation.bulkTransfer(I.self, to: server, port: port, count: count)
        #expect(receiver?.received == count, "all \(count) bytes across the router")
        #expect(receiver?.error == nil && receiver?.mismatches == 0)
        return client
    }

    @Test func tcpLearnsThePathMTUAndForgetsItAfterTenMinutes() throws {
        var faults = LinkFaults()
        faults.routerMTU = 1000
        let simulation = Simulation(faults: faults, seed: 3)
        let client = try bulk(simulation, IPv4.self, to: LinkedStacks.hostIPv4, port: 5001, count: 300_000)
        // 1000 less 20 (IP), 20 (TCP) and 12 (timestamps).
        #expect(sendMSS(simulation.left, IPv4.self, client) == 948)
        #expect(simulation.left.counters[.pathMTULowered] == 1)
        let refused = simulation.framesTooBig
        #expect(refused >= 1 && refused <= 12, "only the first flight was too big (\(refused))")
        // A second connection to the same host starts at the learned size.
        let second = try bulk(simulation, IPv4.self, to: LinkedStacks.hostIPv4, port: 5002, count: 50_000)
        #expect(sendMSS(simulation.left, IPv4.self, second) == 948)
        #expect(simulation.framesTooBig == refused, "nothing too big once learned")
        // Ten minutes on, the path is tried at the link MTU again (RFC 1191
        // §6.3), found too small again and learned again.
        simulation.run(for: .seconds(601)) { _ in false }
        _ = try bulk(simulation, IPv4.self, to: LinkedStacks.hostIPv4, port: 5003, count: 50_000)
        #expect(simulation.left.counters[.pathMTULowered] == 2)
        #expect(simulation.framesTooBig > refused)
    }

    @Test func tcpOverIPv6LearnsFromPacketTooBig() throws {
        var faults = LinkFaults()
        faults.routerMTU = 1400
        let simulation = Simulation(faults: faults, seed: 4)
        let client = try bulk(simulation, IPv6.self, to: LinkedStacks.hostIPv6, port: 5001, count: 300_000)
        // 1400 less 40 (IPv6), 20 (TCP) and 12 (timestamps).
        #expect(sendMSS(simulation.left, IPv6.self, client) == 1328)
        #expect(simulation.left.counters[.pathMTULowered] == 1)
    }

    /// The stack with one TCP connection from the host (host port 40000 to
    /// stack port 80) with 4000 bytes in flight; returns the driver, the
    /// socket and the sequence number of the first byte in flight.
    func connectionWithDataInFlight() throws -> (StackDriver, SocketID, UInt32) {
        let driver = StackDriver()
        let (id, first) = try driver.acceptConnection(from: host)
        let data = [UInt8](repeating: 9, count: 4000)
        _ = try data.withSpan { span throws(SocketError) in try driver.stack.tcpSend(IPv4.self, id, span) }
        driver.advance(by: .zero)
        #expect(driver.takeSent().contains { $0.payload.count == 1460 }, "full segments in flight")
        return (driver, id, first)
    }

    func fragmentationNeeded(quoting packet: [UInt8], mtu: UInt16) -> [UInt8] {
        host.ipv4Packet(.icmp, HostFrames.icmpv4(.destinationUnreachable(code: 4, nextHopMTU: mtu),
                                                 body: Array(packet.prefix(28))))
    }

    /// A quote of a segment from the stack to the host with sequence `sequence`.
    func quotedSegment(sequence: UInt32, totalLength: Int = 1500) -> [UInt8] {
        var ip: [UInt8] = [0x45, 0, UInt8(totalLength >> 8), UInt8(totalLength & 0xff), 0, 0, 0x40, 0, 64, 6, 0, 0]
        ip += [192, 168, 69, 1, 192, 168, 69, 100]
        let tcp: [UInt8] = [0, 80, 0x9c, 0x40] + withUnsafeBytes(of: sequence.bigEndian, Array.init)
        return ip + tcp
    }

    @Test func messagesAreCheckedAndBounded() throws {
        let (driver, id, firstSequence) = try connectionWithDataInFlight()
        #expect(sendMSS(driver.stack, IPv4.self, id) == 1460)
        // RFC 5927 §4.1: a sequence number not in flight is a forgery.
        driver.receive(fragmentationNeeded(quoting: quotedSegment(sequence: firstSequence &- 100_000), mtu: 1000))
        #expect(sendMSS(driver.stack, IPv4.self, id) == 1460)
        #expect(driver.stack.counters[.pathMTULowered] == 0)
        // A real one at 1000: DF stays set.
        driver.receive(fragmentationNeeded(quoting: quotedSegment(sequence: firstSequence), mtu: 1000))
        #expect(sendMSS(driver.stack, IPv4.self, id) == 960)
        let at1000 = driver.takeSent().filter { $0.payload.count > 0 }
        #expect(!at1000.isEmpty && at1000.allSatisfy { dontFragment($0) == true })
        // In flight, but claiming 200 bytes: held at the 552 floor (RFC 5927
        // §7.2), and sent without DF so that the router may fragment (as
        // Linux does when it locks a path at min_pmtu).
        driver.receive(fragmentationNeeded(quoting: quotedSegment(sequence: firstSequence), mtu: 200))
        #expect(sendMSS(driver.stack, IPv4.self, id) == 512)
        let resent = driver.takeSent().filter { $0.payload.count > 0 }
        #expect(!resent.isEmpty && resent.allSatisfy { $0.payload.count <= 512 }, "in flight sent again, smaller")
        #expect(resent.allSatisfy { dontFragment($0) == false }, "DF clear below the floor")
        // A larger MTU never raises the estimate (RFC 1191 §6.1).
        driver.receive(fragmentationNeeded(quoting: quotedSegment(sequence: firstSequence), mtu: 1400))
        #expect(sendMSS(driver.stack, IPv4.self, id) == 512)
    }

    @Test func anOldRouterWithoutAnMTUGetsAPlateau() throws {
        let (driver, id, firstSequence) = try connectionWithDataInFlight()
        // RFC 1191 §5/§7: no MTU, a refused packet of 1500 bytes: 1492.
        driver.receive(fragmentationNeeded(quoting: quotedSegment(sequence: firstSequence), mtu: 0))
        #expect(sendMSS(driver.stack, IPv4.self, id) == 1452)
        driver.receive(fragmentationNeeded(quoting: quotedSegment(sequence: firstSequence, totalLength: 1492), mtu: 0))
        #expect(sendMSS(driver.stack, IPv4.self, id) == 966, "the next plateau, 1006")
    }

    @Test func connectedUDPSocketLearnsAndFragmentsAtThePathMTU() throws {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: host.stackIPv4))
        _ = driver.takeSent()
        let socket = driver.stack.udpOpen(IPv4.self)
        try driver.stack.udpBind(IPv4.self, socket, to: .any(port: 7000))
        try driver.stack.udpConnect(IPv4.self, socket, to: Endpoint(host.ipv4, 9))
        let payload = [UInt8](repeating: 1, count: 1400)
        func send() throws {
            _ = try payload.withSpan { span throws(SocketError) in
                try driver.stack.udpSend(IPv4.self, socket, to: nil, payload: span)
            }
        }
        try send()
        driver.advance(by: .zero)
        let sent = driver.sent
        _ = driver.takeSent()
        #expect(sent.count == 1)
        var quote = Array(sent[0][14...].prefix(28))
        quote[2] = 0x05 // what the router saw: 1428 bytes
        driver.receive(fragmentationNeeded(quoting: quote, mtu: 1000))
        #expect(driver.stack.counters[.pathMTULowered] == 1)
        #expect(throws: SocketError.messageTooLong) { try send() }
        try send()
        driver.advance(by: .zero)
        let fragments = driver.takeSent()
        #expect(fragments.count == 2 && fragments.allSatisfy { $0.payload.count + 20 <= 1000 })
    }
}
