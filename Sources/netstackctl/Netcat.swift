import ArgumentParser
import Foundation
import Glibc
import NetstackClient
import NetstackControl

/// A netcat whose socket lives inside the stack: stdin goes out, what
/// arrives goes to stdout.
struct Netcat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nc", abstract: "Connect or listen from inside the stack, piping stdin and stdout.")
    @OptionGroup var connection: Connection

    @Flag(name: .short, help: "Listen on PORT for one connection (or, with -u, datagrams).")
    var listen = false
    @Flag(name: .short, help: "UDP instead of TCP.")
    var udp = false
    @Flag(name: .customShort("6"), help: "IPv6 (implied by an IPv6 HOST).")
    var ipv6 = false
    @Option(name: .short, help: "UDP: quit this many seconds after stdin ends and nothing more arrives.")
    var wait: Int = 2
    @Argument(help: "HOST PORT to connect to, or PORT with -l.")
    var target: [String]

    func validate() throws {
        guard target.count == (listen ? 1 : 2), UInt16(target.last!) != nil else {
            throw ValidationError(listen ? "give PORT with -l" : "give HOST and PORT")
        }
        if !listen, ControlEndpoint(host: target[0], port: 0) == nil {
            throw ValidationError("\(target[0]) is not a numeric IPv4 or IPv6 address")
        }
    }

    func run() async throws {
        let port = UInt16(target.last!)!
        let client = connection.client
        if udp {
            try await runDatagrams(client, port: port)
            return
        }
        let socket: RemoteSocket
        if listen {
            let listener = try await client.openSocket(ipv6 ? .ipv6 : .ipv4, .stream)
            try await listener.bind(.any(ipv6 ? .ipv6 : .ipv4, port: port))
            try await listener.listen(backlog: 1)
            socket = try await listener.accept().socket
            try await listener.close()
        } else {
            let remote = ControlEndpoint(host: target[0], port: port)!
            socket = try await client.openSocket(remote.family, .stream)
            try await socket.connect(remote)
        }
        // From here on the control connection carries the connection's bytes.
        let stream = try await socket.stream()
        await withCheckedContinuation { continuation in
            standardInputQueue.async {
                relay(stream)
                continuation.resume()
            }
        }
    }

    private func runDatagrams(_ client: NetstackClient, port: UInt16) async throws {
        let family: IPFamily = listen ? (ipv6 ? .ipv6 : .ipv4) : ControlEndpoint(host: target[0], port: port)!.family
        let socket = try await client.openSocket(family, .datagram)
        let reader = try await socket.clone()
        if listen {
            try await socket.bind(.any(family, port: port))
        } else {
            try await socket.connect(ControlEndpoint(host: target[0], port: port)!)
        }
        // Datagrams to stdout until `wait` seconds pass without one after stdin ended.
        let peer = PeerBox()
        let receiving = Task {
            while let (bytes, from) = try? await reader.receive() {
                peer.set(from)
                writeStandardOutput(bytes)
                peer.touch()
            }
        }
        while let chunk = await nextStandardInput(limit: 1472) {
            // Listening: answer whoever sent last (nothing before that).
            if listen {
                guard let destination = peer.get() else { continue }
                try await socket.send(chunk, to: destination)
            } else {
                try await socket.send(chunk)
            }
        }
        peer.touch()
        while !peer.quietFor(seconds: wait) { try await Task.sleep(for: .milliseconds(100)) }
        try await socket.close()
        // The reader's channel still waits in a receive, so it cannot be
        // closed in turn; leaving closes its connection, and the daemon
        // closes a channel whose client hung up.
        receiving.cancel()
    }
}

/// The UDP peer last heard from, and when anything last happened.
final class PeerBox: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var peer: ControlEndpoint?
    private var last = ContinuousClock.now
    func set(_ endpoint: ControlEndpoint?) { lock.withLock { if let endpoint { peer = endpoint } } }
    func get() -> ControlEndpoint? { lock.withLock { peer } }
    func touch() { lock.withLock { last = .now } }
    func quietFor(seconds: Int) -> Bool { lock.withLock { ContinuousClock.now - last >= .seconds(seconds) } }
}

private let standardInputQueue = DispatchQueue(label: "netstackctl-stdin")

/// Standard input to `stream` and `stream` to standard output until both
/// have ended (or a write fails): end of input shuts the stream's write side
/// (FIN). One thread, waiting in `poll`.
func relay(_ stream: Int32) {
    var buffer = [UInt8](repeating: 0, count: 256 * 1024)
    var inputOpen = true
    var streamOpen = true
    while inputOpen || streamOpen {
        var fds = [pollfd(fd: stream, events: streamOpen ? Int16(POLLIN) : 0, revents: 0),
                   pollfd(fd: 0, events: inputOpen ? Int16(POLLIN) : 0, revents: 0)]
        guard poll(&fds, 2, -1) >= 0 || errno == EINTR else { break }
        if inputOpen && fds[1].revents != 0 {
            let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n > 0 {
                if !writeAll(stream, buffer, n) { break }
            } else if n == 0 || errno != EINTR {
                inputOpen = false
                shutdown(stream, Int32(SHUT_WR))
            }
        }
        if streamOpen && fds[0].revents != 0 {
            let n = buffer.withUnsafeMutableBytes { read(stream, $0.baseAddress, $0.count) }
            if n > 0 {
                if !writeAll(1, buffer, n) { break }
            } else if n == 0 || errno != EINTR {
                streamOpen = false
            }
        }
    }
    close(stream)
}

/// Writes `count` bytes of `buffer` to `fd`; false if it fails.
private func writeAll(_ fd: Int32, _ buffer: [UInt8], _ count: Int) -> Bool {
    var offset = 0
    while offset < count {
        let n = buffer.withUnsafeBytes { send(fd, $0.baseAddress! + offset, count - offset, Int32(MSG_NOSIGNAL)) }
        if n < 0 && errno == ENOTSOCK {
            // Standard output may be a pipe or a file.
            let m = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + offset, count - offset) }
            if m <= 0 { return false }
            offset += m
            continue
        }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        offset += n
    }
    return true
}

/// The next chunk of standard input, read on a dispatch queue (the read
/// blocks, and Swift's cooperative threads must not).
func nextStandardInput(limit: Int = 256 * 1024) async -> [UInt8]? {
    await withCheckedContinuation { continuation in
        standardInputQueue.async { continuation.resume(returning: readStandardInput(limit: limit)) }
    }
}

/// The next chunk of standard input; nil at its end.
func readStandardInput(limit: Int = 256 * 1024) -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: limit)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return nil }
        return Array(buffer[..<n])
    }
}

func writeStandardOutput(_ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}
