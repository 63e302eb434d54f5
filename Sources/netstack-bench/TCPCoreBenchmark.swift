import CMallocCounter
import NetstackCore
import NetstackWire

/// TCP in memory: two stacks joined by a loop that hands each one's frames to
/// the other, on one thread, with no system call and a virtual clock. It
/// measures what the core itself costs: bulk goodput and connections per
/// second, and heap allocations per segment.
enum TCPCoreBenchmark {
    struct Result {
        var name: String
        var value: Double
        var unit: String
        var allocationsPerSegment: Double
    }

    /// Two stacks, a client (192.168.69.100) and a server (192.168.69.1),
    /// and the link between them.
    final class Pair {
        let client: Stack
        let server: Stack
        var now = Instant.zero
        private(set) var segments = 0

        init(offloads: LinkOffloads) {
            var server = StackConfiguration.standard
            server.gratuitousARPCount = 0
            server.ipv6Startup.dadTransmits = 0
            server.ipv6Startup.routerSolicitations = 0
            server.ipv6Startup.mldRobustness = 0
            var client = server
            client.mac = MACAddress(2, 0, 0, 0, 0, 0x64)
            client.ipv4Addresses = [InterfaceAddress(CoreBenchmark.hostIPv4, prefixLength: 24)]
            client.ipv6Addresses = [InterfaceAddress(CoreBenchmark.hostIPv6, prefixLength: 64)]
            client.ipv4Gateway = nil
            client.ipv6Gateway = nil
            self.server = Stack(configuration: server, now: .zero, seed: 1)
            self.client = Stack(configuration: client, now: .zero, seed: 2)
            // Both ends take large segments as they come: what two stacks
            // with offloads exchange over a link that does not cut them.
            self.server.offloads = offloads
            self.client.offloads = offloads
        }

        /// One round: each stack's output goes to the other, then timers run.
        /// The link hands each frame to the other stack where it lies (no
        /// copy of its own), so the figures are the stacks' work alone.
        func round() {
            now = now + .microseconds(5)
            pass(from: client, to: server)
            pass(from: server, to: client)
            client.poll(now: now)
            server.poll(now: now)
        }

        private func pass(from sender: Stack, to receiver: Stack) {
            let now = self.now
            sender.transmit { bytes in
                segments += 1
                receiver.receive(frame: RawSpan(_unsafeBytes: bytes), now: now)
                return true
            }
        }
    }

    /// One connection, the client writing as fast as the windows allow and
    /// the server taking everything where it lies (as discard does).
    static func bulk(offloads: LinkOffloads, _ minimumSeconds: Double) -> Result {
        let pair = Pair(offloads: offloads)
        let listener = pair.server.tcpOpen(IPv4.self)
        try! pair.server.tcpBind(IPv4.self, listener, to: .any(port: 9))
        try! pair.server.tcpListen(IPv4.self, listener, backlog: 16)
        let client = pair.client.tcpOpen(IPv4.self)
        try! pair.client.tcpConnect(IPv4.self, client, to: Endpoint(CoreBenchmark.stack4, 9))
        var server: SocketID?
        let chunk = [UInt8](repeating: 0x61, count: 256 * 1024)
        var received = 0
        func step() {
            pair.round()
            if server == nil { server = try? pair.server.tcpAccept(IPv4.self, listener) }
            _ = try? chunk.withSpan { span throws(SocketError) in try pair.client.tcpSend(IPv4.self, client, span) }
            if let server {
                // Consumed where it lies, as the daemon's discard does.
                while let count = try? pair.server.tcpReceive(IPv4.self, server, consuming: { $0.count }), count > 0 {
                    received += count
                }
            }
        }
        // Warm up: handshake, slow start, every pool and ring at full size.
        for _ in 0..<2000 { step() }
        let clock = ContinuousClock()
        let start = clock.now
        let startBytes = received
        let startSegments = pair.segments
        let allocationsBefore = Int(malloc_counter_allocations())
        repeat {
            for _ in 0..<100 { step() }
        } while (clock.now - start) < .seconds(minimumSeconds)
        let seconds = (clock.now - start).seconds
        let allocations = Int(malloc_counter_allocations()) - allocationsBefore
        let bytes = received - startBytes
        let segments = pair.segments - startSegments
        let name = offloads.tcpSegmentation ? "TCP bulk, 64 KiB segments" : "TCP bulk, 1500-byte frames"
        return Result(name: name, value: Double(bytes) * 8 / seconds / 1e9, unit: "Gbit/s",
                      allocationsPerSegment: Double(allocations) / Double(max(segments, 1)))
    }

    /// Connect, a byte each way, close from the client (which keeps
    /// TIME-WAIT, up to the stack's limit), close from the server.
    static func connections(_ minimumSeconds: Double) -> Result {
        let pair = Pair(offloads: .none)
        let listener = pair.server.tcpOpen(IPv4.self)
        try! pair.server.tcpBind(IPv4.self, listener, to: .any(port: 7))
        try! pair.server.tcpListen(IPv4.self, listener, backlog: 4096)
        var buffer = [UInt8](repeating: 0, count: 64)
        let byte: [UInt8] = [1]
        func cycle() {
            let client = pair.client.tcpOpen(IPv4.self)
            try! pair.client.tcpConnect(IPv4.self, client, to: Endpoint(CoreBenchmark.stack4, 7))
            var server: SocketID?
            var phase = 0
            for _ in 0..<64 {
                pair.round()
                if server == nil { server = try? pair.server.tcpAccept(IPv4.self, listener) }
                switch phase {
                case 0 where pair.client.tcpConnectStatus(IPv4.self, client) == .established:
                    _ = try? byte.withSpan { span throws(SocketError) in try pair.client.tcpSend(IPv4.self, client, span) }
                    phase = 1
                case 1:
                    guard let server, pair.server.tcpReadable(IPv4.self, server) > 0 else { break }
                    _ = buffer.withUnsafeMutableBytes { try? pair.server.tcpReceive(IPv4.self, server, into: $0) }
                    _ = try? byte.withSpan { span throws(SocketError) in try pair.server.tcpSend(IPv4.self, server, span) }
                    phase = 2
                case 2:
                    guard pair.client.tcpReadable(IPv4.self, client) > 0 else { break }
                    _ = buffer.withUnsafeMutableBytes { try? pair.client.tcpReceive(IPv4.self, client, into: $0) }
                    pair.client.tcpClose(IPv4.self, client)
                    phase = 3
                case 3:
                    guard let server, (try? buffer.withUnsafeMutableBytes {
                        try pair.server.tcpReceive(IPv4.self, server, into: $0)
                    }) == 0 else { break }
                    pair.server.tcpClose(IPv4.self, server)
                    phase = 4
                case 4:
                    return
                default:
                    break
                }
            }
        }
        for _ in 0..<2000 { cycle() }
        let clock = ContinuousClock()
        let start = clock.now
        let startSegments = pair.segments
        let allocationsBefore = Int(malloc_counter_allocations())
        var count = 0
        repeat {
            for _ in 0..<200 { cycle() }
            count += 200
        } while (clock.now - start) < .seconds(minimumSeconds)
        let seconds = (clock.now - start).seconds
        let allocations = Int(malloc_counter_allocations()) - allocationsBefore
        let segments = pair.segments - startSegments
        return Result(name: "TCP connect, 1 byte each way, close", value: Double(count) / seconds, unit: "per second",
                      allocationsPerSegment: Double(allocations) / Double(max(segments, 1)))
    }
}
