import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// HyStart++ (RFC 9406) against a bottleneck (20 Mbit/s, 20 ms, a queue of
/// 600 frames): the round trip grows as the queue fills, and the initial slow
/// start ends on that, through 5 conservative rounds, before the queue
/// overflows; without it, slow start runs on until the queue drops packets.
/// (With a queue of 250 frames the detection, a round late by design, still
/// loses 71 frames against 402.)
@Suite struct HyStartTests {
    func run(hyStart: Bool) throws -> (stack: Stack, dropped: Int, received: Int) {
        var faults = LinkFaults()
        faults.bitsPerSecond = 20_000_000
        faults.delay = .milliseconds(10)
        faults.queueLimit = 600
        // A window large enough that plain slow start can fill the queue.
        let simulation = Simulation(faults: faults, seed: 31) {
            $0.tcp.hyStart = hyStart
            $0.tcp.receiveBuffer = 2 << 20
            $0.tcp.maximumBuffer = max($0.tcp.maximumBuffer, 4 << 20)
        }
        let (_, receiver) = try simulation.bulkTransfer(IPv4.self, to: LinkedStacks.hostIPv4, port: 5000,
                                                        count: 4_000_000)
        #expect(receiver?.mismatches == 0)
        return (simulation.left, simulation.framesQueueDropped, receiver?.received ?? 0)
    }

    @Test func slowStartEndsBeforeTheQueueOverflows() throws {
        let with = try run(hyStart: true)
        let without = try run(hyStart: false)
        print("HyStart++: \(with.dropped) frames dropped by the queue, \(with.stack.counters[.tcpRetransmissions]) "
              + "retransmissions; without: \(without.dropped) dropped, "
              + "\(without.stack.counters[.tcpRetransmissions]) retransmissions")
        #expect(with.received == 4_000_000 && without.received == 4_000_000)
        #expect(with.stack.counters[.tcpHyStartExits] == 1)
        #expect(without.stack.counters[.tcpHyStartExits] == 0)
        #expect(without.dropped > 0, "plain slow start overflows the queue")
        #expect(with.dropped == 0 && with.stack.counters[.tcpRetransmissions] == 0)
    }
}
