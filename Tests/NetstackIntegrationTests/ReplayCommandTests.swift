import Foundation
import NetstackIO
import NetstackTestSupport
import NetstackWire
import Testing

/// `netstackd replay FIXTURE --out OUT`: the stack's answers in OUT pass the
/// fixture tests' checks against what the Linux kernel answered.
@Suite struct ReplayCommandTests {
    /// Runs the command; the frames the stack sent, from OUT.
    func replayed(_ fixture: String, format: String = "pcap") throws -> [[UInt8]] {
        let out = "/tmp/netstack-replay-\(getpid())-\(fixture).\(format)"
        defer { unlink(out) }
        let summary = try TestShell.run("\(DaemonProcess.binary) replay \(Fixtures.path(fixture)) --out \(out) --format \(format)")
        #expect(summary.hasPrefix("replayed "), "\(summary)")
        return try PcapReader(path: out).readAll().map(\.bytes).filter { frame in
            frame.withSpan { (try? EthernetFrame($0))?.source } == Fixtures.stackMAC
        }
    }

    @Test(arguments: Fixtures.all)
    func theAnswersPassTheFixtureChecks(fixture: String) throws {
        let produced = try replayed(fixture)
        let expected = try Fixtures.frames(fixture).map(\.bytes).filter { frame in
            frame.withSpan { (try? EthernetFrame($0))?.source } == Fixtures.stackMAC
        }
        if fixture.hasPrefix("tcp") && !fixture.contains("closed") {
            // Connections by transcript, as TCPReplayTests compares them.
            let ours = TCPTranscript.of(produced)
            let kernels = TCPTranscript.of(expected)
            #expect(ours.mapValues(\.essentials) == kernels.mapValues(\.essentials))
        } else {
            var oursRebase = SequenceRebase()
            var kernelsRebase = SequenceRebase()
            let ours = produced.compactMap { FrameKind($0, include: FrameFilter.isAnswer, rebase: &oursRebase) }
            let kernels = expected.compactMap { FrameKind($0, include: FrameFilter.isAnswer, rebase: &kernelsRebase) }
            #expect(ours == kernels)
        }
    }

    @Test func pcapngOutputAndBadArguments() throws {
        #expect(try replayed("udp4-echo.pcap", format: "pcapng").count == 2, "ARP reply and the echo")
        let missing = TestShell.execute("\(DaemonProcess.binary) replay /nonexistent.pcap --out /tmp/x.pcap")
        #expect(missing.status == 2)
        #expect(missing.output.contains("/nonexistent.pcap"), "\(missing.output)")
        let format = TestShell.execute("\(DaemonProcess.binary) replay \(Fixtures.path("ping4.pcap")) --out /tmp/x.pcap --format txt")
        #expect(format.status == 2)
        #expect(format.output.contains("--format"), "\(format.output)")
        unlink("/tmp/x.pcap")
    }
}
