import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// Two stacks, one TCP connection, 10 MiB each way at once, over a simulated
/// 200 Mbit/s link with 1 ms of delay and the faults of each scenario. Every
/// byte must arrive once and in order. The goodput printed is simulated time.
@Suite struct TCPSimulationTests {
    struct Scenario: Sendable, CustomTestStringConvertible {
        var name: String
        var faults: LinkFaults
        var v6: Bool
        var testDescription: String { "\(name) over IPv\(v6 ? 6 : 4)" }
    }

    static let megabytes = 10
    static var scenarios: [Scenario] {
        let cases: [(String, LinkFaults)] = [
            ("no loss", LinkFaults()),
            ("5% loss", LinkFaults(loss: 0.05)),
            ("25% reordering", LinkFaults(reorder: 0.25)),
            ("1% duplication", LinkFaults(duplicate: 0.01)),
            ("0.1% corruption", LinkFaults(corrupt: 0.001)),
        ]
        return cases.flatMap { name, faults in [false, true].map { Scenario(name: name, faults: faults, v6: $0) } }
    }

    @Test(arguments: scenarios)
    func tenMebibytesEachWay(_ scenario: Scenario) throws {
        if scenario.v6 {
            try transfer(IPv6.self, scenario, server: LinkedStacks.hostIPv6)
        } else {
            try transfer(IPv4.self, scenario, server: LinkedStacks.hostIPv4)
        }
    }

    func transfer<I: IPVersion>(_ version: I.Type, _ scenario: Scenario, server: I.Address) throws {
        let simulation = Simulation(faults: scenario.faults, seed: 42)
        let total = Self.megabytes << 20
        let listener = simulation.right.tcpOpen(I.self)
        try simulation.right.tcpBind(I.self, listener, to: .any(port: 5000))
        try simulation.right.tcpListen(I.self, listener, backlog: 4)
        let client = simulation.left.tcpOpen(I.self)
        try simulation.left.tcpConnect(I.self, client, to: Endpoint(server, 5000))
        let clientSide = BulkEndpoint<I>(socket: client, total: total, sendSeed: 1, receiveSeed: 2)
        var serverSide: BulkEndpoint<I>?
        let finished = simulation.run(for: .seconds(600), step: { sim in
            if serverSide == nil, let id = try? sim.right.tcpAccept(I.self, listener) {
                serverSide = BulkEndpoint<I>(socket: id, total: total, sendSeed: 2, receiveSeed: 1)
            }
            clientSide.step(sim.left)
            serverSide?.step(sim.right)
        }, until: { _ in clientSide.done && serverSide?.done == true })
        let seconds = simulation.now.nanoseconds
        let progress = "sent \(clientSide.sent)/\(serverSide?.sent ?? 0), "
            + "received \(clientSide.received)/\(serverSide?.received ?? 0)"
        #expect(finished, "not done after 600 simulated seconds: \(progress)")
        #expect(clientSide.error == nil && serverSide?.error == nil)
        #expect(clientSide.received == total && serverSide?.received == total)
        #expect(clientSide.mismatches == 0 && serverSide?.mismatches == 0)
        // Segments with SACK options still fit the MTU: nothing is fragmented.
        #expect(simulation.left.counters[.datagramsFragmented] == 0 && simulation.right.counters[.datagramsFragmented] == 0)
        let goodput = Double(2 * total * 8) / (Double(seconds) / 1e9) / 1e6
        print("simulation \(scenario.testDescription): \(2 * Self.megabytes) MiB in \(simulation.now) simulated, "
              + "goodput \(Int(goodput)) Mbit/s; lost \(simulation.framesLost), queue-dropped "
              + "\(simulation.framesQueueDropped), duplicated \(simulation.framesDuplicated), corrupted "
              + "\(simulation.framesCorrupted); retransmissions \(simulation.left.counters[.tcpRetransmissions]) + "
              + "\(simulation.right.counters[.tcpRetransmissions])")
        if scenario.faults.corrupt > 0 {
            let caught = simulation.left.counters.totalDrops + simulation.right.counters.totalDrops
            #expect(caught >= UInt64(simulation.framesCorrupted) / 2, "corruption is caught and dropped")
        }
    }
}
