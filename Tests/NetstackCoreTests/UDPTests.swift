import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

@Suite struct UDPTests {
    let host = HostFrames()

    func udp(_ sport: UInt16, _ dport: UInt16, _ payload: [UInt8], source: IPv4Address? = nil,
             destination: IPv4Address? = nil, linkDestination: MACAddress? = nil) -> [UInt8] {
        let header = UDPHeader(sourcePort: sport, destinationPort: dport, payloadLength: payload.count)
        var bytes = [UInt8](repeating: 0, count: 8) + payload
        bytes.withMutableBytes {
            header.emit(into: &$0, source: source ?? host.ipv4, destination: destination ?? host.stackIPv4)
        }
        return host.ipv4Packet(.udp, bytes, source: source, destination: destination,
                               linkDestination: linkDestination)
    }

    func resolved() -> StackDriver {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: host.stackIPv4))
        _ = driver.takeSent()
        return driver
    }

    @Test func bindRules() throws {
        let stack = StackDriver().stack
        let a = stack.udpOpen(IPv4.self)
        let b = stack.udpOpen(IPv4.self)
        try stack.udpBind(IPv4.self, a, to: .any(port: 5000))
        #expect(throws: SocketError.addressInUse) { try stack.udpBind(IPv4.self, b, to: Endpoint(host.stackIPv4, 5000)) }
        #expect(throws: SocketError.addressNotAvailable) {
            try stack.udpBind(IPv4.self, b, to: Endpoint(IPv4Address(10, 0, 0, 1), 5001))
        }
        try stack.udpBind(IPv4.self, b, to: .any())
        let port = try #require(try stack.udpLocalEndpoint(IPv4.self, b)?.port)
        #expect((32768...60999).contains(port), "ephemeral ports come from Linux's range")
        stack.udpClose(IPv4.self, a)
        let c = stack.udpOpen(IPv4.self)
        try stack.udpBind(IPv4.self, c, to: .any(port: 5000))
        #expect(throws: SocketError.closed) { try stack.udpBind(IPv4.self, a, to: .any(port: 5002)) }
    }

    @Test func receiveQueueAndSend() throws {
        let driver = resolved()
        let stack = driver.stack
        let socket = stack.udpOpen(IPv4.self)
        try stack.udpBind(IPv4.self, socket, to: .any(port: 7000))
        driver.receive(udp(40000, 7000, Array("hello".utf8)))
        #expect(stack.takeSocketEvents() == [socket])
        let received = try stack.udpReceive(IPv4.self, socket) { ($0, $1.array) }
        #expect(received?.0.source == Endpoint(host.ipv4, 40000))
        #expect(received?.1 == Array("hello".utf8))
        #expect(try stack.udpReceive(IPv4.self, socket) { _, _ in true } == nil)

        try stack.udpSend(IPv4.self, socket, to: Endpoint(host.ipv4, 40000), payload: Array("back".utf8).span.bytes)
        driver.advance(by: .zero)
        let sent = driver.takeSent()
        guard case .udp(let header)? = sent.first?.transport else { Issue.record("no datagram sent"); return }
        #expect(header.sourcePort == 7000 && header.destinationPort == 40000)
    }

    @Test func noSocketMeansPortUnreachableButNotForBroadcasts() {
        let driver = resolved()
        driver.receive(udp(40000, 9999, [1, 2, 3]))
        let sent = driver.takeSent()
        guard case .icmpv4(.destinationUnreachable(code: 3, _))? = sent.first?.transport else {
            Issue.record("expected port unreachable, got \(sent)"); return
        }
        driver.receive(udp(40000, 9999, [1], destination: .broadcast, linkDestination: .broadcast))
        #expect(driver.takeSent().isEmpty)
        #expect(driver.stack.counters[.udpNoSocket] == 2)
    }

    @Test func broadcastReachesOnlyWildcardSockets() throws {
        let driver = resolved()
        let stack = driver.stack
        let wildcard = stack.udpOpen(IPv4.self)
        let specific = stack.udpOpen(IPv4.self)
        try stack.udpBind(IPv4.self, wildcard, to: .any(port: 68))
        try stack.udpBind(IPv4.self, specific, to: Endpoint(host.stackIPv4, 67))
        let payload = [UInt8](repeating: 1, count: 4)
        let header = UDPHeader(sourcePort: 1, destinationPort: 68, payloadLength: payload.count)
        var bytes = [UInt8](repeating: 0, count: 8) + payload
        bytes.withMutableBytes { header.emit(into: &$0, source: host.ipv4, destination: .broadcast) }
        driver.receive(host.ipv4Packet(.udp, bytes, destination: .broadcast, linkDestination: .broadcast))
        #expect(stack.udpIsReadable(IPv4.self, wildcard))
        var toSpecific = bytes
        toSpecific.withMutableBytes {
            UDPHeader(sourcePort: 1, destinationPort: 67, payloadLength: payload.count)
                .emit(into: &$0, source: host.ipv4, destination: .broadcast)
        }
        driver.receive(host.ipv4Packet(.udp, toSpecific, destination: .broadcast, linkDestination: .broadcast))
        #expect(!stack.udpIsReadable(IPv4.self, specific))
    }

    @Test func connectedSocketFiltersAndHearsErrors() throws {
        let driver = resolved()
        let stack = driver.stack
        let socket = stack.udpOpen(IPv4.self)
        try stack.udpConnect(IPv4.self, socket, to: Endpoint(host.ipv4, 53))
        let local = try #require(try stack.udpLocalEndpoint(IPv4.self, socket))
        #expect(local.address == host.stackIPv4, "connect picks the source address")
        // From another port: not for this socket, so port unreachable.
        driver.receive(udp(54, local.port, [9]))
        #expect(!stack.udpIsReadable(IPv4.self, socket))
        _ = driver.takeSent()
        // The peer says port unreachable about our datagram.
        try stack.udpSend(IPv4.self, socket, to: nil, payload: [1, 2, 3].span.bytes)
        driver.advance(by: .zero)
        let ours = try #require(driver.sent.last)
        _ = driver.takeSent()
        let quote = Array(ours[14...])
        driver.receive(host.ipv4Packet(.icmp, HostFrames.icmpv4(.destinationUnreachable(code: 3, nextHopMTU: 0), body: quote)))
        #expect(stack.udpIsReadable(IPv4.self, socket))
        #expect(throws: SocketError.connectionRefused) { _ = try stack.udpReceive(IPv4.self, socket) { _, _ in 0 } }
        #expect(try stack.udpReceive(IPv4.self, socket) { _, _ in 0 } == nil, "reported once")
    }

    @Test func floodOfANeverReadSocketStaysAtTheCap() throws {
        let driver = resolved()
        let stack = driver.stack
        let socket = stack.udpOpen(IPv4.self)
        try stack.udpBind(IPv4.self, socket, to: .any(port: 9000))
        try stack.udpSetReceiveBufferSize(IPv4.self, socket, 64 * 1024)
        for i in 0..<2000 { driver.receive(udp(1000, 9000, [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 1000))) }
        let info = try #require(stack.udpSockets(IPv4.self).first { $0.id == socket })
        #expect(info.queuedBytes + info.queuedDatagrams * 64 <= 64 * 1024)
        #expect(info.queuedDatagrams == 61, "64 KiB holds 61 datagrams of 1000 + 64 bytes")
        #expect(stack.counters[.udpReceiveQueueFull] == 1939)
        #expect(info.overflows == 1939)
        // The queued ones are intact and in order.
        for i in 0..<61 {
            let payload = try stack.udpReceive(IPv4.self, socket) { $1.array }
            #expect(payload == [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 1000))
        }
    }

    @Test func badChecksumsAndLengths() {
        let driver = resolved()
        var bad = udp(1, 7, [1, 2, 3, 4])
        bad[bad.count - 1] ^= 0xff
        driver.receive(bad)
        var long = udp(1, 7, [1, 2, 3, 4])
        long[14 + 20 + 5] = 200 // UDP length past the packet
        driver.receive(long)
        #expect(driver.stack.counters[WireError(.udp, .badChecksum)] == 1)
        #expect(driver.stack.counters[WireError(.udp, .truncated)] == 1)
        // IPv6 forbids a zero checksum.
        let v6 = host.ipv6Packet(.udp, [0, 1, 0, 7, 0, 12, 0, 0, 1, 2, 3, 4])
        driver.receive(v6)
        #expect(driver.stack.counters[WireError(.udp, .badChecksum)] == 2)
    }
}
