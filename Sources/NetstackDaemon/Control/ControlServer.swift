import Foundation
import Glibc
import Logging
import NetstackControl
import NetstackCore
import NetstackIO
import NetstackService
import Prometheus
import ServiceLifecycle
import Synchronization

/// The control socket: local programs open sockets inside the stack and
/// query it (docs/control-protocol.md). A thread accepts; each connection
/// is then a task on the engine's executor (`ControlSession`).
struct ControlServer: ServiceLifecycle.Service {
    let path: String
    let group: gid_t?
    let listener: Int32
    let context: ControlContext
    let logger: Logger
    private let limitLog = LogThrottle()

    /// Creates the socket file (0600, or 0660 with `group`); fails when
    /// another daemon answers on `path`.
    init(path: String, group: gid_t?, context: ControlContext, logger: Logger) throws(Daemon.StartupError) {
        self.path = path
        self.group = group
        self.context = context
        self.logger = logger
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let limit = MemoryLayout.size(ofValue: address.sun_path) - 1
        guard path.utf8.count <= limit else {
            throw Daemon.StartupError(description: "control.socket: \(path) is longer than \(limit) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.enumerated() { bytes[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        func fail(_ what: String) -> Daemon.StartupError {
            let reason = String(cString: strerror(errno))
            close(fd)
            return Daemon.StartupError(description: "control.socket: \(what) \(path): \(reason)")
        }
        // A socket file left by a daemon that died is replaced; a live one is not.
        if access(path, F_OK) == 0 {
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            let live = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, length) == 0 }
            }
            close(probe)
            if live {
                close(fd)
                throw Daemon.StartupError(description: "control.socket: \(path) is in use by another daemon")
            }
            unlink(path)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 }
        }
        guard bound else { throw fail("cannot bind") }
        guard chmod(path, group == nil ? 0o600 : 0o660) == 0 else { throw fail("cannot set the mode of") }
        if let group, chown(path, uid_t.max, group) != 0 { throw fail("cannot give the group of") }
        guard listen(fd, 64) == 0 else { throw fail("cannot listen on") }
        listener = fd
    }

    func run() async throws {
        logger.info("control socket on \(path)")
        let accepting = Thread { [self] in acceptLoop() }
        accepting.name = "netstackd-accept"
        accepting.start()
        await withGracefulShutdownHandler {
            await context.stopped.wait()
        } onGracefulShutdown: {
            // Wakes the accept loop, and every connection blocked in a read.
            shutdown(listener, Int32(SHUT_RDWR))
            context.clients.shutdownAll()
            context.stopped.signal()
        }
        unlink(path)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                break
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let admission = admit(client)
            if case .failure(let refusal) = admission {
                if refusal.code == .limitReached {
                    limitLog.log { suppressed in
                        let more = suppressed > 0 ? " (\(suppressed) more refused since the last line)" : ""
                        logger.warning("control: refused a connection: \(refusal.message)\(more)")
                    }
                } else {
                    logger.notice("control: refused \(refusal.message)")
                }
                _ = ControlSession.write(ControlCodec.encode(.failure(refusal)), to: client)
                close(client)
                continue
            }
            ControlSession.start(client: client, context: context)
        }
        close(listener)
    }

    /// Admits the peer, or says why not: root, the daemon's own user, and
    /// members (by primary group) of `group` may connect, within the limits
    /// of `ControlClients`.
    private func admit(_ client: Int32) -> Result<Void, ControlError> {
        var credentials = PeerCredentials()
        var size = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(client, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0 else {
            return .failure(ControlError(.notPermitted, "a peer whose credentials cannot be read"))
        }
        let allowed = credentials.uid == 0 || credentials.uid == geteuid() || (group != nil && credentials.gid == group)
        guard allowed else {
            return .failure(ControlError(.notPermitted,
                                         "uid \(credentials.uid) (gid \(credentials.gid)) is not allowed to use netstackd"))
        }
        if let over = context.clients.admit(client, pid: credentials.pid) { return .failure(over) }
        return .success(())
    }
}

/// What every control connection shares: the stack, the sockets' runtime,
/// tokens for clones and accepted connections, the query service.
final class ControlContext: Sendable {
    let runtime: SocketRuntime
    let tokens = SocketTokens()
    let streams = StreamKeys()
    let queries: AnySendableService<QueryKind, [UInt8]>
    let stopped = Latch()
    let clients: ControlClients
    /// Live captures (`netstackctl capture`) are handed to it.
    let capture: FrameCapture

    init(runtime: SocketRuntime, clients: ControlClients, queries: AnySendableService<QueryKind, [UInt8]>,
         capture: FrameCapture) {
        self.runtime = runtime
        self.clients = clients
        self.capture = capture
        self.queries = queries
    }
}

/// The connected control clients' descriptors, and the limits on them: at
/// most `maximum` in all and `perProcess` from one process (by the pid in
/// SO_PEERCRED), so that one program opening sockets in a loop cannot use up
/// the daemon's descriptors for everyone else.
final class ControlClients: Sendable {
    let maximum: Int
    let perProcess: Int
    private let state = Mutex<(descriptors: [Int32: pid_t], processes: [pid_t: Int])>(([:], [:]))

    init(maximum: Int = 16_384, perProcess: Int = 8_192) {
        self.maximum = maximum
        self.perProcess = perProcess
    }

    var count: Int { state.withLock { $0.descriptors.count } }

    /// Admits `client` of process `pid`, or says which limit it is over
    /// (an error with EMFILE for the process's limit, ENFILE for the total).
    func admit(_ client: Int32, pid: pid_t) -> ControlError? {
        state.withLock { state in
            if state.descriptors.count >= maximum {
                return ControlError(.limitReached, errno: ENFILE,
                                    "the daemon serves \(maximum) control connections already (control.max-clients)")
            }
            let held = state.processes[pid, default: 0]
            if held >= perProcess {
                return ControlError(.limitReached, errno: EMFILE,
                                    "process \(pid) holds \(perProcess) control connections already (control.max-clients-per-process)")
            }
            state.descriptors[client] = pid
            state.processes[pid] = held + 1
            return nil
        }
    }

    func remove(_ client: Int32) {
        state.withLock { state in
            guard let pid = state.descriptors.removeValue(forKey: client) else { return }
            let held = state.processes[pid, default: 1] - 1
            state.processes[pid] = held == 0 ? nil : held
        }
    }

    func shutdownAll() {
        for client in state.withLock({ $0.descriptors.keys }) { shutdown(client, Int32(SHUT_RDWR)) }
    }
}

/// Sockets waiting to be joined by another connection: clones and accepted
/// connections. At most 1,024 wait, each for at most 60 s; an expired one is
/// dropped (which closes its stream).
final class SocketTokens: Sendable {
    static let capacity = 1_024
    static let lifetime: Duration = .seconds(60)
    private let waiting = Mutex<[UInt64: (channel: ControlChannel, since: ContinuousClock.Instant)]>([:])

    func insert(_ channel: ControlChannel) throws(ControlError) -> UInt64 {
        let now = ContinuousClock.now
        let dropped: [ControlChannel]? = waiting.withLock { waiting in
            let expired = waiting.filter { now - $0.value.since > Self.lifetime }
            for key in expired.keys { waiting.removeValue(forKey: key) }
            return waiting.count >= Self.capacity ? nil : expired.values.map(\.channel)
        }
        guard let dropped else { throw ControlError(.wrongState, "too many sockets waiting to be joined") }
        if !dropped.isEmpty { Task { for channel in dropped { await channel.close() } } }
        var token: UInt64 = 0
        while token == 0 { token = UInt64.random(in: 1...UInt64.max) }
        waiting.withLock { $0[token] = (channel, now) }
        return token
    }

    func take(_ token: UInt64) -> ControlChannel? {
        waiting.withLock { $0.removeValue(forKey: token)?.channel }
    }
}

/// The sockets whose bytes a stream carries, by the key their `stream` or
/// `acceptStream` answer gave, so that `streamOption` can still reach them
/// (the stream itself takes no messages). An entry lasts as long as its
/// stream, so there are never more than the streams open.
final class StreamKeys: Sendable {
    private let streams = Mutex<[UInt64: ControlChannel]>([:])

    func insert(_ channel: ControlChannel) -> UInt64 {
        streams.withLock { streams in
            var key: UInt64 = 0
            while key == 0 || streams[key] != nil { key = UInt64.random(in: 1...UInt64.max) }
            streams[key] = channel
            return key
        }
    }

    func channel(_ key: UInt64) -> ControlChannel? {
        streams.withLock { $0[key] }
    }

    func remove(_ key: UInt64) {
        _ = streams.withLock { $0.removeValue(forKey: key) }
    }
}

/// A one-shot signal that async code can wait for.
final class Latch: Sendable {
    private let state = Mutex<(signalled: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func signal() {
        let waiters = state.withLock { state in
            state.signalled = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state in
                if state.signalled { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// Linux's `struct ucred` (SO_PEERCRED), which Glibc's module leaves out
/// without _GNU_SOURCE: same fields, same layout.
private struct PeerCredentials {
    var pid: pid_t = 0
    var uid: uid_t = 0
    var gid: gid_t = 0
}
