import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// What the receiving side of a connection says back: when an ACK goes
/// (delayed for small segments, at once for full-sized ones early on and for
/// anything out of order), which SACK blocks it carries and in what order
/// (RFC 2018 §4, RFC 2883 §4), and the window it offers (a buffer of whole
/// segments; the edge moves with what is read unless the window is small).
@Suite struct ReceiverAcknowledgmentTests {
    let host = HostFrames()

    /// A connection from the host (port 40000, SACK permitted, MSS 1460, no
    /// timestamps or scaling: the window field is bytes) to the stack's port
    /// 80 with a 64 KiB receive buffer; the host's next sequence number is 1.
    func established() throws -> (Connection, SocketID) {
        var configuration = FixtureReplay.replayConfiguration
        configuration.tcp.receiveBuffer = 65_536
        let driver = StackDriver(configuration)
        let (socket, ours) = try driver.acceptConnection(from: host, initialSequence: 0,
                                                         options: [.maximumSegmentSize(1460), .sackPermitted])
        return (Connection(driver: driver, ours: ours), socket)
    }

    /// The driver, and the stack's next sequence number (what the host acknowledges).
    struct Connection {
        let driver: StackDriver
        let ours: UInt32
    }

    /// The SACK blocks of `header`, relative to the host's initial sequence number 0.
    func sack(_ header: TCPHeader) -> [ClosedRange<UInt32>] {
        var blocks: [ClosedRange<UInt32>] = []
        try? TCPOption.forEach(in: header.options.array.span.bytes) { option in
            if case .sack(let found) = option {
                for index in 0..<found.count { blocks.append(found[index].left...found[index].right) }
            }
        }
        return blocks
    }

    /// Sends `count` bytes at `sequence` and returns what the stack answered.
    func data(_ connection: Connection, at sequence: UInt32, _ count: Int) -> [TCPHeader] {
        connection.driver.receive(host.tcp(40000, 80, sequence: sequence, acknowledgment: connection.ours, flags: .ack,
                                           payload: [UInt8](repeating: 7, count: count)))
        return connection.driver.takeSentSegments()
    }

    @Test func aSmallFirstSegmentWaitsForTheDelayedAckAndFullSizedOnesDoNot() throws {
        let (connection, _) = try established()
        let driver = connection.driver
        #expect(data(connection, at: 1, 99).isEmpty, "a small segment's ACK is delayed")
        driver.advance(by: .milliseconds(40))
        let delayed = driver.takeSentSegments()
        #expect(delayed.map(\.acknowledgmentNumber) == [100])
        // Full-sized segments early in the connection: a sender in slow start.
        #expect(data(connection, at: 100, 1460).map(\.acknowledgmentNumber) == [1560])
    }

    @Test func sackBlocksGoMostRecentFirst() throws {
        let (connection, _) = try established()
        _ = data(connection, at: 1, 99)
        #expect(data(connection, at: 200, 100).map { sack($0) } == [[200...300]])
        #expect(data(connection, at: 400, 100).map { sack($0) } == [[400...500, 200...300]])
        #expect(data(connection, at: 600, 100).map { sack($0) } == [[600...700, 400...500, 200...300]])
        // A repeat of part of a held block: a D-SACK of it, then its block,
        // now the most recent, then the others as they came.
        #expect(data(connection, at: 200, 75).map { sack($0) } == [[200...275, 200...300, 600...700, 400...500]])
    }

    @Test func inOrderDataThatRepeatsHeldDataIsReportedAsADuplicate() throws {
        let (connection, _) = try established()
        _ = data(connection, at: 1, 99)
        _ = data(connection, at: 200, 100)
        _ = data(connection, at: 400, 100)
        // 100–275 fills the hole and repeats 200–275 of what was held.
        let answer = data(connection, at: 100, 175)
        #expect(answer.map(\.acknowledgmentNumber) == [300])
        #expect(answer.map { sack($0) } == [[200...275, 400...500]])
        // Data below RCV.NXT is the duplicate reported when there is some.
        let again = data(connection, at: 50, 400)
        #expect(again.map(\.acknowledgmentNumber) == [500])
        #expect(again.map { sack($0) } == [[50...300]])
    }

    @Test func theBufferIsWholeSegmentsAndTheWindowEdgeMovesWithWhatIsRead() throws {
        let (connection, socket) = try established()
        let driver = connection.driver
        // 65,536 rounds up to 45 segments of 1,460: 65,700. Unscaled, the
        // field says 65,535 until more than 165 bytes wait unread.
        _ = data(connection, at: 1, 99)
        let held = data(connection, at: 200, 100)
        #expect(held.map(\.window) == [65_535])
        let filled = data(connection, at: 100, 700)
        #expect(filled.map(\.window) == [UInt16(65_700 - 799)])
        // Reading a little opens the window by as much at once: a window
        // this large moves its edge with every segment, not by whole MSSes.
        var buffer = [UInt8](repeating: 0, count: 100)
        _ = try buffer.withUnsafeMutableBytes { try driver.stack.tcpReceive(IPv4.self, socket, into: $0) }
        let next = data(connection, at: 800, 1)
        driver.advance(by: .milliseconds(40))
        let window = (next + driver.takeSentSegments()).last?.window
        #expect(window == UInt16(65_700 - 700), "\(String(describing: window))")
    }
}
