import CTap
import Foundation
import NetstackControl
import Testing
import Glibc

/// A network namespace made by a test (`ip netns add`), with a helper to run
/// commands inside it. Removed by `remove()` or when the value goes away, so
/// a failing test cleans up too.
public final class TestNamespace: @unchecked Sendable {
    // @unchecked: `removed` is only touched by `remove()`, which tests call from
    // the one task that owns the namespace (and deinit, after every use).
    public let name: String
    private var removed = false
    private static let counter = Counter()

    /// Creates `ns-PREFIX-PID-N`, with loopback up.
    public init(_ prefix: String) throws {
        name = "ns-\(prefix)-\(getpid())-\(Self.counter.next())"
        try TestShell.run("ip netns add \(name)")
        try run("ip link set lo up")
    }

    deinit { remove() }

    /// Runs a shell command inside the namespace; throws if it fails.
    @discardableResult
    public func run(_ command: String) throws -> String {
        try TestShell.run("ip netns exec \(name) sh -c '\(command)'")
    }

    /// Runs a shell command inside the namespace; returns status and output.
    public func execute(_ command: String) -> (status: Int32, output: String) {
        TestShell.execute("ip netns exec \(name) sh -c '\(command)'")
    }

    /// Creates a persistent `tap0` whose kernel side is the fixtures' host:
    /// 02:00:00:00:00:64, 192.168.69.100/24, fdaa::100/64.
    public func addHostTap(_ interface: String = "tap0") throws {
        try run("""
            ip tuntap add dev \(interface) mode tap && \
            ip link set \(interface) address 02:00:00:00:00:64 && \
            ip link set \(interface) up && \
            ip addr add 192.168.69.100/24 dev \(interface) && \
            ip -6 addr add fdaa::100/64 dev \(interface) nodad
            """)
    }

    /// Deletes the namespace (and every interface in it). Safe to call twice.
    public func remove() {
        guard !removed else { return }
        removed = true
        _ = TestShell.execute("ip netns del \(name)")
    }

    private final class Counter: @unchecked Sendable {
        // @unchecked: every access holds `lock`.
        private let lock = NSLock()
        private var value = 0
        func next() -> Int {
            lock.lock()
            defer { lock.unlock() }
            value += 1
            return value
        }
    }
}

/// A raw packet socket on an interface of a namespace: frames sent through it
/// enter the TAP as if the host's kernel had sent them.
public final class PacketInjector: Sendable {
    public let descriptor: Int32

    public init(namespace: TestNamespace, interface: String = "tap0") throws {
        descriptor = try inNetworkNamespace(namespace.name) {
            let fd = ctap_packet_socket(interface)
            guard fd >= 0 else { throw NamespaceError(code: -fd) }
            return fd
        }
    }

    deinit { close(descriptor) }

    public func send(_ frame: [UInt8]) {
        _ = frame.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, 0) }
    }
}

/// `netstackd` started by a test inside a namespace, with its output in files.
public final class DaemonProcess: @unchecked Sendable {
    // @unchecked: the Process is used from the owning test only.
    public let namespace: TestNamespace
    private let process = Process()
    public let standardOutputPath: String
    public let standardErrorPath: String

    /// The binary in `NETSTACK_BIN_DIR` (`scripts/test.sh` sets it to the
    /// release build), else the one next to the test bundle.
    public static var binary: String {
        if let directory = ProcessInfo.processInfo.environment["NETSTACK_BIN_DIR"], !directory.isEmpty {
            return URL(fileURLWithPath: directory).appendingPathComponent("netstackd").path
        }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("netstackd").path
    }

    /// A new namespace named after `prefix` with the host's TAP, and
    /// `netstackd ARGUMENTS` running in it (ready).
    public static func start(_ prefix: String, arguments: [String] = []) throws -> (TestNamespace, DaemonProcess) {
        let namespace = try TestNamespace(prefix)
        try namespace.addHostTap()
        return (namespace, try DaemonProcess(in: namespace, arguments: arguments))
    }

    /// Starts `netstackd ARGUMENTS` in `namespace` and waits for its ready line.
    public init(in namespace: TestNamespace, arguments: [String] = [], waitForReady: Bool = true) throws {
        self.namespace = namespace
        let base = "/tmp/\(namespace.name)-netstackd-\(UUID().uuidString.prefix(8))"
        standardOutputPath = base + ".out"
        standardErrorPath = base + ".err"
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestShell.Failure(command: Self.binary, status: -1,
                                    output: "netstackd is not built; run scripts/test.sh, which builds it first")
        }
        _ = FileManager.default.createFile(atPath: standardOutputPath, contents: nil)
        _ = FileManager.default.createFile(atPath: standardErrorPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        // Each daemon gets a control socket of its own, so that tests run side by side.
        controlSocket = arguments.firstIndex(of: "--control-socket").map { arguments[$0 + 1] } ?? base + ".sock"
        let control = arguments.contains("--control-socket") ? [] : ["--control-socket", controlSocket]
        process.arguments = ["netns", "exec", namespace.name, Self.binary] + arguments + control
        process.standardOutput = FileHandle(forWritingAtPath: standardOutputPath)
        process.standardError = FileHandle(forWritingAtPath: standardErrorPath)
        try process.run()
        if waitForReady { try self.waitForReady() }
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        unlink(standardOutputPath)
        unlink(standardErrorPath)
    }

    public var pid: Int32 { process.processIdentifier }
    /// The daemon's control socket.
    public let controlSocket: String

    /// `netstackctl`, built next to the daemon.
    public static var controlTool: String {
        URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("netstackctl").path
    }

    /// `netstack-run`, built next to the daemon (with libnetstack-preload.so).
    public static var runner: String {
        URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("netstack-run").path
    }

    /// A shell command line that runs `command` on this daemon's stack.
    public func preloaded(_ command: String) -> String {
        "\(Self.runner) --socket \(controlSocket) -- \(command)"
    }

    /// Runs `netstackctl ARGUMENTS --socket <this daemon's>` (a shell command line).
    public func control(_ arguments: String) throws -> String {
        try TestShell.run("\(Self.controlTool) \(arguments) --socket \(controlSocket)")
    }
    public var isRunning: Bool { process.isRunning }

    public var standardOutput: String { (try? String(contentsOfFile: standardOutputPath, encoding: .utf8)) ?? "" }
    public var standardError: String { (try? String(contentsOfFile: standardErrorPath, encoding: .utf8)) ?? "" }

    /// Waits (up to 30 s) for the "ready" line; throws with the daemon's
    /// output if it exits or stays silent.
    public func waitForReady() throws {
        for _ in 0..<600 {
            if standardOutput.contains("netstackd: ready") { return }
            if !process.isRunning { break }
            usleep(50_000)
        }
        throw TestShell.Failure(command: "netstackd", status: process.isRunning ? -1 : process.terminationStatus,
                                output: "no ready line; stdout: \(standardOutput) stderr: \(standardError)")
    }

    /// Waits for the daemon to exit by itself (up to 30 s); its status.
    public func waitForExit() -> Int32 {
        for _ in 0..<600 where process.isRunning { usleep(50_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Stops the daemon with `signal` (SIGINT unless given; SIGKILL after
    /// 10 s) and returns its exit status.
    @discardableResult
    public func stop(signal: Int32 = SIGINT) -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(pid, signal)
        for _ in 0..<200 where process.isRunning { usleep(50_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Resident memory in bytes, from /proc.
    public var residentMemory: Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kilobytes = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kilobytes * 1024
        }
        return 0
    }

    /// The metric lines printed after "metrics:" on exit (after `stop()`),
    /// keyed by name and labels as Prometheus writes them:
    /// `netstack_service_connections_calls_total{service="echo",transport="tcp"}`.
    public var finalMetrics: [String: Double] {
        guard let start = standardError.range(of: "netstackd: metrics:\n") else { return [:] }
        var metrics: [String: Double] = [:]
        for line in standardError[start.upperBound...].split(separator: "\n") {
            guard line.hasPrefix("  "), let space = line.lastIndex(of: " "),
                  let value = Double(line[line.index(after: space)...]) else { break }
            metrics[line[..<space].trimmingCharacters(in: .whitespaces)] = value
        }
        return metrics
    }

    /// The counters of the "stopped; counters: ..." line (after `stop()`).
    public var finalCounters: [String: UInt64] {
        guard let line = standardError.split(separator: "\n").last(where: { $0.contains("stopped; counters:") })
        else { return [:] }
        var counters: [String: UInt64] = [:]
        for pair in line.split(separator: " ") where pair.contains("=") {
            let parts = pair.split(separator: "=")
            if parts.count == 2, let value = UInt64(parts[1]) { counters[String(parts[0])] = value }
        }
        return counters
    }
}

/// A shell command started by a test in the background inside a namespace
/// (a flood, a long transfer), with its output in a file. `stop()` (or the
/// value going away) ends it by its process id; the command should also
/// bound itself (`timeout 10 ...`) so that nothing outlives a crashed test.
public final class BackgroundCommand: @unchecked Sendable {
    // @unchecked: the process id and status are used from the owning test only.
    // posix_spawn and waitpid rather than Foundation's Process, whose waits
    // hang when called from an async test.
    private var pid: pid_t = 0
    private var status: Int32?
    private let outputPath: String

    /// Starts `sh -c COMMAND` in `namespace`. The shell `exec`s the last
    /// command, so the process id is the command's own; it leads a process
    /// group, which `stop()` ends whole (forked workers too). The command
    /// inherits the test's open descriptors: open the ones it must not keep
    /// with O_CLOEXEC (a FIFO's writer, say, or its reader never sees the end).
    public init(in namespace: TestNamespace, _ command: String) throws {
        outputPath = "/tmp/\(namespace.name)-background-\(UUID().uuidString.prefix(8)).out"
        let output = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw TestShell.Failure(command: command, status: errno, output: "open \(outputPath)") }
        defer { close(output) }
        let spawned = TestShell.spawnShell(command, output: output, ownGroup: true, program: "/usr/sbin/ip",
                                           arguments: ["/usr/sbin/ip", "netns", "exec", namespace.name, "sh", "-c",
                                                       "exec \(command)"])
        switch spawned {
        case .success(let child): pid = child
        case .failure(let error):
            throw TestShell.Failure(command: command, status: error.code, output: "posix_spawn failed")
        }
    }

    deinit {
        stop()
        unlink(outputPath)
    }

    public var isRunning: Bool { reap(block: false) == nil }
    public var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// The exit status once the process has ended (waiting for it if `block`).
    private func reap(block: Bool) -> Int32? {
        if let status { return status }
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, block ? 0 : WNOHANG)
        guard result == pid else { return result < 0 ? -1 : nil }
        status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        return status
    }

    /// Waits for the command to end by itself; its exit status.
    public func wait() -> Int32 { reap(block: true) ?? -1 }

    /// Ends the command and what it forked (SIGTERM, then SIGKILL after
    /// 5 s) and waits for it.
    @discardableResult
    public func stop() -> Int32 {
        if isRunning {
            kill(-pid, SIGTERM)
            for _ in 0..<100 where isRunning { usleep(50_000) }
            if isRunning { kill(-pid, SIGKILL) }
        }
        let status = wait()
        // Children the command left behind in its group (nginx's workers).
        kill(-pid, SIGKILL)
        return status
    }
}

extension DaemonProcess {
    /// Waits (up to 5 s) until the daemon lists a TCP listener on `port`.
    public func waitForListener(port: Int) throws {
        try waitForSocket { $0.state == "listen" && $0.local.hasSuffix(":\(port)") }
    }

    /// Waits (up to 5 s) until `netstackctl sockets` lists a socket that matches.
    public func waitForSocket(_ matches: (SocketReport) -> Bool) throws {
        for _ in 0..<100 {
            let json = try control("sockets --json")
            if try JSONDecoder().decode([SocketReport].self, from: Data(json.utf8)).contains(where: matches) { return }
            usleep(50_000)
        }
        Issue.record("the socket did not appear")
    }
}
