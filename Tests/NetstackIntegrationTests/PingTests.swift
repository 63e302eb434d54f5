import Foundation
import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// Parses ping's summary: (transmitted, received).
func pingCounts(_ output: String) -> (transmitted: Int, received: Int)? {
    guard let line = output.split(separator: "\n").first(where: { $0.contains("packets transmitted") }) else {
        return nil
    }
    let numbers = line.split(separator: " ").compactMap { Int($0) }
    guard numbers.count >= 2 else { return nil }
    return (numbers[0], numbers[1])
}

/// netstackd on a TAP inside a namespace made by the test, pinged by the
/// real `ping` from the host side of the TAP.
@Suite(.serialized, .enabled(if: runningAsRoot, "integration tests need root for namespaces and TAP devices"))
struct PingTests {
    @Test func pingAndFragmentedPingOverBothVersions() throws {
        let namespace = try TestNamespace("ping")
        defer { namespace.remove() }
        try namespace.addHostTap()
        let capture = "/tmp/\(namespace.name).pcap"
        defer { unlink(capture) }
        let daemon = try DaemonProcess(in: namespace, arguments: ["--pcap", capture])
        defer { daemon.stop() }

        let targets = ["ping -c 50 -i 0.01 192.168.69.1",
                       "ping -6 -c 50 -i 0.01 fdaa::1",
                       "ping -6 -c 50 -i 0.01 fe80::ff:fe00:1%tap0",
                       "ping -c 5 -i 0.05 -s 8000 192.168.69.1",
                       "ping -6 -c 5 -i 0.05 -s 8000 fdaa::1"]
        for command in targets {
            let (status, output) = namespace.execute(command + " -W 2")
            let counts = pingCounts(output)
            #expect(status == 0, "\(command): \(output)")
            #expect(counts != nil && counts!.transmitted == counts!.received, "\(command): \(output)")
        }

        #expect(daemon.stop() == 0, "a clean stop on SIGINT")
        #expect(daemon.standardError.contains("stopped; counters:"))
        let counters = daemon.finalCounters
        #expect(counters["icmp.echoAnswered"] == 160)
        #expect(counters["fragment.reassembled"] == 10)

        // The capture holds the exchange, readable by tcpdump.
        let dump = try TestShell.run("tcpdump -nr \(capture)")
        let replies4 = dump.split(separator: "\n").filter { $0.contains("192.168.69.1 > 192.168.69.100: ICMP echo reply") }
        let replies6 = dump.split(separator: "\n").filter { $0.contains("ICMP6, echo reply") }
        #expect(replies4.count == 55)
        #expect(replies6.count == 105)
    }

    /// Bad frames from the host side are counted and dropped; memory stays
    /// bounded under 10,000 fragments that never complete; pings still work.
    @Test func malformedFramesAndAFragmentFlood() throws {
        let namespace = try TestNamespace("flood")
        defer { namespace.remove() }
        try namespace.addHostTap()
        try namespace.run("ip link set tap0 txqueuelen 20000")
        let config = "/tmp/\(namespace.name).toml"
        defer { unlink(config) }
        let text = embeddedConfigurationText().replacingOccurrences(of: "reassembly-memory = 4194304",
                                                                    with: "reassembly-memory = 1048576")
        _ = FileManager.default.createFile(atPath: config, contents: Data(text.utf8))
        let daemon = try DaemonProcess(in: namespace, arguments: ["--config", config])
        defer { daemon.stop() }
        #expect(namespace.execute("ping -c 1 -W 2 192.168.69.1").status == 0)
        let before = daemon.residentMemory

        let host = HostFrames()
        let injector = try PacketInjector(namespace: namespace)
        let icmp = HostFrames.icmpv4(.echoRequest(identifier: 1, sequence: 1), body: Array(repeating: 7, count: 32))
        for _ in 0..<10 {
            injector.send(host.ipv4Packet(.icmp, icmp, corruptChecksum: true))
            injector.send(Array(host.ipv4Packet(.icmp, icmp).prefix(30)))
            injector.send(host.ipv4Packet(.udp, Array(repeating: 1, count: 64), identification: 1,
                                          fragmentOffset: 65_528, moreFragments: true))
        }
        // Two fragments that overlap with different bytes.
        injector.send(host.ipv4Packet(.udp, Array(repeating: 1, count: 64), identification: 2,
                                      fragmentOffset: 0, moreFragments: true))
        injector.send(host.ipv4Packet(.udp, Array(repeating: 2, count: 64), identification: 2,
                                      fragmentOffset: 32, moreFragments: true))
        usleep(100_000)
        var peak = 0
        for id in 0..<10_000 {
            injector.send(host.ipv4Packet(.udp, Array(repeating: 0xab, count: 1480),
                                          identification: UInt16(truncatingIfNeeded: 10_000 + id),
                                          fragmentOffset: 0, moreFragments: true))
            if id % 200 == 199 {
                usleep(2_000)
                peak = max(peak, daemon.residentMemory)
            }
        }
        usleep(300_000)
        peak = max(peak, daemon.residentMemory)
        #expect(peak - before < 8 << 20, "resident memory grew by \(peak - before) bytes")

        // The debug build needs a few seconds for the backlog; the pings wait behind it.
        let (status, output) = namespace.execute("ping -c 3 -i 0.2 -W 10 192.168.69.1")
        #expect(status == 0, "\(output) \(namespace.execute("ip -s link show tap0; ip neigh").output)")
        #expect(daemon.stop() == 0)
        let counters = daemon.finalCounters
        #expect(counters["drop.ipv4.badChecksum"] == 10)
        #expect(counters["drop.ipv4.truncated"] == 10)
        #expect(counters["drop.fragment.tooLarge"] == 10)
        #expect(counters["drop.fragment.overlap"] == 1)
        #expect((counters["drop.fragment.evicted"] ?? 0) >= 10_000 - 1024, "\(counters) \(daemon.standardError)")
    }

    /// `--pcap-filter icmp`: a run with ping and TCP traffic writes only the
    /// ICMP frames, and the capture is complete after SIGINT.
    @Test func aCaptureFilterWritesOnlyWhatItSelects() throws {
        let namespace = try TestNamespace("pcapfilter")
        defer { namespace.remove() }
        try namespace.addHostTap()
        let capture = "/tmp/\(namespace.name).pcap"
        defer { unlink(capture) }
        let daemon = try DaemonProcess(in: namespace, arguments: ["--pcap", capture, "--pcap-filter", "icmp"])
        defer { daemon.stop() }
        #expect(namespace.execute("ping -c 5 -i 0.05 -W 2 192.168.69.1").status == 0)
        #expect(try namespace.run("echo hi | nc -N -w 5 192.168.69.1 7") == "hi\n")
        #expect(daemon.stop() == 0)
        let all = try TestShell.run("tcpdump -nr \(capture) 2>/dev/null").split(separator: "\n")
        let icmp = try TestShell.run("tcpdump -nr \(capture) icmp 2>/dev/null").split(separator: "\n")
        #expect(all.count == 10, "5 requests and 5 replies: \(all)")
        #expect(icmp.count == all.count, "only ICMP frames")
    }
}

/// config/netstackd.toml, as the daemon embeds it.
func embeddedConfigurationText() -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return (try? String(contentsOf: root.appendingPathComponent("config/netstackd.toml"), encoding: .utf8)) ?? ""
}
