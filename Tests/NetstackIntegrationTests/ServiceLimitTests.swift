import Foundation
import NetstackTestSupport
import Testing

/// The built-in services' middleware stacks as configured: with
/// `max-connections = 2`, a third client waits (or is refused), and the
/// service metrics say so.
@Suite(.serialized, .enabled(if: runningAsRoot, "integration tests need root for namespaces and TAP devices"))
struct ServiceLimitTests {
    /// A configuration with only TCP echo, limited to two connections.
    static func configuration(overflow: String) -> String {
        """
        [interface]
        name = "tap0"
        addresses = ["192.168.69.1/24", "fdaa::1/64"]
        gateways = ["192.168.69.100", "fdaa::100"]

        [services.echo]
        port = 7
        transports = ["tcp"]
        max-connections = 2
        overflow = "\(overflow)"
        idle-timeout = 60
        """
    }

    func start(_ name: String, overflow: String) throws -> (TestNamespace, DaemonProcess, String) {
        let path = "/tmp/netstackd-\(name)-\(getpid()).toml"
        try Self.configuration(overflow: overflow).write(toFile: path, atomically: true, encoding: .utf8)
        let (namespace, daemon) = try DaemonProcess.start(name, arguments: ["--config", path])
        return (namespace, daemon, path)
    }

    @Test func aThirdConnectionWaitsForASlot() throws {
        let (namespace, daemon, path) = try start("svcwait", overflow: "wait")
        defer { namespace.remove() }
        defer { daemon.stop() }
        defer { unlink(path) }
        let first = try LineClient(in: namespace, "192.168.69.1", 7)
        let second = try LineClient(in: namespace, "fdaa::1", 7)
        first.send("one\n")
        second.send("two\n")
        #expect(first.waitForOutput("one\n") && second.waitForOutput("two\n"), "two connections are served")

        let third = try LineClient(in: namespace, "192.168.69.1", 7)
        third.send("three\n")
        #expect(!third.waitForOutput("three\n", seconds: 1), "the third waits: \(third.output)")
        first.finish()
        #expect(first.wait() == 0)
        #expect(third.waitForOutput("three\n"), "served once the first has gone: \(third.output)")
        second.finish()
        third.finish()
        #expect(second.wait() == 0 && third.wait() == 0)

        #expect(daemon.stop() == 0)
        let metrics = daemon.finalMetrics
        let labels = #"{service="echo",transport="tcp"}"#
        #expect(metrics["netstack_service_connections_calls_total\(labels)"] == 3, "\(metrics)")
        #expect(metrics["netstack_service_served_calls_total\(labels)"] == 3, "\(metrics)")
        #expect(metrics["netstack_service_connections_in_flight\(labels)"] == 0, "\(metrics)")
    }

    @Test func aThirdConnectionIsRefusedWhenConfigured() throws {
        let (namespace, daemon, path) = try start("svcrefuse", overflow: "refuse")
        defer { namespace.remove() }
        defer { daemon.stop() }
        defer { unlink(path) }
        let first = try LineClient(in: namespace, "192.168.69.1", 7)
        let second = try LineClient(in: namespace, "192.168.69.1", 7)
        first.send("one\n")
        second.send("two\n")
        #expect(first.waitForOutput("one\n") && second.waitForOutput("two\n"))

        // The handshake completes, then the service resets the connection.
        let third = try LineClient(in: namespace, "192.168.69.1", 7)
        third.send("three\n")
        third.finish()
        _ = third.wait()
        #expect(third.output.isEmpty, "refused: \(third.output)")
        first.finish()
        second.finish()
        #expect(first.wait() == 0 && second.wait() == 0)

        #expect(daemon.stop() == 0)
        let metrics = daemon.finalMetrics
        let labels = #"service="echo",transport="tcp""#
        #expect(metrics["netstack_service_connections_calls_total{\(labels)}"] == 3, "\(metrics)")
        #expect(metrics["netstack_service_connections_errors_total{\(labels),error=\"OverloadedError\"}"] == 1, "\(metrics)")
        #expect(metrics["netstack_service_served_calls_total{\(labels)}"] == 2, "\(metrics)")
        // The service's reset, and one more for each segment nc sent after
        // it arrived (its data, its FIN: RFC 9293 §3.10.7.1), which depends
        // on how fast the reset was.
        #expect((1...3).contains(daemon.finalCounters["tcp.resetsSent"] ?? 0), "\(daemon.finalCounters)")
    }
}

/// `nc -N HOST PORT` in the namespace, fed through a FIFO the test writes
/// to: the connection stays open until `finish()` closes the FIFO.
final class LineClient {
    private let fifo: String
    private let command: BackgroundCommand
    private var writer: Int32 = -1

    init(in namespace: TestNamespace, _ host: String, _ port: Int) throws {
        fifo = "/tmp/\(namespace.name)-\(UUID().uuidString.prefix(8)).fifo"
        guard mkfifo(fifo, 0o600) == 0 else { throw TestShell.Failure(command: "mkfifo", status: errno, output: fifo) }
        command = try BackgroundCommand(in: namespace, "timeout -k 1 30 nc -N -w 30 \(host) \(port) < \(fifo)")
        // Opening for writing succeeds once the shell has opened the FIFO for reading.
        for _ in 0..<100 {
            writer = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if writer >= 0 { break }
            usleep(50_000)
        }
        guard writer >= 0 else { throw TestShell.Failure(command: "open \(fifo)", status: errno, output: command.output) }
    }

    deinit {
        finish()
        command.stop()
        unlink(fifo)
    }

    var output: String { command.output }

    func send(_ text: String) {
        _ = text.utf8CString.withUnsafeBufferPointer { write(writer, $0.baseAddress, $0.count - 1) }
    }

    /// Waits until the output is `expected`; false if it is not within `seconds`.
    func waitForOutput(_ expected: String, seconds: Double = 5) -> Bool {
        for _ in 0..<Int(seconds * 20) {
            if output == expected { return true }
            usleep(50_000)
        }
        return output == expected
    }

    /// Ends the input: netcat sends FIN and exits once the server has finished.
    func finish() {
        if writer >= 0 { close(writer) }
        writer = -1
    }

    func wait() -> Int32 { command.wait() }
}
