import Foundation
import NetstackTestSupport
import Testing

/// The daemon's UDP services from the host side of the TAP.
@Suite(.serialized, .enabled(if: runningAsRoot, "integration tests need root for namespaces and TAP devices"))
struct UDPServiceTests {
    @Test func echoOfAThousandDatagramsOverBothVersions() throws {
        let namespace = try TestNamespace("udp")
        defer { namespace.remove() }
        try namespace.addHostTap()
        let daemon = try DaemonProcess(in: namespace)
        defer { daemon.stop() }
        var generator = SplitMix64(seed: 862)
        for address in ["192.168.69.1", "fdaa::1"] {
            let socket = try HostSocket(namespace: namespace, connectTo: address, port: 7)
            var sizes = (0..<1000).map { _ in Int.random(in: 0...1472, using: &generator) }
            sizes += [8000, 8000, 4000, 65_000 - (address.contains(":") ? 0 : 100)]
            for size in sizes {
                let payload = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
                try socket.send(payload)
                let echoed = try socket.receive()
                #expect(echoed == payload, "\(address): a datagram of \(size) bytes came back different")
                if echoed != payload { break }
            }
        }
        // The small tools work too.
        #expect(try namespace.run("echo hello | socat -t 1 - UDP:192.168.69.1:7") == "hello\n")
        #expect(try namespace.run("echo hello | socat -t 1 - UDP6:[fdaa::1]:7") == "hello\n")
        let daytime = try namespace.run("echo x | socat -t 1 - UDP:192.168.69.1:13")
        #expect(daytime.hasSuffix("\r\n") && daytime.contains(","), "\(daytime)")
        #expect(daemon.stop() == 0)
        let counters = daemon.finalCounters
        #expect(counters["udp.received"] == 2 * 1004 + 3)
        #expect(counters["drop.udp.receiveQueueFull"] == nil)
    }

    /// A datagram to a closed port is answered with port unreachable, which
    /// the host's tools see as "connection refused".
    @Test func closedPortIsConnectionRefused() throws {
        let namespace = try TestNamespace("udpclosed")
        defer { namespace.remove() }
        try namespace.addHostTap()
        let daemon = try DaemonProcess(in: namespace)
        defer { daemon.stop() }
        for address in ["192.168.69.1", "fdaa::1"] {
            // netcat probes, then fails its next write with ECONNREFUSED (exit 1).
            let netcat = namespace.execute("echo x | nc -v -u -w 2 \(address) 9999")
            #expect(netcat.status == 1, "\(netcat.output)")
            let socket = try HostSocket(namespace: namespace, connectTo: address, port: 9999)
            try socket.send([1])
            #expect {
                _ = try socket.receive()
            } throws: { error in
                (error as? HostSocket.Failure)?.code == ECONNREFUSED
            }
        }
        let socat = namespace.execute("(echo x; sleep 0.3; echo y) | socat - UDP:192.168.69.1:9999")
        #expect(socat.output.contains("Connection refused"), "\(socat.output)")
        #expect(daemon.stop() == 0)
        #expect((daemon.finalCounters["drop.udp.noSocket"] ?? 0) >= 5)
    }
    /// A scan of 200 closed ports in one second from one host draws the
    /// per-destination burst and about one error a second more (Linux:
    /// icmp_ratelimit), not 200 (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)).
    @Test func aScanOfClosedPortsDrawsNoMoreErrorsThanTheLimit() throws {
        let namespace = try TestNamespace("udpscan")
        defer { namespace.remove() }
        try namespace.addHostTap()
        let daemon = try DaemonProcess(in: namespace)
        defer { daemon.stop() }
        // Sends a datagram every 5 ms to the next closed port and counts the
        // port unreachables that come back (a raw ICMP socket sees them all).
        let script = """
            import select, socket, time
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            unreachables = 0
            def collect(wait):
                global unreachables
                while select.select([raw], [], [], wait)[0]:
                    packet, (source, _) = raw.recvfrom(2048)
                    ihl = (packet[0] & 15) * 4
                    if source == "192.168.69.1" and packet[ihl] == 3 and packet[ihl + 1] == 3:
                        unreachables += 1
                    wait = 0
            start = time.monotonic()
            for port in range(20000, 20200):
                udp.sendto(b"probe", ("192.168.69.1", port))
                collect(0.005)
            collect(0.5)
            print(unreachables, round(time.monotonic() - start, 2))
            """
        let path = "/tmp/\(namespace.name)-scan.py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let answer = try namespace.run("timeout 20 python3 \(path)").split(separator: " ")
        let unreachables = Int(answer.first ?? "") ?? -1
        let seconds = Double(answer.last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        // The burst of 6, one a second after it (the run lasts 1–2 s).
        #expect((6...(6 + Int(seconds.rounded(.up)))).contains(unreachables),
                "\(unreachables) port unreachables for 200 probes in \(seconds) s")
        #expect(daemon.stop() == 0)
        #expect((daemon.finalCounters["drop.icmp.errorRateLimited"] ?? 0) >= 190, "\(daemon.finalCounters)")
        print("200 probes to closed ports in \(seconds) s: \(unreachables) port unreachables")
    }
}
