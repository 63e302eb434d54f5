import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// D-SACK (RFC 2883) between two stacks on a link that reorders: the
/// receiver reports segments it got twice, the sender learns that fast
/// retransmissions were needless and undoes their window cuts (RFC 3708).
@Suite struct DSACKTests {
    @Test func reorderingIsToldApartFromLoss() throws {
        var faults = LinkFaults(reorder: 0.02)
        faults.reorderDelay = .milliseconds(4)
        let simulation = Simulation(faults: faults, seed: 41)
        let (_, receiver) = try simulation.bulkTransfer(IPv4.self, to: LinkedStacks.hostIPv4, port: 5000,
                                                        count: 8_000_000)
        #expect(receiver?.received == 8_000_000 && receiver?.mismatches == 0)
        let sender = simulation.left.counters
        print("reordering 2%: \(sender[.tcpFastRecoveries]) fast recoveries, \(sender[.tcpDSACKReceived]) D-SACKs, "
              + "\(sender[.tcpRecoveriesUndone]) undone; frames lost \(simulation.framesLost)")
        #expect(simulation.framesLost == 0)
        #expect(sender[.tcpFastRecoveries] > 0, "reordering past three segments looks like loss")
        #expect(simulation.right.counters[.tcpDSACKSent] > 0)
        #expect(sender[.tcpDSACKReceived] > 0)
        #expect(sender[.tcpRecoveriesUndone] > 0, "nothing was lost: recoveries are undone")
        #expect(sender[.tcpRecoveriesUndone] <= sender[.tcpFastRecoveries])
    }

    @Test func realLossIsNotUndone() throws {
        let simulation = Simulation(faults: LinkFaults(loss: 0.01), seed: 42)
        let (_, receiver) = try simulation.bulkTransfer(IPv4.self, to: LinkedStacks.hostIPv4, port: 5000,
                                                        count: 2_000_000)
        #expect(receiver?.received == 2_000_000 && receiver?.mismatches == 0)
        let sender = simulation.left.counters
        #expect(sender[.tcpFastRecoveries] > 0)
        // A lost segment's retransmission is its only copy: no D-SACK for it.
        #expect(sender[.tcpRecoveriesUndone] == 0)
    }
}
