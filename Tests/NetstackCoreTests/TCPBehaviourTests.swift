import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// TCP behaviours one at a time, between two stacks on the simulator.
@Suite struct TCPBehaviourTests {
    static let server = LinkedStacks.hostIPv4
    /// The host side of the tests that drive one stack frame by frame.
    let host = HostFrames()

    /// Listens on the right stack and connects from the left; returns both ends.
    func connect(_ simulation: Simulation, port: UInt16 = 5000) throws -> (client: SocketID, server: SocketID,
                                                                           listener: SocketID) {
        let listener = simulation.right.tcpOpen(IPv4.self)
        try simulation.right.tcpBind(IPv4.self, listener, to: .any(port: port))
        try simulation.right.tcpListen(IPv4.self, listener, backlog: 8)
        let client = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpConnect(IPv4.self, client, to: Endpoint(Self.server, port))
        var accepted: SocketID?
        simulation.run(for: .seconds(5)) { sim in
            if accepted == nil { accepted = try? sim.right.tcpAccept(IPv4.self, listener) }
            return accepted != nil && sim.left.tcpConnectStatus(IPv4.self, client) == .established
        }
        return (client, try #require(accepted), listener)
    }

    func send(_ stack: Stack, _ id: SocketID, _ bytes: [UInt8]) throws -> Int {
        try bytes.withSpan { span throws(SocketError) in try stack.tcpSend(IPv4.self, id, span) }
    }

    func receive(_ stack: Stack, _ id: SocketID) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        let result: Result<Int?, SocketError> = buffer.withUnsafeMutableBytes { bytes in
            Result { () throws(SocketError) in try stack.tcpReceive(IPv4.self, id, into: bytes) }
        }
        return try result.get().map { Array(buffer[0..<$0]) }
    }

    func state(_ stack: Stack, _ id: SocketID) -> TCPState? {
        stack.tcpSockets(IPv4.self).first { $0.id == id }?.state
    }

    @Test func ringsHoldMemoryOnlyWhileTheyHoldData() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 5)
        let (client, server, _) = try connect(simulation)
        func memory(_ stack: Stack, _ id: SocketID) -> Int {
            stack.tcpSockets(IPv4.self).first { $0.id == id }?.bufferMemory ?? -1
        }
        #expect(memory(simulation.left, client) == 0 && memory(simulation.right, server) == 0, "nothing before data")
        #expect(try send(simulation.left, client, [42]) == 1)
        simulation.run(for: .seconds(1)) { $0.right.tcpReadable(IPv4.self, server) == 1 }
        #expect(memory(simulation.right, server) > 0, "the byte waits in the receive ring")
        #expect(try receive(simulation.right, server) == [42])
        simulation.run(for: .seconds(1)) { sim in
            sim.left.tcpSockets(IPv4.self).first { $0.id == client }?.sendQueue == 0
        }
        #expect(memory(simulation.left, client) == 0, "acknowledged: the send ring let go")
        #expect(memory(simulation.right, server) == 0, "read: the receive ring let go")
        // A bulk burst grows the rings, past their small size, up to what is held.
        let burst = [UInt8](repeating: 7, count: 200_000)
        #expect(try send(simulation.left, client, burst) == 200_000)
        #expect(memory(simulation.left, client) >= 200_000)
        #expect(memory(simulation.left, client) <= 256 * 1024 + 128, "never past the buffer size")
    }

    @Test func simultaneousOpen() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 1)
        let left = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpBind(IPv4.self, left, to: .any(port: 1111))
        let right = simulation.right.tcpOpen(IPv4.self)
        try simulation.right.tcpBind(IPv4.self, right, to: .any(port: 2222))
        try simulation.left.tcpConnect(IPv4.self, left, to: Endpoint(Self.server, 2222))
        try simulation.right.tcpConnect(IPv4.self, right, to: Endpoint(LinkedStacks.stackIPv4, 1111))
        let done = simulation.run(for: .seconds(10)) { sim in
            sim.left.tcpConnectStatus(IPv4.self, left) == .established
                && sim.right.tcpConnectStatus(IPv4.self, right) == .established
        }
        #expect(done, "both sides established (RFC 9293 §3.5 figure 7)")
        #expect(try send(simulation.left, left, [1, 2, 3]) == 3)
        simulation.run(for: .seconds(1)) { sim in sim.right.tcpReadable(IPv4.self, right) > 0 }
        #expect(try receive(simulation.right, right) == [1, 2, 3])
    }

    @Test func halfCloseThenTimeWait() throws {
        var faults = LinkFaults()
        faults.delay = .milliseconds(1)
        let simulation = Simulation(faults: faults, seed: 2) { $0.tcp.timeWait = .seconds(4) }
        let (client, server, _) = try connect(simulation)
        // The client is done sending; the server keeps talking.
        try simulation.left.tcpShutdown(IPv4.self, client, read: false, write: true)
        var endOfStream = false
        simulation.run(for: .seconds(1)) { sim in
            if !endOfStream { endOfStream = (try? receive(sim.right, server)) == [] }
            return endOfStream && state(sim.left, client) == .finWait2
        }
        #expect(state(simulation.right, server) == .closeWait)
        #expect(state(simulation.left, client) == .finWait2)
        #expect(try send(simulation.right, server, Array("still here".utf8)) == 10)
        simulation.run(for: .seconds(1)) { sim in sim.left.tcpReadable(IPv4.self, client) > 0 }
        #expect(try receive(simulation.left, client) == Array("still here".utf8))
        // The server closes: the client, which closed first, waits in TIME-WAIT.
        simulation.right.tcpClose(IPv4.self, server)
        simulation.run(for: .seconds(1)) { sim in state(sim.left, client) == .timeWait }
        #expect(state(simulation.left, client) == .timeWait)
        #expect(try receive(simulation.left, client) == [], "end of stream")
        let enteredTimeWait = simulation.now
        simulation.left.tcpClose(IPv4.self, client)
        simulation.run(for: .seconds(10)) { sim in sim.left.tcpSockets(IPv4.self).isEmpty }
        #expect(simulation.left.tcpSockets(IPv4.self).isEmpty)
        #expect(simulation.now - enteredTimeWait >= .seconds(4), "TIME-WAIT lasts 2·MSL")
        #expect(simulation.right.tcpSockets(IPv4.self).count == 1, "only the listener is left")
    }

    @Test func connectToAClosedPortIsRefused() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 3)
        let client = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpConnect(IPv4.self, client, to: Endpoint(Self.server, 4444))
        simulation.run(for: .seconds(5)) { sim in sim.left.tcpConnectStatus(IPv4.self, client) != .inProgress }
        #expect(simulation.left.tcpConnectStatus(IPv4.self, client) == .failed(.connectionRefused))
    }

    @Test func connectTimesOutAfterItsRetries() throws {
        let simulation = Simulation(faults: LinkFaults(loss: 1), seed: 4) { $0.tcp.synRetries = 2 }
        let client = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpConnect(IPv4.self, client, to: Endpoint(Self.server, 5000))
        simulation.run(for: .seconds(60)) { sim in sim.left.tcpConnectStatus(IPv4.self, client) != .inProgress }
        #expect(simulation.left.tcpConnectStatus(IPv4.self, client) == .failed(.timedOut))
        // 1 s, then 2 s, then 4 s (RFC 6298 backoff) before giving up.
        #expect(simulation.now >= .zero + .seconds(7) && simulation.now < .zero + .seconds(8))
        #expect(simulation.left.counters[.tcpTimeouts] == 2)
    }

    /// The receiver stops reading: the window closes, the sender fills what
    /// is offered (never more than the buffer holds, however the scaled window
    /// rounds), probes it and loses nothing; when the receiver reads, the
    /// window update goes out at once, not after a timer (the problem smoltcp has).
    @Test func zeroWindowProbesAndImmediateWindowUpdate() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 5) {
            $0.tcp.receiveBuffer = 64 * 1024
            $0.tcp.sendBuffer = 256 * 1024
        }
        let (client, server, _) = try connect(simulation)
        let payload = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var sent = 0
        simulation.run(for: .seconds(30), step: { sim in
            if sent < payload.count {
                sent += (try? send(sim.left, client, Array(payload[sent...]))) ?? 0
            }
        }, until: { sim in sim.right.tcpReadable(IPv4.self, server) >= 64 * 1024 })
        // Let the sender sit at the closed window for a while: it probes.
        let probesBefore = simulation.left.counters[.tcpSegmentsSent]
        simulation.run(for: .seconds(3)) { _ in false }
        #expect(simulation.left.counters[.tcpSegmentsSent] > probesBefore, "zero-window probes")
        // The buffer rounded up to whole segments, plus at most the 128
        // bytes a window rounded up to the scale allows.
        let buffer = (64 * 1024 + 1447) / 1448 * 1448
        #expect((buffer...buffer + 128).contains(simulation.right.tcpReadable(IPv4.self, server)))
        #expect(simulation.right.counters[.tcpReceiveBufferFull] == 0, "data offered a window was refused")
        // Read everything; the sender must resume within a round trip or so.
        var received = try receive(simulation.right, server) ?? []
        let readAt = simulation.now
        let before = received.count
        simulation.run(for: .seconds(1), step: { sim in
            if sent < payload.count { sent += (try? send(sim.left, client, Array(payload[sent...]))) ?? 0 }
        }, until: { sim in sim.right.tcpReadable(IPv4.self, server) > 0 })
        #expect(simulation.now - readAt < .milliseconds(20), "resumed after \(simulation.now - readAt)")
        simulation.run(for: .seconds(30), step: { sim in
            if sent < payload.count { sent += (try? send(sim.left, client, Array(payload[sent...]))) ?? 0 }
            received += (try? receive(sim.right, server) ?? []) ?? []
        }, until: { _ in received.count == payload.count })
        #expect(received == payload, "nothing lost or doubled across the closed window (\(before) first)")
    }

    @Test func closingWithUnreadDataResets() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 6)
        let (client, server, _) = try connect(simulation)
        _ = try send(simulation.left, client, [1, 2, 3, 4])
        simulation.run(for: .seconds(1)) { sim in sim.right.tcpReadable(IPv4.self, server) == 4 }
        simulation.right.tcpClose(IPv4.self, server)
        simulation.run(for: .seconds(1)) { sim in sim.left.tcpConnectStatus(IPv4.self, client) != .established }
        #expect(throws: SocketError.connectionReset) { _ = try receive(simulation.left, client) }
        #expect(simulation.right.counters[.tcpResetsSent] == 1)
    }

    @Test func keepaliveDetectsAVanishedPeer() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 7) {
            $0.tcp.keepalive = KeepaliveTiming(idle: .seconds(10), interval: .seconds(1), probes: 3)
        }
        let (client, _, _) = try connect(simulation)
        try simulation.left.tcpSetKeepalive(IPv4.self, client, true)
        // A quiet but live peer answers the probes: the connection stays.
        simulation.run(for: .seconds(25)) { _ in false }
        #expect(simulation.left.tcpConnectStatus(IPv4.self, client) == .established)
        // The peer vanishes (its stack stops answering): probes go unanswered.
        simulation.dropAll = true
        let gone = simulation.now
        simulation.run(for: .seconds(60)) { sim in sim.left.tcpConnectStatus(IPv4.self, client) != .established }
        #expect(simulation.left.tcpConnectStatus(IPv4.self, client) != .established)
        #expect(simulation.now - gone <= .seconds(15))
    }

    /// TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT: a socket's own timing
    /// beats the stack's two hours, and a listener passes its timing on to
    /// the connections it accepts.
    @Test func keepaliveTimingIsPerSocket() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 17)
        let listener = simulation.right.tcpOpen(IPv4.self)
        try simulation.right.tcpBind(IPv4.self, listener, to: .any(port: 5000))
        try simulation.right.tcpSetKeepalive(IPv4.self, listener, true)
        try simulation.right.tcpSetKeepaliveTiming(IPv4.self, listener, idle: .seconds(20), interval: .seconds(2),
                                                   probes: 2)
        try simulation.right.tcpListen(IPv4.self, listener, backlog: 8)
        let client = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpConnect(IPv4.self, client, to: Endpoint(Self.server, 5000))
        var server: SocketID?
        simulation.run(for: .seconds(5)) { sim in
            if server == nil { server = try? sim.right.tcpAccept(IPv4.self, listener) }
            return server != nil && sim.left.tcpConnectStatus(IPv4.self, client) == .established
        }
        let accepted = try #require(server)
        try simulation.left.tcpSetKeepalive(IPv4.self, client, true)
        try simulation.left.tcpSetKeepaliveTiming(IPv4.self, client, idle: .seconds(5))
        try simulation.left.tcpSetKeepaliveTiming(IPv4.self, client, interval: .seconds(1), probes: 3)
        #expect(throws: SocketError.self) { try simulation.left.tcpSetKeepaliveTiming(IPv4.self, client, idle: .zero) }
        #expect(throws: SocketError.self) {
            try simulation.left.tcpSetKeepaliveTiming(IPv4.self, client, interval: .seconds(40_000))
        }
        #expect(throws: SocketError.self) { try simulation.left.tcpSetKeepaliveTiming(IPv4.self, client, probes: 128) }
        #expect(throws: SocketError.self) {
            try simulation.left.tcpSetKeepaliveTiming(IPv4.self, client, idle: .milliseconds(1500))
        }
        // The path goes dark: the client gives up after 5 s idle and 3 probes
        // a second apart, the server after 20 s and 2 probes 2 s apart.
        simulation.dropAll = true
        let start = simulation.now
        simulation.run(for: .seconds(60)) { sim in sim.left.tcpConnectStatus(IPv4.self, client) != .established }
        let clientGaveUp = simulation.now - start
        #expect(simulation.left.tcpConnectStatus(IPv4.self, client) == .failed(.timedOut))
        // Idle counts from the last segment received, a moment before the dark.
        #expect(clientGaveUp > .milliseconds(7_900) && clientGaveUp <= .seconds(8), "\(clientGaveUp)")
        simulation.run(for: .seconds(60)) { sim in state(sim.right, accepted) != .established }
        let serverGaveUp = simulation.now - start
        #expect(serverGaveUp > .milliseconds(23_900) && serverGaveUp <= .seconds(24), "\(serverGaveUp)")
    }

    /// Urgent data (RFC 9293 §3.8.5, RFC 6093): sent with `urgent`, it is
    /// marked on the way (a 16-bit pointer reaches 64 KiB ahead, so the mark
    /// lands on the right byte once the segments near it arrive), stays
    /// inline, and a read stops just before the urgent byte.
    @Test func urgentDataIsMarkedAndReadInline() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 21)
        let (client, server, _) = try connect(simulation)
        let bulk = (0..<100_000).map { UInt8(truncatingIfNeeded: $0) }
        #expect(try bulk.withSpan { span throws(SocketError) in
            try simulation.left.tcpSend(IPv4.self, client, span, urgent: true)
        } == 100_000)
        simulation.run(for: .seconds(5)) { $0.right.tcpReadable(IPv4.self, server) == 100_000 }
        #expect(simulation.right.tcpUrgentMark(IPv4.self, server) == 99_999)
        #expect(simulation.right.counters[.tcpUrgentReceived] >= 1)
        var received: [UInt8] = []
        while simulation.right.tcpUrgentMark(IPv4.self, server) != 0, let piece = try receive(simulation.right, server) {
            received += piece
        }
        #expect(received.count == 99_999, "reads stopped at the mark")
        #expect(try receive(simulation.right, server) == [bulk[99_999]], "then the urgent byte, inline")
        #expect(simulation.right.tcpUrgentMark(IPv4.self, server) == nil)
        #expect(received == Array(bulk[0..<99_999]))
        // Once acknowledged, urgent mode ends: later data has no mark.
        simulation.run(for: .seconds(1)) { _ in false }
        #expect(try send(simulation.left, client, [1, 2, 3]) == 3)
        simulation.run(for: .seconds(1)) { $0.right.tcpReadable(IPv4.self, server) == 3 }
        #expect(simulation.right.tcpUrgentMark(IPv4.self, server) == nil)
        #expect(try receive(simulation.right, server) == [1, 2, 3])
    }

    @Test func userTimeoutAbortsWhenNothingIsAcknowledged() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 8)
        let (client, _, _) = try connect(simulation)
        try simulation.left.tcpSetUserTimeout(IPv4.self, client, .seconds(3))
        // The path goes dark with data in flight.
        simulation.dropAll = true
        _ = try send(simulation.left, client, [UInt8](repeating: 1, count: 1000))
        let start = simulation.now
        simulation.run(for: .seconds(30)) { sim in sim.left.tcpConnectStatus(IPv4.self, client) != .established }
        #expect(simulation.left.tcpConnectStatus(IPv4.self, client) == .failed(.timedOut))
        #expect(simulation.now - start >= .seconds(3) && simulation.now - start < .seconds(5))
    }

    @Test func nagleCoalescesSmallWritesUnlessNoDelay() throws {
        for noDelay in [false, true] {
            let simulation = Simulation(faults: LinkFaults(), seed: 10)
            let (client, server, _) = try connect(simulation)
            try simulation.left.tcpSetNoDelay(IPv4.self, client, noDelay)
            let before = simulation.left.counters[.tcpSegmentsSent]
            for _ in 0..<20 { _ = try send(simulation.left, client, [7]) }
            simulation.run(for: .seconds(1)) { sim in sim.right.tcpReadable(IPv4.self, server) == 20 }
            #expect(simulation.right.tcpReadable(IPv4.self, server) == 20)
            let segments = simulation.left.counters[.tcpSegmentsSent] - before
            if noDelay {
                #expect(segments >= 20, "each write goes at once")
            } else {
                #expect(segments <= 3, "one byte out, the rest waits for its ACK: \(segments)")
            }
        }
    }

    /// `maximumConnectionsPerPeer`: SYNs past it are dropped and counted,
    /// and a connection that ends makes room again.
    @Test func connectionsFromOnePeerAreCapped() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 12, right: { $0.tcp.maximumConnectionsPerPeer = 3 })
        let listener = simulation.right.tcpOpen(IPv4.self)
        try simulation.right.tcpBind(IPv4.self, listener, to: .any(port: 7))
        try simulation.right.tcpListen(IPv4.self, listener, backlog: 16)
        let clients = try (0..<5).map { _ in
            let id = simulation.left.tcpOpen(IPv4.self)
            try simulation.left.tcpConnect(IPv4.self, id, to: Endpoint(Self.server, 7))
            return id
        }
        simulation.run(for: .milliseconds(500)) { _ in false }
        let established = clients.filter { simulation.left.tcpConnectStatus(IPv4.self, $0) == .established }
        #expect(established.count == 3, "\(established.count) connected")
        #expect(simulation.right.counters[.tcpConnectionLimit] >= 2)
        // One ends (a reset frees it at once): a waiting client's SYN
        // retransmission gets through.
        simulation.left.tcpAbort(IPv4.self, established[0])
        simulation.run(for: .seconds(3)) { _ in false }
        let waited = clients.filter { !established.contains($0) }
        let joined = waited.filter { simulation.left.tcpConnectStatus(IPv4.self, $0) == .established }
        #expect(joined.count == 1, "one waiting client took the freed place")
    }

    /// `maximumConnections` bounds connects too: ENOBUFS, nothing queued.
    @Test func aConnectPastTheConnectionLimitFails() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 13) { $0.tcp.maximumConnections = 1 }
        let first = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpConnect(IPv4.self, first, to: Endpoint(Self.server, 9))
        let second = simulation.left.tcpOpen(IPv4.self)
        #expect(throws: SocketError.noBufferSpace) {
            try simulation.left.tcpConnect(IPv4.self, second, to: Endpoint(Self.server, 9))
        }
        #expect(simulation.left.counters[.tcpConnectionLimit] == 1)
    }

    /// A flood of SYNs fills the SYN queue; after that, SYN cookies keep
    /// answering without keeping state, and a real client still connects.
    @Test func synCookiesWhenTheSynQueueIsFull() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 11) { $0.tcp.synQueueLimit = 4 }
        let listener = simulation.right.tcpOpen(IPv4.self)
        try simulation.right.tcpBind(IPv4.self, listener, to: .any(port: 7))
        try simulation.right.tcpListen(IPv4.self, listener, backlog: 8)
        // Fifty connections from the left whose SYN-ACKs never come back:
        // they stay half-open on the right, as a SYN flood's would.
        // Resolve each other's link addresses first (a refused connection).
        let probe = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpConnect(IPv4.self, probe, to: Endpoint(Self.server, 1))
        simulation.run(for: .seconds(1)) { sim in sim.left.tcpConnectStatus(IPv4.self, probe) != .inProgress }
        simulation.dropToLeft = true
        for port in 0..<50 {
            let id = simulation.left.tcpOpen(IPv4.self)
            try simulation.left.tcpBind(IPv4.self, id, to: .any(port: UInt16(20_000 + port)))
            try simulation.left.tcpConnect(IPv4.self, id, to: Endpoint(Self.server, 7))
        }
        simulation.run(for: .milliseconds(50)) { _ in false }
        let halfOpen = simulation.right.tcpSockets(IPv4.self).filter { $0.state == .synReceived }.count
        #expect(halfOpen == 4, "the SYN queue holds \(halfOpen)")
        #expect(simulation.right.counters[.tcpSynCookiesSent] == 46, "cookies answered the rest")
        #expect(simulation.right.counters[.tcpListenOverflow] == 0, "a SYN answered with a cookie is no drop")
        // A real client, while the queue is full: its SYN gets a cookie, and
        // its ACK makes an established connection.
        simulation.dropToLeft = false
        let client = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpConnect(IPv4.self, client, to: Endpoint(Self.server, 7))
        var accepted: SocketID?
        simulation.run(for: .seconds(2)) { sim in
            if accepted == nil { accepted = try? sim.right.tcpAccept(IPv4.self, listener) }
            return accepted != nil
        }
        #expect(accepted != nil)
        #expect(simulation.left.tcpConnectStatus(IPv4.self, client) == .established)
        if let accepted {
            _ = try send(simulation.left, client, Array("through a cookie".utf8))
            simulation.run(for: .seconds(1)) { sim in sim.right.tcpReadable(IPv4.self, accepted) > 0 }
            #expect(try receive(simulation.right, accepted) == Array("through a cookie".utf8))
        }
    }

    /// Under a flood the handshake's ACK and the first data can both be
    /// lost; the peer's FIN then acknowledges our cookie but starts past its
    /// first byte. It is dropped, not reset, and the retransmission from the
    /// first byte opens the connection with nothing lost. An ACK of no
    /// cookie of ours is still reset.
    @Test func aCookieConnectionSurvivesItsLostFirstSegments() throws {
        var configuration = FixtureReplay.replayConfiguration
        configuration.tcp.synQueueLimit = 0
        let driver = StackDriver(configuration)
        let host = HostFrames()
        driver.receive(host.arp(.request, target: host.stackIPv4))
        let listener = driver.stack.tcpOpen(IPv4.self)
        try driver.stack.tcpBind(IPv4.self, listener, to: .any(port: 7))
        try driver.stack.tcpListen(IPv4.self, listener, backlog: 4)
        _ = driver.takeSent()
        driver.receive(host.tcp(40000, 7, sequence: 1000, acknowledgment: 0, flags: .syn,
                                options: [.maximumSegmentSize(1460)]))
        guard case .tcp(let synAck)? = driver.takeSent().first?.transport else {
            Issue.record("no SYN-ACK")
            return
        }
        #expect(driver.stack.counters[.tcpSynCookiesSent] == 1)
        let ours = synAck.sequenceNumber &+ 1
        // The ACK and "hello" (1001–1005) were lost; the FIN is at 1006.
        driver.receive(host.tcp(40000, 7, sequence: 1006, acknowledgment: ours, flags: [.fin, .ack]))
        #expect(driver.takeSent().isEmpty, "no reset")
        #expect(driver.stack.counters[.tcpCookieAhead] == 1)
        #expect(try driver.stack.tcpAccept(IPv4.self, listener) == nil)
        // An acknowledgment of something we never sent is reset.
        driver.receive(host.tcp(40001, 7, sequence: 1006, acknowledgment: ours, flags: [.fin, .ack]))
        driver.receive(host.tcp(40000, 7, sequence: 1006, acknowledgment: ours &+ 0x1000, flags: [.fin, .ack]))
        let resets = driver.takeSentSegments()
        #expect(resets.map(\.flags) == [.rst, .rst])
        #expect(driver.stack.counters[.tcpNoSocket] == 2)
        // The peer's retransmission from its first byte, FIN included.
        driver.receive(host.tcp(40000, 7, sequence: 1001, acknowledgment: ours, flags: [.fin, .ack, .psh],
                                payload: Array("hello".utf8)))
        let accepted = try #require(try driver.stack.tcpAccept(IPv4.self, listener))
        #expect(driver.stack.counters[.tcpSynCookiesAccepted] == 1)
        #expect(try receive(driver.stack, accepted) == Array("hello".utf8))
        // The ACK of a FIN waits a moment for the application's own FIN.
        driver.advance(by: .milliseconds(1))
        let answer = driver.takeSentSegments().last
        #expect(answer?.acknowledgmentNumber == 1007, "data and FIN acknowledged")
    }

    /// Fast retransmit of a flight that ends with the FIN (no SACK, three
    /// duplicate ACKs): the retransmission carries the data and the FIN
    /// flag, never a byte of the ring past the data in the FIN's place.
    @Test func fastRetransmitOfTheLastDataCarriesTheFinAsAFlag() throws {
        let host = HostFrames()
        let driver = StackDriver()
        let (id, ours) = try driver.acceptConnection(from: host)
        _ = try Array("hello".utf8).withSpan { span throws(SocketError) in try driver.stack.tcpSend(IPv4.self, id, span) }
        driver.stack.tcpClose(IPv4.self, id)
        driver.advance(by: .milliseconds(1))
        let sent = driver.takeSent().compactMap { d -> Int? in
            if case .tcp(let tcp) = d.transport { return d.payload.count + (tcp.flags.contains(.fin) ? 1 : 0) }
            return nil
        }
        #expect(sent.reduce(0, +) == 6, "hello and the FIN")
        for _ in 0..<3 {
            driver.receive(host.tcp(40000, 80, sequence: 1001, acknowledgment: ours, flags: .ack))
        }
        let resent = driver.takeSent().compactMap { d -> (TCPHeader, Int)? in
            if case .tcp(let tcp) = d.transport { return (tcp, d.payload.count) } else { return nil }
        }
        #expect(resent.count == 1, "one fast retransmission")
        if let (header, length) = resent.first {
            #expect(header.sequenceNumber == ours)
            #expect(length == 5, "the data alone")
            #expect(header.flags.contains(.fin))
        }
    }

    /// A connection from the host (port 40000, its next sequence number
    /// 1002) that the stack closed first, now in TIME-WAIT: the driver and
    /// the stack's sequence number of its FIN.
    func timeWait() throws -> (StackDriver, UInt32) {
        let driver = StackDriver()
        let (id, ours) = try driver.acceptConnection(from: host)
        driver.stack.tcpClose(IPv4.self, id)
        driver.advance(by: .milliseconds(1))
        _ = driver.takeSent()
        // The host acknowledges our FIN and sends its own: TIME-WAIT.
        driver.receive(host.tcp(40000, 80, sequence: 1001, acknowledgment: ours &+ 1, flags: [.fin, .ack]))
        #expect(driver.stack.tcpSockets(IPv4.self).contains { $0.state == .timeWait })
        _ = driver.takeSent()
        return (driver, ours)
    }

    /// In TIME-WAIT a bare ACK at RCV.NXT is taken silently, and so is an
    /// acceptable segment without the ACK bit; anything else (here an ACK
    /// past it) is answered with an ACK, at most one per 500 ms (RFC 9293
    /// §3.10.7.4, as Linux's TIME-WAIT answers).
    @Test func timeWaitAnswersWhatIsNotABareACKAtRcvNxt() throws {
        let (driver, ours) = try timeWait()
        func acks() -> [TCPHeader] { driver.takeSentSegments() }
        driver.receive(host.tcp(40000, 80, sequence: 1002, acknowledgment: ours &+ 1, flags: .ack))
        #expect(acks().isEmpty, "a bare ACK at RCV.NXT")
        driver.advance(by: .seconds(1))
        driver.receive(host.tcp(40000, 80, sequence: 1003, acknowledgment: ours &+ 1, flags: .ack))
        let answer = acks()
        #expect(answer.map(\.flags) == [.ack])
        #expect(answer.first?.acknowledgmentNumber == 1002)
        driver.receive(host.tcp(40000, 80, sequence: 1003, acknowledgment: ours &+ 1, flags: .ack))
        #expect(acks().isEmpty, "one per 500 ms")
        // Inside the window with the ACK bit off (a FIN alone): dropped
        // (RFC 9293 §3.10.7.4, fifth check); outside it, answered (first check).
        driver.advance(by: .seconds(1))
        driver.receive(host.tcp(40000, 80, sequence: 1003, acknowledgment: 0, flags: .fin))
        #expect(acks().isEmpty, "no ACK bit, in the window")
        driver.receive(host.tcp(40000, 80, sequence: 900, acknowledgment: 0, flags: .fin))
        #expect(acks().map(\.acknowledgmentNumber) == [1002], "no ACK bit, out of the window")
    }

    /// A SYN for a four-tuple in TIME-WAIT opens a new connection when its
    /// sequence number lies past RCV.NXT (RFC 1122 §4.2.2.13, RFC 6191), with
    /// an ISN past the old one's sequence space; an older one gets the ACK.
    @Test func aNewerSynTakesOverATimeWaitFourTuple() throws {
        let (driver, ours) = try timeWait()
        func segments() -> [TCPHeader] { driver.takeSentSegments() }
        // Behind RCV.NXT (1002): an old duplicate, answered as TIME-WAIT answers.
        driver.receive(host.tcp(40000, 80, sequence: 900, acknowledgment: 0, flags: .syn,
                                options: [.maximumSegmentSize(1460)]))
        #expect(segments().map(\.flags) == [.ack])
        // Past it: a new connection.
        driver.advance(by: .seconds(1))
        driver.receive(host.tcp(40000, 80, sequence: 50_000, acknowledgment: 0, flags: .syn,
                                options: [.maximumSegmentSize(1460)]))
        let synAck = try #require(segments().first)
        #expect(synAck.flags == [.syn, .ack])
        #expect(synAck.acknowledgmentNumber == 50_001)
        #expect(Int32(bitPattern: synAck.sequenceNumber &- (ours &+ 1)) > 65_535, "a new ISN past the old space")
        #expect(driver.stack.counters[.tcpTimeWaitReopened] == 1)
        #expect(!driver.stack.tcpSockets(IPv4.self).contains { $0.state == .timeWait })
    }

    /// A SYN with FIN to a listener is dropped (Linux does the same: it is a
    /// scan's probe, not an opening); to a closed port it is reset.
    @Test func synWithFinIsDroppedByAListener() throws {
        let host = HostFrames()
        let driver = StackDriver()
        let listener = driver.stack.tcpOpen(IPv4.self)
        try driver.stack.tcpBind(IPv4.self, listener, to: .any(port: 80))
        try driver.stack.tcpListen(IPv4.self, listener, backlog: 4)
        driver.receive(host.arp(.request, target: host.stackIPv4))
        _ = driver.takeSent()
        driver.receive(host.tcp(1234, 80, sequence: 1000, acknowledgment: 0, flags: [.syn, .fin]))
        #expect(driver.takeSent().isEmpty)
        #expect(driver.stack.counters[.tcpSynWithFin] == 1)
        #expect(driver.stack.tcpSockets(IPv4.self).count == 1, "the listener alone")
        driver.receive(host.tcp(1235, 81, sequence: 1000, acknowledgment: 0, flags: [.syn, .fin]))
        let answers = driver.takeSentSegments()
        #expect(answers.count == 1 && answers[0].flags.contains(.rst))
    }

    /// RFC 5961 §3.2: a reset inside the window but not at RCV.NXT earns a
    /// challenge ACK and the connection survives; one exactly at RCV.NXT ends it.
    @Test func blindResetsAreChallenged() throws {
        let host = HostFrames()
        let driver = StackDriver()
        let listener = driver.stack.tcpOpen(IPv4.self)
        try driver.stack.tcpBind(IPv4.self, listener, to: .any(port: 80))
        try driver.stack.tcpListen(IPv4.self, listener, backlog: 4)
        driver.receive(host.arp(.request, target: host.stackIPv4))
        driver.receive(host.tcp(1234, 80, sequence: 1000, acknowledgment: 0, flags: .syn))
        let synAck = try #require(driver.takeSentSegments().first)
        let ours = synAck.sequenceNumber &+ 1
        driver.receive(host.tcp(1234, 80, sequence: 1001, acknowledgment: ours, flags: .ack))
        #expect(driver.stack.tcpSockets(IPv4.self).contains { $0.state == .established })
        _ = driver.takeSent()
        driver.receive(host.tcp(1234, 80, sequence: 1001 + 500, acknowledgment: ours, flags: .rst))
        let challenge = driver.takeSent()
        #expect(challenge.count == 1, "a challenge ACK")
        #expect(driver.stack.tcpSockets(IPv4.self).contains { $0.state == .established })
        driver.receive(host.tcp(1234, 80, sequence: 1001, acknowledgment: ours, flags: .rst))
        #expect(!driver.stack.tcpSockets(IPv4.self).contains { $0.state == .established })
        // A SYN on an established connection is challenged too (RFC 5961 §4).
    }

    /// The ACK of a peer's FIN waits for the end of the turn: an application
    /// that closes on end of stream sends one FIN+ACK, and one that does not
    /// still has the FIN acknowledged within a millisecond.
    @Test func theAckOfAFinGoesWithTheApplicationsFin() throws {
        let host = HostFrames()
        let driver = StackDriver()
        let listener = driver.stack.tcpOpen(IPv4.self)
        try driver.stack.tcpBind(IPv4.self, listener, to: .any(port: 80))
        try driver.stack.tcpListen(IPv4.self, listener, backlog: 4)
        driver.receive(host.arp(.request, target: host.stackIPv4))
        func segments() -> [TCPHeader] { driver.takeSentSegments() }
        for (port, closes) in [(UInt16(1234), true), (UInt16(1235), false)] {
            driver.receive(host.tcp(port, 80, sequence: 1000, acknowledgment: 0, flags: .syn))
            let ours = try #require(segments().first).sequenceNumber &+ 1
            driver.receive(host.tcp(port, 80, sequence: 1001, acknowledgment: ours, flags: .ack))
            let connection = try #require(try driver.stack.tcpAccept(IPv4.self, listener))
            driver.receive(host.tcp(port, 80, sequence: 1001, acknowledgment: ours, flags: [.fin, .ack]))
            #expect(segments().isEmpty, "the ACK waits for the application")
            if closes {
                driver.stack.tcpClose(IPv4.self, connection)
                driver.advance(by: .zero)
                let sent = segments()
                #expect(sent.count == 1 && sent[0].flags.contains(.fin) && sent[0].acknowledgmentNumber == 1002,
                        "one FIN+ACK: \(sent)")
            } else {
                driver.advance(by: .milliseconds(1))
                let sent = segments()
                #expect(sent.count == 1 && !sent[0].flags.contains(.fin) && sent[0].acknowledgmentNumber == 1002,
                        "a bare ACK: \(sent)")
            }
        }
    }

    @Test func listenBacklogOverflowDropsSYNsUntilAccepted() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 12)
        let listener = simulation.right.tcpOpen(IPv4.self)
        try simulation.right.tcpBind(IPv4.self, listener, to: .any(port: 9))
        try simulation.right.tcpListen(IPv4.self, listener, backlog: 2)
        let clients = try (0..<4).map { _ in
            let id = simulation.left.tcpOpen(IPv4.self)
            try simulation.left.tcpConnect(IPv4.self, id, to: Endpoint(Self.server, 9))
            return id
        }
        simulation.run(for: .milliseconds(500)) { _ in false }
        let waiting = simulation.right.tcpSockets(IPv4.self).first { $0.id == listener }?.receiveQueue
        #expect(waiting == 2, "two fit the accept queue")
        #expect(simulation.right.tcpSockets(IPv4.self).filter { $0.state == .synReceived }.count == 2,
                "the others stay half-open")
        #expect(simulation.right.counters[.tcpListenOverflow] >= 2)
        // Accepting makes room; retransmitted SYNs get in.
        var accepted = 0
        simulation.run(for: .seconds(10)) { sim in
            while (try? sim.right.tcpAccept(IPv4.self, listener)) ?? nil != nil { accepted += 1 }
            return accepted == 4
        }
        #expect(accepted == 4)
        #expect(clients.allSatisfy { simulation.left.tcpConnectStatus(IPv4.self, $0) == .established })
    }
}
