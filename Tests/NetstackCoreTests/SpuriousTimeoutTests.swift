import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// The Eifel algorithm (RFC 3522) with RFC 4015's response: after a
/// retransmission timeout, the first ACK of new data tells by its timestamp
/// echo whether the original segment got through after all; if it did, the
/// timeout's window cut is undone.
@Suite struct SpuriousTimeoutTests {
    let host = HostFrames()

    /// A connection from the host's port 40000 to the stack's port 80 with
    /// timestamps: the driver, the socket and the stack's next sequence number.
    func established() throws -> (StackDriver, SocketID, UInt32) {
        let driver = StackDriver()
        driver.receive(host.arp(.request, target: host.stackIPv4))
        let listener = driver.stack.tcpOpen(IPv4.self)
        try driver.stack.tcpBind(IPv4.self, listener, to: .any(port: 80))
        try driver.stack.tcpListen(IPv4.self, listener, backlog: 4)
        _ = driver.takeSent()
        driver.receive(host.tcp(40000, 80, sequence: 1000, acknowledgment: 0, flags: .syn,
                                options: [.maximumSegmentSize(1460), .timestamps(value: 1, echoReply: 0)]))
        let synAck = try #require(driver.sent.last)
        guard case .tcp(let header)? = driver.takeSent().last?.transport else { throw SocketError.closed }
        let ours = header.sequenceNumber &+ 1
        driver.receive(host.tcp(40000, 80, sequence: 1001, acknowledgment: ours, flags: .ack,
                                options: [.timestamps(value: 2, echoReply: try #require(Self.timestamp(synAck)))]))
        let socket = try #require(try driver.stack.tcpAccept(IPv4.self, listener))
        _ = driver.takeSent()
        return (driver, socket, ours)
    }

    /// TSval of an IPv4 TCP frame.
    static func timestamp(_ frame: [UInt8]) -> UInt32? {
        let tcp = 14 + 20
        let end = tcp + Int(frame[tcp + 12] >> 4) * 4
        var offset = tcp + 20
        while offset < end {
            switch frame[offset] {
            case 0: return nil
            case 1: offset += 1
            case 8: return frame[(offset + 2)..<(offset + 6)].reduce(0) { $0 << 8 | UInt32($1) }
            default: offset += max(2, Int(frame[offset + 1]))
            }
        }
        return nil
    }

    func congestionWindow(_ driver: StackDriver, _ id: SocketID) -> Int? {
        driver.stack.tcpSockets(IPv4.self).first { $0.id == id }?.congestionWindow
    }

    /// Sends 1000 bytes, lets the retransmission timer fire, and answers
    /// with an ACK of them echoing the original's TSval (`original`) or the
    /// retransmission's.
    func timeout(answeringThe original: Bool) throws -> (StackDriver, SocketID, before: Int?) {
        let (driver, id, ours) = try established()
        let before = congestionWindow(driver, id)
        _ = try [UInt8](repeating: 7, count: 1000).withSpan { span throws(SocketError) in
            try driver.stack.tcpSend(IPv4.self, id, span)
        }
        driver.advance(by: .milliseconds(1))
        let first = try #require(driver.sent.last.flatMap(Self.timestamp))
        _ = driver.takeSent()
        // Until the timer fires (a tail-loss probe may go first).
        for _ in 0..<300 where driver.stack.counters[.tcpTimeouts] == 0 { driver.advance(by: .milliseconds(10)) }
        let resent = try #require(driver.sent.last.flatMap(Self.timestamp))
        _ = driver.takeSent()
        #expect(driver.stack.counters[.tcpTimeouts] == 1)
        #expect(resent > first)
        #expect(congestionWindow(driver, id) ?? .max < before ?? 0, "the timeout cut the window")
        driver.receive(host.tcp(40000, 80, sequence: 1001, acknowledgment: ours &+ 1000, flags: .ack,
                                options: [.timestamps(value: 3, echoReply: original ? first : resent)]))
        return (driver, id, before)
    }

    @Test func aTimeoutWhoseOriginalArrivedIsUndone() throws {
        let (driver, id, before) = try timeout(answeringThe: true)
        #expect(driver.stack.counters[.tcpTimeoutsUndone] == 1)
        #expect((congestionWindow(driver, id) ?? 0) >= (before ?? .max), "the window from before the timeout")
    }

    @Test func aTimeoutWhoseRetransmissionArrivedStands() throws {
        let (driver, id, before) = try timeout(answeringThe: false)
        #expect(driver.stack.counters[.tcpTimeoutsUndone] == 0)
        #expect((congestionWindow(driver, id) ?? .max) < (before ?? 0))
    }
}
