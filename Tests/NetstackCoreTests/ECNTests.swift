import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// Explicit congestion notification (RFC 3168) between two stacks: who
/// agrees to it, and what a marking queue does to a transfer with it and
/// without it.
@Suite struct ECNTests {
    /// Connects left to right with the given modes and moves a few bytes;
    /// whether each side counted ECN as negotiated.
    func negotiate(left: ECNMode, right: ECNMode) throws -> (left: Bool, right: Bool) {
        let simulation = Simulation(faults: LinkFaults(), seed: 5, configure: { $0.tcp.ecn = left },
                                    right: { $0.tcp.ecn = right })
        let listener = simulation.right.tcpOpen(IPv4.self)
        try simulation.right.tcpBind(IPv4.self, listener, to: .any(port: 5000))
        try simulation.right.tcpListen(IPv4.self, listener, backlog: 4)
        let client = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpConnect(IPv4.self, client, to: Endpoint(LinkedStacks.hostIPv4, 5000))
        let clientSide = BulkEndpoint<IPv4>(socket: client, total: 1000, sendSeed: 1, receiveSeed: 2)
        var serverSide: BulkEndpoint<IPv4>?
        let finished = simulation.run(for: .seconds(10), step: { sim in
            if serverSide == nil, let id = try? sim.right.tcpAccept(IPv4.self, listener) {
                serverSide = BulkEndpoint<IPv4>(socket: id, total: 1000, sendSeed: 2, receiveSeed: 1)
            }
            clientSide.step(sim.left)
            serverSide?.step(sim.right)
        }, until: { _ in clientSide.done && serverSide?.done == true })
        #expect(finished && clientSide.mismatches == 0)
        return (simulation.left.counters[.tcpECNNegotiated] == 1, simulation.right.counters[.tcpECNNegotiated] == 1)
    }

    /// The SYN asks only in active mode; the SYN-ACK agrees unless off.
    @Test func negotiationFollowsEachEndsMode() throws {
        #expect(try negotiate(left: .active, right: .passive) == (true, true))
        #expect(try negotiate(left: .active, right: .active) == (true, true))
        #expect(try negotiate(left: .passive, right: .passive) == (false, false), "nobody asked")
        #expect(try negotiate(left: .active, right: .off) == (false, false), "the listener declined")
    }

    /// 4 MiB each way through a 50 Mbit/s link whose queue marks CE above
    /// 20 frames: with ECN the senders slow down on the echoes, so the queue
    /// never overflows and nothing is retransmitted; without it (the same
    /// queue cannot mark what is not ECN-capable) it overflows and loss
    /// recovery does the slowing.
    @Test func marksSlowTheSendersWithoutLoss() throws {
        func transfer(_ mode: ECNMode) throws -> Simulation {
            var faults = LinkFaults()
            faults.bitsPerSecond = 50_000_000
            faults.queueLimit = 60
            faults.markCongestionAbove = 20
            let simulation = Simulation(faults: faults, seed: 9) { $0.tcp.ecn = mode }
            let total = 4 << 20
            let listener = simulation.right.tcpOpen(IPv6.self)
            try simulation.right.tcpBind(IPv6.self, listener, to: .any(port: 5000))
            try simulation.right.tcpListen(IPv6.self, listener, backlog: 4)
            let client = simulation.left.tcpOpen(IPv6.self)
            try simulation.left.tcpConnect(IPv6.self, client, to: Endpoint(LinkedStacks.hostIPv6, 5000))
            let clientSide = BulkEndpoint<IPv6>(socket: client, total: total, sendSeed: 3, receiveSeed: 4)
            var serverSide: BulkEndpoint<IPv6>?
            let finished = simulation.run(for: .seconds(120), step: { sim in
                if serverSide == nil, let id = try? sim.right.tcpAccept(IPv6.self, listener) {
                    serverSide = BulkEndpoint<IPv6>(socket: id, total: total, sendSeed: 4, receiveSeed: 3)
                }
                clientSide.step(sim.left)
                serverSide?.step(sim.right)
            }, until: { _ in clientSide.done && serverSide?.done == true })
            #expect(finished, "\(mode): \(clientSide.received), \(serverSide?.received ?? 0) of \(total)")
            #expect(clientSide.mismatches == 0 && serverSide?.mismatches == 0)
            return simulation
        }
        let marked = try transfer(.active)
        let reductions = marked.left.counters[.tcpECNReductions] + marked.right.counters[.tcpECNReductions]
        let echoed = marked.left.counters[.tcpCongestionExperienced] + marked.right.counters[.tcpCongestionExperienced]
        let retransmitted = marked.left.counters[.tcpRetransmissions] + marked.right.counters[.tcpRetransmissions]
        #expect(marked.framesMarked > 0 && echoed > 0 && reductions > 0)
        #expect(marked.framesQueueDropped == 0 && retransmitted == 0,
                "dropped \(marked.framesQueueDropped), retransmitted \(retransmitted)")
        let plain = try transfer(.passive)
        let plainRetransmitted = plain.left.counters[.tcpRetransmissions] + plain.right.counters[.tcpRetransmissions]
        #expect(plain.framesMarked == 0 && plain.framesQueueDropped > 0 && plainRetransmitted > 0)
        print("ECN: with it \(marked.framesMarked) frames marked, \(echoed) CE seen, \(reductions) reductions,",
              "\(marked.framesQueueDropped) dropped, \(retransmitted) retransmitted, \(marked.now) simulated;",
              "without it \(plain.framesQueueDropped) dropped, \(plainRetransmitted) retransmitted, \(plain.now)")
    }
}
