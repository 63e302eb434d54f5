import NetstackCore
import NetstackIO
import NetstackTestSupport
import NetstackWire
import Testing

/// The stack's replies to the host's frames of real captures match the Linux
/// kernel's in kind.
@Suite struct ReplayTests {
    @Test(arguments: ["ping4.pcap", "ping6.pcap", "ping4-frag.pcap", "ping6-frag.pcap"])
    func pingCapturesReplayExactly(fixture: String) throws {
        let replay = try FixtureReplay(fixture: fixture)
        let (expected, produced) = replay.signatures(where: FrameFilter.isAnswer)
        #expect(expected.count > 0)
        #expect(produced == expected, "\n\(diff(expected, produced))")
        #expect(replay.stack.counters.totalDrops == 0, "\(replay.stack.counters.nonZero)")
    }

    @Test(arguments: ["udp4-echo.pcap", "udp6-echo.pcap", "udp4-closed-port.pcap"])
    func udpCapturesReplayExactly(fixture: String) throws {
        let echo = DirectUDPEcho()
        let replay = try FixtureReplay(fixture: fixture, setUp: echo.setUp, application: echo.run)
        let (expected, produced) = replay.signatures(where: FrameFilter.isAnswer)
        #expect(expected.count > 0)
        #expect(produced == expected, "\n\(diff(expected, produced))")
        #expect(echo.echoed == (fixture.contains("closed") ? 0 : 1))
    }

    /// Address resolution in every capture: each ARP request and neighbour
    /// solicitation from the host is answered as the kernel answered it.
    @Test(arguments: Fixtures.all)
    func neighborDiscoveryMatchesInEveryCapture(fixture: String) throws {
        let replay = try FixtureReplay(fixture: fixture)
        let (expected, produced) = replay.signatures(where: FrameFilter.isNeighborDiscovery)
        #expect(expected.count > 0)
        #expect(produced == expected, "\n\(diff(expected, produced))")
    }
}

/// Both lists side by side, for failure messages.
func diff(_ expected: [FrameKind], _ produced: [FrameKind]) -> String {
    (0..<max(expected.count, produced.count)).map { i in
        let e = i < expected.count ? expected[i].description : "-"
        let p = i < produced.count ? produced[i].description : "-"
        return (e == p ? "  " : "! ") + "expected: \(e)\n    produced: \(p)"
    }.joined(separator: "\n")
}
