import Foundation
import NetstackTestSupport
import Testing

/// The metrics endpoint and the status page the stack serves over its own
/// TCP, from the host's `curl` and Prometheus's `promtool`.
@Suite(.serialized, .enabled(if: runningAsRoot, "integration tests need root for namespaces and TAP devices"))
struct MetricsEndpointTests {
    @Test func curlAndPromtoolReadTheMetricsOverBothVersions() throws {
        let capture = "/tmp/netstack-metrics-\(getpid()).pcap"
        defer { unlink(capture) }
        let (namespace, daemon) = try DaemonProcess.start("metrics", arguments: ["--pcap", capture])
        defer { namespace.remove() }
        defer { daemon.stop() }
        // Some traffic first, so that counters and service metrics exist.
        #expect(try namespace.run("echo hi | nc -N -w 5 192.168.69.1 7") == "hi\n")
        try daemon.waitForListener(port: 9100)
        for url in ["http://192.168.69.1:9100/metrics", "http://[fdaa::1]:9100/metrics"] {
            let text = try namespace.run("curl -sS --max-time 5 \(url)")
            #expect(text.contains("netstack_events_total{name=\"frames.received\"}"), "\(text.prefix(400))")
            #expect(text.contains("netstack_service_connections"), "the services' metrics: \(text.prefix(400))")
            #expect(text.contains("netstack_sockets{protocol=\"tcp\",state=\"listen\"}"), "sockets by state")
            #expect(text.contains("netstack_events_total{name=\"capture.written\"}"), "the capture's counters")
            #expect(text.contains("netstack_tcp_rtt_seconds{quantile=\"0.5\"}"), "RTTs of open connections (curl's)")
            #expect(text.contains("netstack_tcp_cwnd_bytes_count"), "congestion windows")
            #expect(text.contains("netstack_resource_limit{resource=\"socket buffer memory\"} 268435456"), "the caps")
            #expect(text.contains("netstack_resource_in_use{resource=\"TCP connections, IPv4\"}"), "what they hold")
            let check = namespace.execute("curl -sS --max-time 5 \(url) | promtool check metrics")
            #expect(check.status == 0, "promtool: \(check.output)")
        }
        // HEAD has the headers and no body; other paths are 404, other methods 405.
        let head = try namespace.run("curl -sS -I --max-time 5 http://192.168.69.1:9100/metrics")
        #expect(head.hasPrefix("HTTP/1.1 200 OK"), "\(head)")
        #expect(head.contains("text/plain; version=0.0.4"), "\(head)")
        let missing = try namespace.run("curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://192.168.69.1:9100/nothing")
        #expect(missing == "404")
        let posted = try namespace.run("curl -s -o /dev/null -w '%{http_code}' -X DELETE --max-time 5 http://192.168.69.1:9100/metrics")
        #expect(posted == "405")
        // Two requests on one connection (keep-alive).
        let twice = try namespace.run("curl -sv --max-time 5 http://192.168.69.1:9100/ http://192.168.69.1:9100/metrics -o /dev/null -o /dev/null 2>&1")
        #expect(twice.contains("Re-using existing connection") || twice.contains("Reusing existing connection"), "\(twice)")
        // A request head that never ends is cut off at 8 KiB with 431.
        let flood = try namespace.run(
            "(printf \"GET / HTTP/1.1\\r\\n\"; head -c 20000 /dev/zero | tr \"\\0\" a) | nc -w 3 192.168.69.1 9100 | head -1")
        #expect(flood.hasPrefix("HTTP/1.1 431"), "\(flood)")
        // The status page on port 80 (the same server, HTML).
        let page = try namespace.run("curl -sS --max-time 5 http://192.168.69.1/")
        for part in ["<h2>Addresses</h2>", "192.168.69.1/24", "fdaa::1/64", "<h2>Neighbours</h2>", "192.168.69.100",
                     "<h2>Sockets</h2>", "listen", "<h2>Limits</h2>", "socket buffer memory", "<h2>Counters</h2>", "frames.received", "http-equiv=\"refresh\""] {
            #expect(page.contains(part), "the status page shows \(part)")
        }
        #expect(daemon.isRunning)
        print("metrics endpoint: \(try namespace.run("curl -sS --max-time 5 http://192.168.69.1:9100/metrics | wc -l").trimmingCharacters(in: .whitespacesAndNewlines)) lines, promtool accepts them")
    }
}
