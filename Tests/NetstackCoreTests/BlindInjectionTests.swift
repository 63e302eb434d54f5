import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// RFC 5961's challenge ACKs (the default) against RFC 793's rules (the
/// setting FreeBSD calls insecure_rst / insecure_syn): an in-window RST not
/// at RCV.NXT, and a SYN on an established connection.
@Suite struct BlindInjectionTests {
    let host = HostFrames()

    /// An established connection from the host (port 40000) to the stack's
    /// port 80; the host's next sequence number is 1001.
    func established(_ configure: (inout StackConfiguration) -> Void) throws -> (StackDriver, SocketID, UInt32) {
        var configuration = FixtureReplay.replayConfiguration
        configure(&configuration)
        let driver = StackDriver(configuration)
        let (id, ours) = try driver.acceptConnection(from: host)
        return (driver, id, ours)
    }

    func flags(_ sent: [Dissection]) -> [TCPFlags] {
        sent.compactMap { if case .tcp(let header) = $0.transport { header.flags } else { nil } }
    }

    @Test func challengesByDefault() throws {
        let (driver, id, ours) = try established { _ in }
        driver.receive(host.tcp(40000, 80, sequence: 1101, acknowledgment: ours, flags: .rst))
        #expect(flags(driver.takeSent()) == [.ack], "a challenge ACK")
        driver.advance(by: .seconds(1))
        driver.receive(host.tcp(40000, 80, sequence: 1200, acknowledgment: 0, flags: .syn))
        #expect(flags(driver.takeSent()) == [.ack], "a challenge ACK")
        #expect(driver.stack.tcpConnectStatus(IPv4.self, id) == .established)
        #expect(driver.stack.counters[.tcpChallenged] == 2)
    }

    @Test func rfc793ResetsAnywhereInTheWindow() throws {
        let (driver, id, ours) = try established { $0.tcp.challengeResets = false }
        driver.receive(host.tcp(40000, 80, sequence: 1101, acknowledgment: ours, flags: .rst))
        #expect(driver.takeSent().isEmpty)
        #expect(driver.stack.tcpConnectStatus(IPv4.self, id) == .failed(.connectionReset))
    }

    @Test func rfc793SynInTheWindowResets() throws {
        let (driver, id, ours) = try established { $0.tcp.challengeSyns = false }
        driver.receive(host.tcp(40000, 80, sequence: 1200, acknowledgment: 0, flags: .syn))
        let sent = driver.takeSent()
        #expect(flags(sent) == [[.rst, .ack]])
        if case .tcp(let reset)? = sent.first?.transport { #expect(reset.sequenceNumber == ours) }
        #expect(driver.stack.tcpConnectStatus(IPv4.self, id) == .failed(.connectionReset))
    }
}
