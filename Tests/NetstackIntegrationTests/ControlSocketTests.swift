import Foundation
import NetstackClient
import NetstackControl
import NetstackTestSupport
import Testing

/// Sockets inside the stack for local programs: `netstackctl nc` against the
/// host's `nc`, clones through `NetstackClient`, queries, and bad clients.
@Suite(.serialized, .enabled(if: runningAsRoot, "integration tests need root for namespaces and TAP devices"))
struct ControlSocketTests {
    static func sha256(_ path: String) throws -> String {
        String(try TestShell.run("sha256sum \(path)").prefix(64))
    }

    @Test func netcatInsideTheStackBothWaysOverBothVersions() throws {
        let (namespace, daemon) = try DaemonProcess.start("ctlnc")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let input = "/tmp/\(namespace.name).in"
        let output = "/tmp/\(namespace.name).out"
        defer {
            unlink(input)
            unlink(output)
        }
        try TestShell.run("head -c 10M /dev/urandom > \(input)")
        let expected = try Self.sha256(input)
        let socket = "--socket \(daemon.controlSocket)"
        let ctl = "timeout -k 1 30 \(DaemonProcess.controlTool)"
        for (stack, host, flag) in [("192.168.69.1", "192.168.69.100", ""), ("fdaa::1", "fdaa::100", "-6")] {
            // The stack listens; the host sends 10 MiB in, then receives 10 MiB.
            for (port, stackSide, hostSide) in [
                (8080, "nc \(socket) -l \(flag) 8080 < /dev/null > \(output)", "nc -N \(stack) 8080 < \(input)"),
                (8081, "nc \(socket) -l \(flag) 8081 < \(input)", "nc -N \(stack) 8081 < /dev/null > \(output)"),
            ] {
                unlink(output)
                let listener = try BackgroundCommand(in: namespace, "\(ctl) \(stackSide)")
                try daemon.waitForListener(port: port)
                try namespace.run("timeout -k 1 30 \(hostSide)")
                #expect(listener.wait() == 0, "\(stackSide): \(listener.output)")
                #expect(try Self.sha256(output) == expected, "\(stackSide) / \(hostSide)")
            }
            // The stack connects to the host's listener.
            unlink(output)
            let hostListener = try BackgroundCommand(in: namespace, "timeout -k 1 30 nc \(flag) -l -N 9000 < /dev/null > \(output)")
            usleep(300_000)
            try TestShell.run("\(ctl) nc \(socket) \(host) 9000 < \(input)")
            #expect(hostListener.wait() == 0)
            #expect(try Self.sha256(output) == expected, "stack → host listener over \(host)")
        }
    }

    @Test func datagramsInsideTheStackOverBothVersions() throws {
        let (namespace, daemon) = try DaemonProcess.start("ctludp")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let socket = "--socket \(daemon.controlSocket)"
        let ctl = "timeout -k 1 20 \(DaemonProcess.controlTool)"
        for (stack, host, flag) in [("192.168.69.1", "192.168.69.100", ""), ("fdaa::1", "fdaa::100", "-6")] {
            let listener = try BackgroundCommand(in: namespace, "\(ctl) nc \(socket) -u -l \(flag) -w 2 9100 < /dev/null")
            try daemon.waitForSocket { $0.proto.hasPrefix("udp") && $0.local.hasSuffix(":9100") }
            try namespace.run("echo from-host | timeout 5 nc -u -w 1 \(stack) 9100")
            #expect(listener.wait() == 0)
            #expect(listener.output == "from-host\n", "\(stack): \(listener.output)")

            let hostListener = try BackgroundCommand(in: namespace, "timeout -k 1 5 nc \(flag) -u -l 9101")
            usleep(300_000)
            try TestShell.run("echo from-stack | \(ctl) nc \(socket) -u -w 1 \(host) 9101")
            for _ in 0..<40 where hostListener.output.isEmpty { usleep(50_000) }
            #expect(hostListener.output == "from-stack\n", "\(host): \(hostListener.output)")
        }
    }

    /// Two control connections on one socket: both send; closing one keeps
    /// the socket, closing the second closes it and frees its port.
    @Test func clonesShareASocketUntilTheLastCloses() async throws {
        let (namespace, daemon) = try DaemonProcess.start("ctlclone")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let client = NetstackClient(path: daemon.controlSocket)
        let receiver = try BackgroundCommand(in: namespace, "socat -u UDP4-RECV:9300 -")
        usleep(300_000)
        let host = ControlEndpoint(host: "192.168.69.100", port: 9300)!
        let first = try await client.openSocket(.ipv4, .datagram)
        let bound = try await first.bind(.any(.ipv4, port: 9200))
        #expect(bound.port == 9200)
        let second = try await first.clone()
        try await first.send(Array("from the first\n".utf8), to: host)
        try await second.send(Array("from the second\n".utf8), to: host)
        for _ in 0..<40 where !receiver.output.contains("second") { usleep(50_000) }
        #expect(receiver.output == "from the first\nfrom the second\n", "\(receiver.output)")

        try await first.close()
        #expect(try await client.sockets().contains { $0.proto == "udp" && $0.local == "0.0.0.0:9200" },
                "the socket lives on with its second channel")
        try await second.send(Array("still here\n".utf8), to: host)
        for _ in 0..<40 where !receiver.output.contains("still") { usleep(50_000) }
        #expect(receiver.output.hasSuffix("still here\n"))

        try await second.close()
        #expect(try await !client.sockets().contains { $0.local == "0.0.0.0:9200" }, "closed with its last channel")
        let again = try await client.openSocket(.ipv4, .datagram)
        #expect(try await again.bind(.any(.ipv4, port: 9200)).port == 9200, "the port is free again")
        try await again.close()
    }

    /// `netstackctl sockets` shows a connection made through the client and its state.
    @Test func socketsListsConnectionsWithTheirStates() async throws {
        let (namespace, daemon) = try DaemonProcess.start("ctlss")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let hostListener = try BackgroundCommand(in: namespace, "timeout -k 1 10 sh -c 'sleep 3 | nc -l 9400'")
        usleep(300_000)
        let client = NetstackClient(path: daemon.controlSocket)
        let socket = try await client.openSocket(.ipv4, .stream)
        try await socket.connect(ControlEndpoint(host: "192.168.69.100", port: 9400)!)
        let local = try await socket.endpoints().local!
        let table = try daemon.control("sockets")
        let line = table.split(separator: "\n").first { $0.contains("192.168.69.100:9400") }
        #expect(line.map { $0.contains("tcp") && $0.contains("established") && $0.contains("\(local)") } == true, "\(table)")
        let json = try daemon.control("sockets --json")
        let reports = try JSONDecoder().decode([SocketReport].self, from: Data(json.utf8))
        #expect(reports.contains { $0.remote == "192.168.69.100:9400" && $0.state == "established" })
        #expect(reports.contains { $0.state == "listen" && $0.local == "0.0.0.0:7" })
        try await socket.close()
        let after = try await client.sockets().first { $0.remote == "192.168.69.100:9400" }
        #expect(after.map { ["finWait1", "finWait2", "timeWait"].contains($0.state) } ?? true, "\(String(describing: after))")
        hostListener.stop()
    }

    /// 200 TCP connections through echo, one after another: the stack's
    /// socket count comes back to where it started.
    @Test func twoHundredConnectionsLeakNoSocket() async throws {
        let (namespace, daemon) = try DaemonProcess.start("ctlleak")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let client = NetstackClient(path: daemon.controlSocket)
        let before = try await client.sockets().count
        try namespace.run("for i in $(seq 200); do echo $i | nc -N -w 5 192.168.69.1 7 >/dev/null || exit 1; done")
        var after = try await client.sockets()
        for _ in 0..<50 where after.count != before {
            try await Task.sleep(for: .milliseconds(100))
            after = try await client.sockets()
        }
        #expect(after.count == before, "\(after.filter { $0.state != "listen" })")
        #expect(daemon.stop() == 0)
        #expect(daemon.finalCounters["tcp.passiveOpens"] == 200)
    }

    @Test func badMessagesGetTypedErrorsAndTheDaemonServesTheNextClient() async throws {
        let (namespace, daemon) = try DaemonProcess.start("ctlbad")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let connection = try await ControlConnection.connect(path: daemon.controlSocket)
        // A send with an endpoint of family 5: malformed.
        #expect(try await connection.raw([0, 0, 0, 2, 0x14, 5]) == .failure(ControlError(.malformed, "address family 5")))
        let unknown = try await connection.raw([0, 0, 0, 1, 0x77])
        guard case .failure(let error) = unknown else { Issue.record("\(unknown)"); return }
        #expect(error.code == .unknownType)
        // The connection lives on after those two.
        guard case .queryResult = try await connection.exchange(.query(.status)) else { Issue.record("no status"); return }
        // A 1 GiB length prefix: refused, and that connection ends.
        let huge = try await connection.raw([0x40, 0, 0, 0])
        guard case .failure(let tooLarge) = huge else { Issue.record("\(huge)"); return }
        #expect(tooLarge.code == .tooLarge)
        // A socket request before any socket exists.
        let fresh = try await ControlConnection.connect(path: daemon.controlSocket)
        await #expect(throws: ControlError.self) { try await fresh.exchange(.receive(maximum: 10)) }
        // A byte stream needs a connected TCP socket: a fresh one, a UDP one
        // and no socket at all are refused, and the channel goes on.
        let client = NetstackClient(path: daemon.controlSocket)
        for kind in [SocketKind.stream, .datagram] {
            let socket = try await client.openSocket(.ipv4, kind)
            await #expect {
                _ = try await socket.stream()
            } throws: { ($0 as? ControlError)?.code == .wrongState }
            #expect(try await socket.endpoints().remote == nil, "still a channel after the refusal")
            try await socket.close()
        }
        await #expect { try await fresh.exchange(.stream) } throws: { ($0 as? ControlError)?.code == .wrongState }
        // The next client is served.
        let status = try await NetstackClient(path: daemon.controlSocket).status()
        #expect(status.interface == "tap0")
        // Every cap of [limits] with what it holds: the defaults, and this client.
        let caps = Dictionary((status.resources ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(caps["socket buffer memory"]?.limit == 256 << 20 && caps["neighbour entries, ARP"]?.limit == 1024
                && caps["TCP connections, IPv6"]?.limit == 65_536, "\(caps)")
        #expect((caps["control clients"]?.inUse ?? 0) >= 1 && caps["control clients"]?.limit == 16_384)
        #expect(status.offloads?.hasPrefix("virtio header; receive csum,tso4,tso6") == true, "\(status.offloads ?? "")")
        #expect(daemon.isRunning)
    }

    @Test func aProcessOverItsLimitGetsEMFILEAndOthersAreServed() async throws {
        let file = NSTemporaryDirectory() + "netstackd-limits-\(getpid()).toml"
        // The shipped configuration with a per-process limit of 3.
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../config/netstackd.toml").path
        let text = try String(contentsOfFile: shipped, encoding: .utf8)
            .replacingOccurrences(of: "max-clients-per-process = 8192", with: "max-clients-per-process = 3")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let (namespace, daemon) = try DaemonProcess.start("ctllimit", arguments: ["--config", file])
        defer { namespace.remove() }
        defer { daemon.stop() }
        var held: [ControlConnection] = []
        for _ in 0..<3 { held.append(try await ControlConnection.connect(path: daemon.controlSocket)) }
        await #expect {
            _ = try await ControlConnection.connect(path: daemon.controlSocket)
        } throws: { error in
            guard let error = error as? ControlError else { return false }
            return error.code == .limitReached && error.errno == EMFILE && error.message.contains("max-clients-per-process")
        }
        // Another process is served; so is this one once a connection goes.
        #expect(try daemon.control("status").contains("tap0"))
        _ = held.removeLast()  // its descriptor closes with it
        // The daemon counts it gone once it has seen the close: a moment,
        // longer on a loaded machine.
        var again: ControlConnection?
        for _ in 0..<50 where again == nil {
            try await Task.sleep(for: .milliseconds(100))
            again = try? await ControlConnection.connect(path: daemon.controlSocket)
        }
        let connection = try #require(again, "a place freed by a closed connection")
        guard case .queryResult = try await connection.exchange(.query(.status)) else { Issue.record("no status"); return }
        #expect(daemon.isRunning)
    }

    @Test func aUserOtherThanRootIsRefused() throws {
        let (namespace, daemon) = try DaemonProcess.start("ctluser")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let user = "nstest\(getpid() % 100_000)"
        try TestShell.run("useradd --no-create-home --shell /bin/sh \(user)")
        defer { _ = try? TestShell.run("userdel \(user)") }
        let command = "su -s /bin/sh \(user) -c '\(DaemonProcess.controlTool) status --socket \(daemon.controlSocket)' 2>&1"
        // The socket file is 0600: the file system refuses first.
        let denied = try TestShell.run("\(command); echo status=$?")
        #expect(denied.contains("Permission denied") && !denied.contains("status=0"), "\(denied)")
        // Opened up by hand, the daemon itself refuses by the peer's uid.
        try TestShell.run("chmod 0666 \(daemon.controlSocket)")
        let refused = try TestShell.run("\(command); echo status=$?")
        #expect(refused.contains("is not allowed to use netstackd") && !refused.contains("status=0"), "\(refused)")
        #expect(try daemon.control("status").contains("tap0"), "root still is served")
    }
}
