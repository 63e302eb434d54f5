import Foundation
import NetstackTestSupport
import Testing

/// What an operator reaches for when something breaks: rotated captures,
/// a live capture into tcpdump, faults injected on the link.
@Suite(.serialized, .enabled(if: runningAsRoot, "integration tests need root for namespaces and TAP devices"))
struct CaptureTests {
    /// Frames in a capture file, as tcpdump reads them.
    static func frames(_ path: String) throws -> [Substring] {
        try TestShell.run("tcpdump -nr \(path) 2>/dev/null").split(separator: "\n")
    }

    /// `--pcap-rotate 64K --pcap-files 3`: about 2 MiB of traffic leaves
    /// exactly three files, each a whole capture of its own, the newest
    /// frames (the FIN exchange) in the file named by `--pcap`; SIGTERM
    /// leaves the last one complete.
    @Test func rotationKeepsTheConfiguredNumberOfReadableFiles() throws {
        let namespace = try TestNamespace("pcaprotate")
        defer { namespace.remove() }
        try namespace.addHostTap()
        let capture = "/tmp/\(namespace.name).pcap"
        let names = [capture] + (1...4).map { "\(capture).\($0)" }
        defer { for name in names { unlink(name) } }
        let daemon = try DaemonProcess(in: namespace, arguments: ["--pcap", capture, "--pcap-rotate", "64K",
                                                                  "--pcap-files", "3", "--no-offloads"])
        defer { daemon.stop() }
        try namespace.run("head -c 2M /dev/zero | nc -N -w 10 192.168.69.1 9")
        #expect(namespace.execute("ping -c 2 -i 0.05 -W 2 192.168.69.1").status == 0)
        #expect(daemon.stop(signal: SIGTERM) == 0)
        let present = names.filter { FileManager.default.fileExists(atPath: $0) }
        #expect(present == Array(names.prefix(3)), "\(present)")
        for name in present {
            let size = (try? FileManager.default.attributesOfItem(atPath: name)[.size] as? Int) ?? 0
            #expect(size <= 64 * 1024, "\(name): \(size) bytes")
            #expect(try Self.frames(name).count > 10, "\(name) is readable on its own")
        }
        let newest = try Self.frames(capture)
        #expect(newest.filter { $0.contains("ICMP echo reply") }.count == 2, "the last frames are in \(capture)")
    }

    /// `netstackctl capture icmp` piped into `tcpdump -r -` shows a live
    /// ping; when tcpdump has had enough, the capture ends, and the daemon
    /// goes on serving.
    @Test func liveCaptureIntoTcpdump() throws {
        let (namespace, daemon) = try DaemonProcess.start("pcaplive")
        defer { namespace.remove() }
        defer { daemon.stop() }
        let ping = try BackgroundCommand(in: namespace, "ping -c 40 -i 0.1 -W 1 192.168.69.1")
        defer { ping.stop() }
        let output = try namespace.run("timeout -k 1 20 \(DaemonProcess.controlTool) capture --socket "
                                       + "\(daemon.controlSocket) icmp | timeout 20 tcpdump -r - -nn -l -c 4 2>/dev/null")
        let lines = output.split(separator: "\n")
        #expect(lines.count == 4, "\(output)")
        #expect(lines.filter { $0.contains("192.168.69.100 > 192.168.69.1: ICMP echo request") }.count == 2, "\(output)")
        #expect(lines.filter { $0.contains("192.168.69.1 > 192.168.69.100: ICMP echo reply") }.count == 2, "\(output)")
        // The reader went away: the daemon notices, counts no reader, and serves.
        var readers = "?"
        for _ in 0..<50 {
            readers = try daemon.control("stats --json")
            if !readers.contains("capture.liveReaders") { break }
            usleep(100_000)
        }
        #expect(!readers.contains("capture.liveReaders"), "the live reader is gone: \(readers)")
        #expect(try namespace.run("echo still | nc -N -w 5 192.168.69.1 7") == "still\n")
        // A bad filter is the daemon's typed answer, not a broken stream.
        let bad = namespace.execute("timeout -k 1 10 \(DaemonProcess.controlTool) capture --socket \(daemon.controlSocket) tcp port banana")
        #expect(bad.status != 0)
        #expect(bad.output.contains("banana"), "\(bad.output)")
        #expect(daemon.isRunning)
    }

    /// `--fault drop=10%,reorder=10%,duplicate=2%`: 20 MiB through echo
    /// arrive intact, and the counters show what was injected and repaired.
    @Test func aTransferThroughInjectedFaultsArrivesIntact() throws {
        let (namespace, daemon) = try DaemonProcess.start(
            "fault", arguments: ["--fault", "drop=10%,reorder=10%,duplicate=2%,seed=7"])
        defer { namespace.remove() }
        defer { daemon.stop() }
        let script = """
            import hashlib, socket, threading
            data = open('/dev/urandom', 'rb').read(20 << 20)
            s = socket.create_connection(('192.168.69.1', 7), timeout=120)
            got = bytearray()
            def receive():
                while True:
                    piece = s.recv(1 << 16)
                    if not piece: break
                    got.extend(piece)
            reader = threading.Thread(target=receive)
            reader.start()
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            reader.join()
            print(len(got), hashlib.sha256(got).digest() == hashlib.sha256(data).digest())
            """
        let path = "/tmp/\(namespace.name).py"
        defer { unlink(path) }
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let answer = try namespace.run("timeout -k 1 240 python3 \(path)")
        #expect(answer == "\(20 << 20) True\n")
        #expect(daemon.stop() == 0)
        let counters = daemon.finalCounters
        for name in ["fault.in.dropped", "fault.out.dropped", "fault.in.reordered", "fault.out.duplicated",
                     "tcp.retransmissions"] {
            #expect((counters[name] ?? 0) > 0, "\(name): \(counters)")
        }
    }
}
