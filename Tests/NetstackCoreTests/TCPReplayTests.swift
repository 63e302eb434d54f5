import NetstackCore
import NetstackIO
import NetstackTestSupport
import NetstackWire
import Testing

/// TCP captures replayed against the stack with echo and discard services.
/// Connections are compared by transcript (handshake, bytes, final
/// acknowledgment, FIN, resets), since application timing differs from the
/// recorded server's; resets for closed ports are compared frame by frame.
@Suite struct TCPReplayTests {
    func replay(_ fixture: String, delay: (Int) -> Int = { _ in 0 }) throws -> (FixtureReplay, DirectTCPServices) {
        let services = DirectTCPServices()
        let replay = try FixtureReplay(fixture: fixture, setUp: services.setUp, application: services.run,
                                       delayHostFrame: delay)
        return (replay, services)
    }

    /// The host's data in sequence order, as the capture holds it.
    func hostStream(_ fixture: String) throws -> [UInt8] {
        var pieces: [UInt32: [UInt8]] = [:]
        var origin: UInt32?
        for record in try Fixtures.frames(fixture) {
            guard let d = try? record.bytes.withSpan({ try Dissection($0) }), d.ethernet.source == Fixtures.hostMAC,
                  case .tcp(let tcp) = d.transport else { continue }
            if tcp.flags.contains(.syn) { origin = tcp.sequenceNumber &+ 1 }
            let payload = Array(record.bytes[d.payload])
            if let origin, !payload.isEmpty { pieces[tcp.sequenceNumber &- origin] = payload }
        }
        return pieces.sorted { $0.key < $1.key }.flatMap(\.value)
    }

    @Test(arguments: ["tcp4-echo.pcap", "tcp6-echo.pcap"])
    func echoMatchesTheKernel(fixture: String) throws {
        let (replay, services) = try replay(fixture)
        let expected = TCPTranscript.of(replay.expected)
        let produced = TCPTranscript.of(replay.produced)
        #expect(expected.count == 1)
        #expect(produced.mapValues(\.essentials) == expected.mapValues(\.essentials))
        #expect(produced.values.first?.data == (try hostStream(fixture)), "the echo is what the host sent")
        #expect(services.received == (try hostStream(fixture)))
        #expect(replay.stack.counters.totalDrops == 0, "\(replay.stack.counters.nonZero)")
    }

    @Test(arguments: ["tcp4-closed-port.pcap", "tcp6-closed-port.pcap"])
    func closedPortIsResetLikeTheKernel(fixture: String) throws {
        let (replay, _) = try replay(fixture)
        let (expected, produced) = replay.signatures(where: FrameFilter.isAnswer)
        #expect(produced == expected, "\n\(diff(expected, produced))")
        #expect(replay.stack.counters[.tcpNoSocket] == 1)
    }

    /// 1 MiB into discard: every byte arrives and is acknowledged, the FIN
    /// exchange matches, and the advertised window never closes or moves left.
    @Test(arguments: ["tcp4-bulk.pcap", "tcp6-bulk.pcap"])
    func bulkIsFullyAcknowledged(fixture: String) throws {
        let (replay, services) = try replay(fixture)
        let expected = TCPTranscript.of(replay.expected)
        let produced = TCPTranscript.of(replay.produced)
        #expect(produced.mapValues(\.essentials) == expected.mapValues(\.essentials))
        let transcript = try #require(produced.values.first)
        #expect(transcript.highestAcknowledgment == 1 << 20 + 2, "every byte and the FIN")
        #expect(services.received == (try hostStream(fixture)))
        #expect(transcript.windows.allSatisfy { $0 > 0 })
        #expect(Self.rightEdgeRegression(replay.produced) == nil)
        #expect(replay.stack.counters.totalDrops == 0, "\(replay.stack.counters.nonZero)")
        // Delayed ACKs after the quick-ACK phase: fewer ACKs than segments.
        #expect(transcript.segments < 1 << 20 / 1448)
    }

    /// The lossy capture, with every 20th data segment from the host held
    /// back four segments (arriving later, as a retransmission would): the
    /// stack keeps the data beyond each hole, says so with SACK blocks while
    /// the hole exists, and delivers the stream intact.
    @Test func reorderedSegmentsAreSACKedAndReassembled() throws {
        let (replay, services) = try replay("tcp4-lossy.pcap", delay: { index in
            index > 4 && index % 20 == 0 ? 4 : 0
        })
        #expect(services.received == (try hostStream("tcp4-lossy.pcap")))
        var sackFrames = 0
        for frame in replay.produced {
            guard let d = try? frame.withSpan({ try Dissection($0) }), case .tcp(let tcp) = d.transport else { continue }
            try TCPOption.forEach(in: tcp.options.array.span.bytes) { if case .sack = $0 { sackFrames += 1 } }
        }
        #expect(sackFrames >= 10, "SACK blocks while holes existed: \(sackFrames)")
        let transcript = try #require(TCPTranscript.of(replay.produced).values.first)
        #expect(transcript.highestAcknowledgment == 1 << 19 + 2)
    }

    /// The first place where ack + window (the right edge) moved left, if any
    /// (RFC 9293 §3.8.6.2.2 says it must not).
    static func rightEdgeRegression(_ frames: [[UInt8]]) -> String? {
        var edge: UInt32?
        var shift = 0
        for frame in frames {
            guard let d = try? frame.withSpan({ try Dissection($0) }), case .tcp(let tcp) = d.transport else { continue }
            if tcp.flags.contains(.syn) {
                try? TCPOption.forEach(in: tcp.options.array.span.bytes) { if case .windowScale(let s) = $0 { shift = Int(s) } }
                continue
            }
            let right = tcp.acknowledgmentNumber &+ UInt32(tcp.window) << UInt32(shift)
            if let previous = edge, Int32(bitPattern: right &- previous) < 0 {
                return "edge \(right) after \(previous) (ack \(tcp.acknowledgmentNumber), window \(tcp.window))"
            }
            edge = right
        }
        return nil
    }
}
