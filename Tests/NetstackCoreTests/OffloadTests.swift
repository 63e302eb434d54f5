import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// The stack on a TAP with a virtio-net header: large segments in and out,
/// checksums left to the kernel, and headers that lie dropped by reason.
@Suite struct OffloadTests {
    let host = HostFrames()

    /// A frame with `header` in front.
    func virtio(_ header: VirtioNetHeader, _ frame: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: VirtioNetHeader.length)
        bytes.withMutableBytes { header.emit(into: &$0) }
        return bytes + frame
    }

    func udp(_ destinationPort: UInt16, _ payload: [UInt8]) -> [UInt8] {
        let header = UDPHeader(sourcePort: 40000, destinationPort: destinationPort, payloadLength: payload.count)
        var bytes = [UInt8](repeating: 0, count: 8) + payload
        bytes.withMutableBytes { header.emit(into: &$0, source: host.ipv4, destination: host.stackIPv4) }
        return host.ipv4Packet(.udp, bytes)
    }

    /// A stack that takes virtio headers and has resolved the host.
    func virtioStack() -> StackDriver {
        let driver = StackDriver()
        driver.stack.offloads = .virtio
        driver.receive(virtio(.plain, host.arp(.request, target: host.stackIPv4)))
        _ = driver.takeSent()
        return driver
    }

    @Test func lyingHeadersAreDroppedByReason() {
        let driver = virtioStack()
        let stack = driver.stack
        let frame = udp(9, Array(repeating: 7, count: 200))
        let cases: [(VirtioNetHeader, WireError.Reason, String)] = [
            (VirtioNetHeader(flags: .needsChecksum, segmentation: .tcpv4, headerLength: 54, segmentSize: 0,
                             checksumStart: 34, checksumOffset: 16), .badSegmentSize, "segment size 0"),
            (VirtioNetHeader(flags: .needsChecksum, checksumStart: 230, checksumOffset: 16), .badOffset,
             "checksum field past the frame"),
            (VirtioNetHeader(flags: .needsChecksum, segmentation: .tcpv4, headerLength: 4000, segmentSize: 1448,
                             checksumStart: 34, checksumOffset: 16), .badOffset, "header length past the frame"),
            (VirtioNetHeader(segmentation: .tcpv4, headerLength: 54, segmentSize: 1448), .badValue,
             "segmentation without a partial checksum"),
            (VirtioNetHeader(flags: .needsChecksum, segmentation: .tcpv4, headerLength: 42, segmentSize: 100,
                             checksumStart: 34, checksumOffset: 6), .badValue, "TCP segmentation of a UDP packet"),
        ]
        for (header, reason, name) in cases {
            let before = stack.counters[WireError(.virtio, reason)]
            driver.receive(virtio(header, frame))
            #expect(stack.counters[WireError(.virtio, reason)] == before + 1, "\(name)")
        }
        // Raw bytes the value type cannot express: an unknown segmentation
        // type (3, UFO), unknown flag bits, and a header cut short.
        var ufo = virtio(.plain, frame)
        ufo[1] = 3
        var flags = virtio(.plain, frame)
        flags[0] = 0x40
        let before = stack.counters[WireError(.virtio, .badValue)]
        driver.receive(ufo)
        driver.receive(flags)
        #expect(stack.counters[WireError(.virtio, .badValue)] == before + 2)
        driver.receive([1, 2, 3, 4, 5])
        #expect(stack.counters[WireError(.virtio, .truncated)] == 1)
        #expect(stack.counters[.udpDatagramsReceived] == 0, "nothing of it was taken for a datagram")
    }

    @Test func partialChecksumsAreTrustedAndPlainOnesChecked() throws {
        let driver = virtioStack()
        let stack = driver.stack
        let socket = stack.udpOpen(IPv4.self)
        try stack.udpBind(IPv4.self, socket, to: .any(port: 7000))
        var frame = udp(7000, Array("partial".utf8))
        // The checksum field holds garbage: with NEEDS_CSUM the kernel vouches.
        frame[14 + 20 + 6] ^= 0xff
        driver.receive(virtio(VirtioNetHeader(flags: .needsChecksum, checksumStart: 34, checksumOffset: 6), frame))
        #expect(try stack.udpReceive(IPv4.self, socket) { $1.array } == Array("partial".utf8))
        // Without the flag it is checked, and fails.
        driver.receive(virtio(.plain, frame))
        #expect(stack.counters[WireError(.udp, .badChecksum)] == 1)
    }

    @Test func udpSegmentationIsCutIntoDatagrams() throws {
        let driver = virtioStack()
        let stack = driver.stack
        let socket = stack.udpOpen(IPv4.self)
        try stack.udpBind(IPv4.self, socket, to: .any(port: 7000))
        let payload = (0..<350).map { UInt8(truncatingIfNeeded: $0) }
        let header = VirtioNetHeader(flags: .needsChecksum, segmentation: .udp, headerLength: 42, segmentSize: 100,
                                     checksumStart: 34, checksumOffset: 6)
        driver.receive(virtio(header, udp(7000, payload)))
        var datagrams: [[UInt8]] = []
        while let datagram = try stack.udpReceive(IPv4.self, socket, { $1.array }) { datagrams.append(datagram) }
        #expect(datagrams.map(\.count) == [100, 100, 100, 50])
        #expect(datagrams.flatMap { $0 } == payload)
    }

    @Test func outgoingSegmentsAreLargeWithConsistentHeaders() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 3)
        simulation.left.offloads = .virtio
        let listener = simulation.right.tcpOpen(IPv4.self)
        try simulation.right.tcpBind(IPv4.self, listener, to: .any(port: 5000))
        try simulation.right.tcpListen(IPv4.self, listener, backlog: 4)
        let client = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpConnect(IPv4.self, client, to: Endpoint(LinkedStacks.hostIPv4, 5000))
        simulation.run(for: .seconds(2)) { $0.left.tcpConnectStatus(IPv4.self, client) == .established }
        // Let the window open (slow start) before looking at one burst.
        let data = [UInt8](repeating: 0x5a, count: 200_000)
        var accepted: SocketID?
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0..<5 {
            _ = try data.withSpan { span throws(SocketError) in try simulation.left.tcpSend(IPv4.self, client, span) }
            simulation.run(for: .seconds(2), step: { sim in
                if accepted == nil { accepted = try? sim.right.tcpAccept(IPv4.self, listener) }
                guard let id = accepted else { return }
                let count: Int? = buffer.withUnsafeMutableBytes { try? sim.right.tcpReceive(IPv4.self, id, into: $0) }
                received += count ?? 0
            }, until: { sim in sim.left.tcpSockets(IPv4.self).first { $0.id == client }?.sendQueue == 0 })
        }
        #expect(received == 5 * data.count)
        #expect(simulation.segmentedFramesSent > 0, "large segments went out")
        #expect(simulation.right.counters[WireError(.tcp, .badChecksum)] == 0,
                "every segment cut from them had a good checksum")
        // One more burst, looked at frame by frame.
        _ = try data.withSpan { span throws(SocketError) in try simulation.left.tcpSend(IPv4.self, client, span) }
        var frames: [[UInt8]] = []
        simulation.left.transmit { frames.append(Array($0)); return true }
        let large = frames.filter { $0.count > VirtioNetHeader.length + 1514 }
        #expect(!large.isEmpty)
        for frame in large {
            let header = try frame.withSpan { try VirtioNetHeader($0) }
            #expect(header.segmentation == .tcpv4)
            #expect(header.flags == .needsChecksum)
            #expect(header.checksumStart == 34 && header.checksumOffset == 16)
            #expect(header.segmentSize == 1448, "the MSS less the timestamp option")
            #expect(header.headerLength == 14 + 20 + 32)
            let payload = frame.count - VirtioNetHeader.length - Int(header.headerLength)
            #expect(payload % Int(header.segmentSize) == 0, "whole segments only (Nagle holds a short tail)")
            #expect(frame.count - VirtioNetHeader.length <= 14 + 65_535)
        }
    }

    struct Scenario: Sendable, CustomTestStringConvertible {
        var v6: Bool
        var loss: Double
        var testDescription: String { "IPv\(v6 ? 6 : 4), \(Int(loss * 100))% loss" }
    }

    static let scenarios = [false, true].flatMap { v6 in [0.0, 0.02].map { Scenario(v6: v6, loss: $0) } }

    /// Offloads on one side only (as on a TAP, where the other end is the
    /// kernel): large segments and merged ones both ways, every byte intact.
    @Test(arguments: scenarios)
    func bulkBothWaysWithOffloadsOnOneSide(_ scenario: Scenario) throws {
        if scenario.v6 {
            try bulk(IPv6.self, server: LinkedStacks.hostIPv6, loss: scenario.loss)
        } else {
            try bulk(IPv4.self, server: LinkedStacks.hostIPv4, loss: scenario.loss)
        }
    }

    func bulk<I: IPVersion>(_ version: I.Type, server: I.Address, loss: Double) throws {
        var faults = LinkFaults(loss: loss)
        faults.bitsPerSecond = 10e9
        faults.delay = .microseconds(50)
        faults.queueLimit = 2000
        let simulation = Simulation(faults: faults, seed: 11)
        simulation.left.offloads = .virtio
        let total = 8 << 20
        let listener = simulation.right.tcpOpen(I.self)
        try simulation.right.tcpBind(I.self, listener, to: .any(port: 5000))
        try simulation.right.tcpListen(I.self, listener, backlog: 4)
        let client = simulation.left.tcpOpen(I.self)
        try simulation.left.tcpConnect(I.self, client, to: Endpoint(server, 5000))
        let clientSide = BulkEndpoint<I>(socket: client, total: total, sendSeed: 1, receiveSeed: 2)
        var serverSide: BulkEndpoint<I>?
        let finished = simulation.run(for: .seconds(300), step: { sim in
            if serverSide == nil, let id = try? sim.right.tcpAccept(I.self, listener) {
                serverSide = BulkEndpoint<I>(socket: id, total: total, sendSeed: 2, receiveSeed: 1)
            }
            clientSide.step(sim.left)
            serverSide?.step(sim.right)
        }, until: { _ in clientSide.done && serverSide?.done == true })
        #expect(finished)
        #expect(clientSide.error == nil && serverSide?.error == nil)
        #expect(clientSide.received == total && serverSide?.received == total)
        #expect(clientSide.mismatches == 0 && serverSide?.mismatches == 0)
        #expect(simulation.segmentedFramesSent > 0, "the offloading side sent large segments")
        #expect(simulation.mergedFramesDelivered > 0, "and received merged ones")
        for reason in WireError.Reason.allCases {
            #expect(simulation.left.counters[WireError(.virtio, reason)] == 0, "no virtio header was refused")
        }
        #expect(simulation.left.counters[WireError(.tcp, .badChecksum)] == 0)
        #expect(simulation.right.counters[WireError(.tcp, .badChecksum)] == 0)
    }
}
