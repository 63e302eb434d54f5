import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// The cap on the memory all socket buffers hold together
/// (`StackConfiguration.socketBufferMemory`): buffers stop growing at it,
/// what does not fit is dropped and counted, every connection still makes
/// progress, and the memory comes back when the sockets go.
@Suite struct SocketMemoryTests {
    static let cap = 1 << 20
    /// What every buffer may hold whatever the total.
    static let guaranteed = 4096

    /// Eight connections each moving 2 MiB both ways at once would want
    /// 8 × 2 × (1 MiB + 256 KiB) of rings on each side; with 1 MiB for all,
    /// both stacks stay under the cap (plus 4 KiB per ring), every byte
    /// arrives, and once the connections are gone (TIME-WAIT included)
    /// nothing is left charged.
    @Test func bulkConnectionsShareOneMebibyte() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 7) { $0.socketBufferMemory = Self.cap }
        let connections = 8
        let total = 2 << 20
        let listener = simulation.right.tcpOpen(IPv4.self)
        try simulation.right.tcpBind(IPv4.self, listener, to: .any(port: 5000))
        try simulation.right.tcpListen(IPv4.self, listener, backlog: 16)
        var clients: [BulkEndpoint<IPv4>] = []
        for index in 0..<connections {
            let socket = simulation.left.tcpOpen(IPv4.self)
            try simulation.left.tcpConnect(IPv4.self, socket, to: Endpoint(LinkedStacks.hostIPv4, 5000))
            clients.append(BulkEndpoint(socket: socket, total: total, sendSeed: UInt8(index), receiveSeed: 100))
        }
        var servers: [BulkEndpoint<IPv4>] = []
        var peak = (left: 0, right: 0)
        let finished = simulation.run(for: .seconds(300), step: { sim in
            while let socket = try? sim.right.tcpAccept(IPv4.self, listener) {
                servers.append(BulkEndpoint(socket: socket, total: total, sendSeed: 100, receiveSeed: UInt8(servers.count)))
            }
            for endpoint in clients { endpoint.step(sim.left) }
            for endpoint in servers { endpoint.step(sim.right) }
            peak = (max(peak.left, sim.left.socketBufferMemory), max(peak.right, sim.right.socketBufferMemory))
        }, until: { _ in servers.count == connections && (clients + servers).allSatisfy(\.done) })
        let transferTime = simulation.now
        #expect(finished, "sent \(clients.map(\.sent)), received \(servers.map(\.received))")
        // Connections were accepted in the order they connected, so the
        // receive seeds match: every byte arrived intact.
        for endpoint in clients + servers {
            #expect(endpoint.error == nil && endpoint.received == total && endpoint.mismatches == 0)
        }
        let bound = Self.cap + 2 * connections * Self.guaranteed
        #expect(peak.left <= bound && peak.right <= bound, "peak \(peak), bound \(bound)")
        #expect(peak.left > Self.cap / 2 && peak.right > Self.cap / 2, "the cap was reached: peak \(peak)")
        for stack in [simulation.left, simulation.right] {
            let notices = stack.takeNotices().filter { if case .limitReached = $0 { true } else { false } }
            #expect(notices.first == .limitReached(.socketBufferMemory, value: Self.cap, times: 1), "\(notices)")
        }
        for endpoint in clients { simulation.left.tcpClose(IPv4.self, endpoint.socket) }
        for endpoint in servers { simulation.right.tcpClose(IPv4.self, endpoint.socket) }
        _ = simulation.run(for: .seconds(70), until: { _ in false })
        #expect(simulation.left.socketBufferMemory == 0 && simulation.right.socketBufferMemory == 0,
                "\(simulation.left.socketBufferMemory), \(simulation.right.socketBufferMemory) bytes still charged")
        print("socket memory: 8 × 2 MiB each way under a 1 MiB cap in \(transferTime) simulated; peak",
              "\(peak.left) / \(peak.right) bytes; dropped for memory \(simulation.left.counters[.tcpBufferMemory]) /",
              "\(simulation.right.counters[.tcpBufferMemory]) segments")
    }

    /// Ten UDP sockets nobody reads, 150 datagrams of 1400 bytes each: each
    /// queue would hold 200 KiB, all of them 2 MiB. Past the 1 MiB cap
    /// datagrams are dropped (`udp.bufferMemory`), every one is accounted
    /// for, and closing the sockets gives the memory back.
    @Test func unreadDatagramQueuesStopAtTheCap() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 3) { $0.socketBufferMemory = Self.cap }
        let ports: [UInt16] = Array(6000..<6010)
        var receivers: [SocketID] = []
        for port in ports {
            let socket = simulation.right.udpOpen(IPv4.self)
            try simulation.right.udpBind(IPv4.self, socket, to: .any(port: port))
            receivers.append(socket)
        }
        let sender = simulation.left.udpOpen(IPv4.self)
        let payload = [UInt8](repeating: 0x5a, count: 1400)
        // One datagram first, so that the left side has resolved the right
        // one's address before the rounds (its pending-ARP queue is small).
        let warmUp = simulation.right.udpOpen(IPv4.self)
        try simulation.right.udpBind(IPv4.self, warmUp, to: .any(port: 5999))
        try payload.withSpan { bytes throws(SocketError) in
            try simulation.left.udpSend(IPv4.self, sender, to: Endpoint(LinkedStacks.hostIPv4, 5999), payload: bytes)
        }
        #expect(simulation.run(for: .seconds(5), until: { $0.right.counters[.udpDatagramsReceived] == 1 }))
        simulation.right.udpClose(IPv4.self, warmUp)
        var peak = 0
        // A round of one datagram per socket at a time, each round delivered
        // before the next: the link's queue and the pending-ARP queue never
        // drop one.
        for round in 1...150 {
            for port in ports {
                try payload.withSpan { bytes throws(SocketError) in
                    try simulation.left.udpSend(IPv4.self, sender, to: Endpoint(LinkedStacks.hostIPv4, port),
                                                payload: bytes)
                }
            }
            let delivered = simulation.run(for: .seconds(5), step: { peak = max(peak, $0.right.socketBufferMemory) },
                                           until: { $0.right.counters[.udpDatagramsReceived] == UInt64(1 + round * ports.count) })
            #expect(delivered, "round \(round)")
        }
        let counters = simulation.right.counters
        #expect(counters[.udpDatagramsReceived] == 1501)
        #expect(counters[.udpBufferMemory] > 0, "the cap dropped datagrams")
        #expect(peak <= Self.cap + ports.count * Self.guaranteed, "peak \(peak)")
        var queued = 0
        for socket in receivers {
            while try simulation.right.udpReceive(IPv4.self, socket, { _, span in span.byteCount == 1400 }) == true {
                queued += 1
            }
        }
        #expect(UInt64(queued) + counters[.udpBufferMemory] + counters[.udpReceiveQueueFull] == 1500)
        for socket in receivers { simulation.right.udpClose(IPv4.self, socket) }
        #expect(simulation.right.socketBufferMemory == 0)
        print("socket memory: UDP peak \(peak) bytes, \(queued) datagrams queued,",
              "\(counters[.udpBufferMemory]) dropped for memory, \(counters[.udpReceiveQueueFull]) for full queues")
    }

    /// A window already offered is not taken back (RFC 9293 §3.8.6.2.2):
    /// when other sockets take the memory, a peer sending into it has the
    /// part that does not fit dropped (`tcp.bufferMemory`), retransmits,
    /// and every byte arrives once the memory is free again.
    @Test func dataIntoAnOfferedWindowIsDroppedWhileMemoryIsTaken() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 11) { $0.socketBufferMemory = Self.cap }
        let right = simulation.right, left = simulation.left
        let listener = right.tcpOpen(IPv4.self)
        try right.tcpBind(IPv4.self, listener, to: .any(port: 5000))
        try right.tcpListen(IPv4.self, listener, backlog: 4)
        let client = left.tcpOpen(IPv4.self)
        try left.tcpConnect(IPv4.self, client, to: Endpoint(LinkedStacks.hostIPv4, 5000))
        var server: SocketID?
        #expect(simulation.run(for: .seconds(5), step: { sim in
            if server == nil { server = try? sim.right.tcpAccept(IPv4.self, listener) }
        }, until: { _ in server != nil }))
        let total = 200_000
        let data = (0..<total).map { patternByte($0, seed: 9) }
        // Nobody reads on the right yet; memory there goes to unread UDP
        // queues until the cap is reached.
        var queues: [SocketID] = []
        let sender = left.udpOpen(IPv4.self)
        let datagram = [UInt8](repeating: 1, count: 1400)
        for port in UInt16(6000)..<6008 {
            let socket = right.udpOpen(IPv4.self)
            try right.udpBind(IPv4.self, socket, to: .any(port: port))
            queues.append(socket)
        }
        var round = 0
        while right.counters[.udpBufferMemory] == 0 && round < 200 {
            round += 1
            for port in UInt16(6000)..<6008 {
                try datagram.withSpan { bytes throws(SocketError) in
                    try left.udpSend(IPv4.self, sender, to: Endpoint(LinkedStacks.hostIPv4, port), payload: bytes)
                }
            }
            _ = simulation.run(for: .seconds(1), until: { $0.right.counters[.udpDatagramsReceived] == UInt64(round * 8) })
        }
        #expect(right.counters[.udpBufferMemory] > 0, "the UDP queues took the memory")
        // The connection's window was offered while memory was free: the
        // left side sends into it.
        var sent = 0
        /// Sends what the left side's ring takes of the rest.
        func sendWhatFits(_ stack: Stack) {
            while sent < total {
                let accepted = (try? data.withSpan { bytes throws(SocketError) in
                    try stack.tcpSend(IPv4.self, client, bytes.extracting(sent..<total))
                }) ?? 0
                if accepted == 0 { break }
                sent += accepted
            }
        }
        _ = simulation.run(for: .seconds(3), step: { sendWhatFits($0.left) }, until: { _ in false })
        #expect(right.counters[.tcpBufferMemory] > 0, "data past the memory was dropped")
        #expect(right.socketBufferMemory <= Self.cap + 20 * Self.guaranteed)
        // The memory comes back; the reader reads; retransmissions fill in.
        for socket in queues { right.udpClose(IPv4.self, socket) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let finished = simulation.run(for: .seconds(60), step: { sim in
            sendWhatFits(sim.left)
            while let count = buffer.withUnsafeMutableBytes({ bytes in
                try? sim.right.tcpReceive(IPv4.self, server!, into: bytes)
            }) ?? nil, count > 0 {
                received += buffer[0..<count]
            }
        }, until: { _ in received.count == total })
        #expect(finished && received == data, "\(received.count) of \(total) bytes")
        print("socket memory: \(right.counters[.tcpBufferMemory]) segments into an offered window dropped for memory,",
              "\(left.counters[.tcpRetransmissions]) retransmissions, all \(total) bytes delivered")
    }
}
