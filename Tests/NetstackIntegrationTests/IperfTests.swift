import Foundation
import NetstackControl
import NetstackTestSupport
import Testing

/// Debian's iperf3 against the stack's own iperf3 server: TCP both ways,
/// several streams, IPv6, UDP both ways, with iperf3's JSON results read.
@Suite(.serialized, .enabled(if: runningAsRoot, "integration tests need root for namespaces and TAP devices"))
struct IperfTests {
    /// `iperf3 -c ... -J ARGS`, parsed: the total bits per second the
    /// receiver saw, and the bytes.
    func run(_ namespace: TestNamespace, _ arguments: String) throws -> (bitsPerSecond: Double, bytes: Double, json: [String: Any]) {
        let output = try namespace.run("timeout -k 1 30 iperf3 -J -t 2 \(arguments)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
                                "iperf3 printed: \(output.prefix(400))")
        #expect(json["error"] == nil, "iperf3 \(arguments): \(json["error"] ?? "")")
        let end = try #require(json["end"] as? [String: Any], "no end section: \(output.prefix(400))")
        let sum = (end["sum_received"] ?? end["sum"]) as? [String: Any] ?? [:]
        return ((sum["bits_per_second"] as? Double) ?? 0, (sum["bytes"] as? Double) ?? 0, json)
    }

    @Test func iperf3AgainstTheStacksOwnServer() throws {
        let (namespace, daemon) = try DaemonProcess.start("iperf")
        defer { namespace.remove() }
        defer { daemon.stop() }
        try daemon.waitForListener(port: 5201)
        var rows: [String] = []
        for (name, arguments) in [
            ("TCP host→stack", "-c 192.168.69.1"),
            ("TCP stack→host (-R)", "-c 192.168.69.1 -R"),
            ("TCP, 4 streams (-P 4)", "-c 192.168.69.1 -P 4"),
            ("TCP over IPv6 (-6)", "-6 -c fdaa::1"),
            ("TCP both ways (--bidir)", "-c 192.168.69.1 --bidir"),
            ("UDP 200 Mbit/s (-u)", "-c 192.168.69.1 -u -b 200M"),
            ("UDP stack→host (-u -R)", "-c 192.168.69.1 -u -b 50M -R"),
        ] {
            let result = try run(namespace, arguments)
            #expect(result.bitsPerSecond > 1e6 && result.bytes > 1e5, "\(name): \(result.bitsPerSecond) bit/s")
            if arguments.contains("-u") {
                // UDP at a set rate: most of it arrives (the rate is well under the link's).
                let end = result.json["end"] as? [String: Any]
                let sum = end?["sum"] as? [String: Any]
                let lost = (sum?["lost_percent"] as? Double) ?? 100
                #expect(lost < 20, "\(name): \(lost)% lost")
            }
            rows.append("\(name): \(String(format: "%.2f", result.bitsPerSecond / 1e9)) Gbit/s")
        }
        print("iperf3 against the stack: " + rows.joined(separator: "; "))
        // A client that speaks nonsense ends its own session, nothing more.
        try namespace.run("printf \"not an iperf3 cookie, far too short\" | timeout 15 nc -N 192.168.69.1 5201 > /dev/null || true")
        let after = try run(namespace, "-c 192.168.69.1")
        #expect(after.bitsPerSecond > 1e6, "served after a bad session")
        let stats = try daemon.control("stats --json")
        let report = try JSONDecoder().decode(StatsReport.self, from: Data(stats.utf8))
        let failed = report.metrics.split(separator: "\n")
            .first { $0.hasPrefix("netstack_iperf3_failed_sessions_total ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
        #expect(failed >= 1, "the bad session is counted: \(report.metrics.split(separator: "\n").filter { $0.contains("iperf") })")
        #expect(daemon.stop() == 0)
    }
}
