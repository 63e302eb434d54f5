import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// RACK (RFC 8985 §6) against the duplicate-ACK rule, between two stacks on
/// the simulator: the same transfer, the same faults and seed, with RACK
/// and without it.
@Suite struct RACKTests {
    struct Run {
        var retransmissions: UInt64
        var recoveries: UInt64
        var timeouts: UInt64
        var seconds: Double
    }

    func transfer(rack: Bool, faults: LinkFaults, seed: UInt64, count: Int) throws -> Run {
        let simulation = Simulation(faults: faults, seed: seed) { $0.tcp.rack = rack }
        let start = simulation.now
        let (_, receiver) = try simulation.bulkTransfer(IPv4.self, to: LinkedStacks.hostIPv4, port: 5000, count: count)
        #expect(receiver?.received == count && receiver?.mismatches == 0)
        let counters = simulation.left.counters
        return Run(retransmissions: counters[.tcpRetransmissions], recoveries: counters[.tcpFastRecoveries],
                   timeouts: counters[.tcpTimeouts], seconds: (simulation.now - start).seconds)
    }

    /// Heavy reordering (a quarter of the frames held back up to 4 ms, twice
    /// the round trip): the duplicate-ACK rule retransmits whenever three
    /// later segments overtake one; RACK widens its reordering window with
    /// every D-SACK and stops.
    @Test func heavyReorderingIsNotTakenForLoss() throws {
        var faults = LinkFaults(reorder: 0.25)
        faults.reorderDelay = .milliseconds(4)
        let without = try transfer(rack: false, faults: faults, seed: 41, count: 8_000_000)
        let with = try transfer(rack: true, faults: faults, seed: 41, count: 8_000_000)
        print("25% reordering, 8 MB: RACK \(with.retransmissions) retransmissions in \(with.seconds) s; "
              + "duplicate ACKs \(without.retransmissions) in \(without.seconds) s")
        #expect(with.retransmissions * 4 < without.retransmissions)
        #expect(with.seconds * 2 < without.seconds)
    }

    /// Random loss, over six seeds: RACK finds it about as fast as three
    /// duplicate ACKs do (within a tenth in total time), with no more
    /// timeouts and no more retransmissions.
    @Test func lossIsStillFoundAtOnce() throws {
        let faults = LinkFaults(loss: 0.01)
        var with = Run(retransmissions: 0, recoveries: 0, timeouts: 0, seconds: 0)
        var without = with
        for seed in UInt64(42)...47 {
            let a = try transfer(rack: false, faults: faults, seed: seed, count: 4_000_000)
            let b = try transfer(rack: true, faults: faults, seed: seed, count: 4_000_000)
            without.retransmissions += a.retransmissions
            without.timeouts += a.timeouts
            without.seconds += a.seconds
            with.retransmissions += b.retransmissions
            with.recoveries += b.recoveries
            with.timeouts += b.timeouts
            with.seconds += b.seconds
        }
        print("1% loss, 6 × 4 MB: RACK \(with.retransmissions) retransmissions, \(with.timeouts) timeouts in "
              + "\(with.seconds) s; duplicate ACKs \(without.retransmissions), \(without.timeouts) in \(without.seconds) s")
        #expect(with.recoveries > 0)
        #expect(with.timeouts <= without.timeouts)
        #expect(with.retransmissions <= without.retransmissions)
        #expect(with.seconds <= without.seconds * 1.1)
    }
}
