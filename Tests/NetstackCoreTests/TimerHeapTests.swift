@testable import NetstackCore
import NetstackTestSupport
import Testing

/// The TCP timer heap keeps one live entry per connection and drops the
/// stale ones (left by deadlines that moved earlier, or by connections that
/// ended) once they outnumber the live ones; the live timers still fire.
@Suite struct TimerHeapTests {
    @Test func staleEntriesArePrunedAndLiveTimersStillFire() throws {
        let simulation = Simulation(faults: LinkFaults(), seed: 3) { $0.tcp.timeWait = .seconds(30) }
        let listener = simulation.right.tcpOpen(IPv4.self)
        try simulation.right.tcpBind(IPv4.self, listener, to: .any(port: 5000))
        try simulation.right.tcpListen(IPv4.self, listener, backlog: 4)
        let client = simulation.left.tcpOpen(IPv4.self)
        try simulation.left.tcpConnect(IPv4.self, client, to: Endpoint(LinkedStacks.hostIPv4, 5000))
        var accepted: SocketID?
        _ = simulation.run(for: .seconds(5)) { sim in
            if accepted == nil { accepted = try? sim.right.tcpAccept(IPv4.self, listener) }
            return accepted != nil && sim.left.tcpConnectStatus(IPv4.self, client) == .established
        }
        let server = try #require(accepted)
        // The client closes first and holds TIME-WAIT: one live 30 s timer.
        simulation.left.tcpClose(IPv4.self, client)
        simulation.right.tcpClose(IPv4.self, server)
        _ = simulation.run(for: .seconds(1)) { sim in sim.left.ipv4.tcp.connection(client)?.state == .timeWait }
        #expect(simulation.left.ipv4.tcp.connection(client)?.state == .timeWait)
        // What a connection rate of tens of thousands a second leaves: entries
        // of sockets long gone, due later than the live one.
        for index in 0..<5000 {
            simulation.left.ipv4.tcp.timers.insert(TCPTimerEntry(deadline: simulation.now + .seconds(40),
                                                                 socket: SocketID(rawValue: 1 << 40 + UInt64(index))))
        }
        simulation.left.ipv4.tcp.compactTimersIfStale()
        let table = simulation.left.ipv4.tcp
        #expect(table.timers.count <= table.entries.count, "\(table.timers.count) entries for \(table.entries.count) sockets")
        #expect(table.timers.min?.socket == client, "the live entry stays")
        // That TIME-WAIT ends on time.
        _ = simulation.run(for: .seconds(31)) { _ in false }
        #expect(simulation.left.ipv4.tcp.connection(client)?.state != .timeWait)
    }
}
