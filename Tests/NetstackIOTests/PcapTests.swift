import Glibc
import NetstackIO
import NetstackTestSupport
import NetstackWire
import Testing

func temporaryPath(_ name: String) -> String {
    "/tmp/netstack-test-\(getpid())-\(name)"
}

@Suite struct PcapTests {
    @Test(arguments: [PcapPrecision.microsecond, .nanosecond])
    func writerReaderRoundTrip(precision: PcapPrecision) throws {
        let path = temporaryPath("roundtrip-\(precision).pcap")
        defer { unlink(path) }
        let frames = try Fixtures.frames("tcp4-echo.pcap")
        let writer = try PcapWriter(path: path, precision: precision)
        for (i, frame) in frames.enumerated() {
            let stamp = PcapTimestamp(seconds: 1_700_000_000 + Int64(i), nanoseconds: 123_456_789)
            #expect(writer.write(frame.bytes, timestamp: stamp))
        }
        writer.close()

        let reader = try PcapReader(path: path)
        #expect(reader.linkType == 1, "Ethernet")
        let back = try reader.readAll()
        #expect(back.map(\.bytes) == frames.map(\.bytes))
        for (i, record) in back.enumerated() {
            #expect(record.timestamp.seconds == 1_700_000_000 + Int64(i))
            #expect(record.timestamp.nanoseconds == (precision == .nanosecond ? 123_456_789 : 123_456_000))
            #expect(record.originalLength == record.bytes.count)
        }
    }

    /// "tcp port 7" selects exactly the TCP segments to or from port 7: every
    /// frame of the echo capture but its two ARP frames.
    @Test func bpfFilterSelectsExactlyTheMatchingFrames() throws {
        let all = try Fixtures.frames("tcp4-echo.pcap")
        let expected = try all.filter { record in
            try record.bytes.withSpan { bytes throws in
                guard case .tcp(let tcp) = try Dissection(bytes).transport else { return false }
                return tcp.sourcePort == 7 || tcp.destinationPort == 7
            }
        }
        let filtered = try Fixtures.frames("tcp4-echo.pcap", filter: "tcp port 7")
        #expect(filtered.map(\.bytes) == expected.map(\.bytes))
        #expect(filtered.count == 10, "3-way handshake, data and echo with ACKs, FIN exchange")
        #expect(filtered.count < all.count)
        #expect(try Fixtures.frames("tcp4-echo.pcap", filter: "udp").isEmpty)
    }

    @Test func writerFilterKeepsOnlyMatchingFrames() throws {
        let path = temporaryPath("filtered.pcap")
        defer { unlink(path) }
        let frames = try Fixtures.frames("ping4.pcap")
        let writer = try PcapWriter(path: path, filter: "arp")
        let written = frames.filter { writer.write($0.bytes, timestamp: $0.timestamp) }.count
        writer.close()
        #expect(written == 2)
        #expect(try PcapReader(path: path).readAll().count == 2)
    }

    @Test func badFilterIsATypedErrorWithLibpcapsMessage() {
        #expect {
            _ = try PcapReader(path: Fixtures.path("ping4.pcap"), filter: "tcp port banana")
        } throws: { error in
            guard case .filter(let expression, let message) = error as? PcapError else { return false }
            return expression == "tcp port banana" && !message.isEmpty
        }
        #expect(throws: PcapError.self) { _ = try PcapWriter(path: temporaryPath("x.pcap"), filter: "(((") }
        unlink(temporaryPath("x.pcap"))
    }

    @Test func missingOrInvalidFileIsATypedError() throws {
        #expect {
            _ = try PcapReader(path: "/nonexistent/none.pcap")
        } throws: { error in
            guard case .open(let path, let message) = error as? PcapError else { return false }
            return path == "/nonexistent/none.pcap" && message.contains("No such file")
        }
        let garbage = temporaryPath("garbage.pcap")
        defer { unlink(garbage) }
        let fd = open(garbage, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        _ = write(fd, "not a capture file at all", 25)
        close(fd)
        #expect(throws: PcapError.self) { _ = try PcapReader(path: garbage) }
        #expect(throws: PcapError.self) { _ = try PcapWriter(path: "/nonexistent/dir/out.pcap") }
    }
}
