import Logging
import NetstackControl
import NetstackCore
import NetstackIO
import NetstackService
import NetstackSockets
import Prometheus
import ServiceLifecycle
import Synchronization

/// The configured built-in services, each a socket inside the stack served by
/// its own worker, and each request (a TCP connection or a UDP datagram)
/// passed through the service's middleware stack. Runs until graceful
/// shutdown, which closes the sockets.
struct BuiltinServices: ServiceLifecycle.Service {
    let settings: [ServiceSetting]
    let sockets: SocketRuntime
    let logger: Logger
    /// What the metrics endpoint serves besides the stack's counters.
    var metrics: PrometheusCollectorRegistry? = nil
    /// The control queries' JSON answers, for the status page.
    var queries: @Sendable (QueryKind) async -> [UInt8]? = { _ in nil }

    /// Connections accepted beyond `max-connections` that may wait for a
    /// slot; more are reset (this bounds the tasks a connection flood makes).
    static let waitingConnections = 128

    func run() async throws {
        let open = OpenSockets()
        await withGracefulShutdownHandler {
            // On the engine's thread: each socket operation of a service is
            // then a function call, and a request that came with a frame is
            // answered before the engine next waits.
            await withTaskExecutorPreference(sockets.executor) {
                await serveAll(open)
            }
        } onGracefulShutdown: {
            open.closeAll()
        }
    }

    /// Every configured service, each on both IP versions.
    private func serveAll(_ open: OpenSockets) async {
        await withDiscardingTaskGroup { group in
            for setting in settings where setting.kind == .iperf3 {
                let server = IperfServer(port: setting.port, transports: setting.transports, sockets: sockets,
                                         logger: logger)
                group.addTask { await server.run(open) }
            }
            for setting in settings where setting.kind != .iperf3 && !setting.kind.isWeb && setting.transports.contains(.udp) {
                let stack = ServiceStacks.datagrams(setting, logger: logger)
                group.addTask { await serveUDP(setting, stack, IPv4.self, open) }
                group.addTask { await serveUDP(setting, stack, IPv6.self, open) }
            }
            for setting in settings where setting.kind != .iperf3 && setting.transports.contains(.tcp) {
                // One stack for both IP versions: the limits count both.
                let stack = setting.kind.isWeb
                    ? ServiceStacks.connections(setting, logger: logger,
                                                server: StatusServer(sockets: sockets, registry: metrics, queries: queries))
                    : ServiceStacks.connections(setting, logger: logger, server: SmallStreamServer(kind: setting.kind))
                let admission = LoadShed(inner: ConcurrencyLimit(
                    inner: stack, limit: setting.maxConnections + Self.waitingConnections))
                group.addTask { await serveTCP(setting, admission, IPv4.self, open) }
                group.addTask { await serveTCP(setting, admission, IPv6.self, open) }
            }
        }
    }

    /// One UDP service on one IP version: each datagram through the stack,
    /// the answer (if any) back to its source.
    private func serveUDP<I: IPVersion>(_ setting: ServiceSetting, _ stack: ServiceStacks.DatagramService,
                                        _ version: I.Type, _ open: OpenSockets) async {
        let socket = await DatagramSocket<I>.open(sockets)
        guard open.register({ await socket.close() }) != nil else { return }
        do {
            let local = try await socket.bind(.any(port: setting.port))
            logger.info("udp \(setting.kind.rawValue) on \(local)")
        } catch {
            logger.error("udp \(setting.kind.rawValue) on \(I.name) port \(setting.port): \(error)")
            return
        }
        while let datagram = await socket.nextDatagram() {
            // A datagram the stack refuses (over the rate) is dropped; the
            // metrics count it.
            guard let answer = try? await stack.call(datagram.payload) else { continue }
            do {
                try await socket.send(answer, to: datagram.source)
            } catch {
                logger.debug("udp \(setting.kind.rawValue): cannot answer \(datagram.source): \(error)")
            }
        }
    }

    /// One TCP service on one IP version: a listener, and a task per
    /// accepted connection passing through the stack.
    private func serveTCP<I: IPVersion, S: NetstackService.Service & Sendable>(
        _ setting: ServiceSetting, _ stack: S, _ version: I.Type, _ open: OpenSockets
    ) async where S.Request == ServedConnection, S.Response == ConnectionOutcome {
        let listener = await StreamSocket<I>.open(sockets)
        guard open.register({ await listener.close() }) != nil else { return }
        do {
            let local = try await listener.bind(.any(port: setting.port))
            try await listener.listen(backlog: 4096)
            logger.info("tcp \(setting.kind.rawValue) on \(local)")
        } catch {
            logger.error("tcp \(setting.kind.rawValue) on \(I.name) port \(setting.port): \(error)")
            return
        }
        await withDiscardingTaskGroup { group in
            while true {
                let connection: StreamSocket<I>
                do {
                    connection = try await listener.accept()
                } catch {
                    return
                }
                guard let token = open.register({ await connection.close() }) else {
                    await connection.close()
                    return
                }
                group.addTask {
                    do {
                        _ = try await stack.call(ServedConnection(connection))
                        await connection.close()
                    } catch {
                        // Refused, idle, reset or vanished: nothing more to say to it.
                        await connection.abort()
                    }
                    open.unregister(token)
                }
            }
        }
    }
}

/// The services' sockets (listeners and live connections), so that shutdown
/// can close them, which ends the operations they wait in.
final class OpenSockets: Sendable {
    private let state = Mutex<(closing: Bool, next: Int, closers: [Int: @Sendable () async -> Void])>((false, 0, [:]))

    /// Registers how to close a socket; nil if shutdown has begun.
    func register(_ close: @escaping @Sendable () async -> Void) -> Int? {
        state.withLock { state -> Int? in
            guard !state.closing else { return nil }
            state.next += 1
            state.closers[state.next] = close
            return state.next
        }
    }

    func unregister(_ token: Int) {
        _ = state.withLock { $0.closers.removeValue(forKey: token) }
    }

    func closeAll() {
        let closers = state.withLock { state -> [@Sendable () async -> Void] in
            state.closing = true
            defer { state.closers.removeAll() }
            return Array(state.closers.values)
        }
        Task {
            await withDiscardingTaskGroup { group in
                for close in closers { group.addTask { await close() } }
            }
        }
    }
}

extension DatagramSocket {
    /// The next datagram, past errors that concern one datagram (an ICMP
    /// error for an earlier send); nil once the socket is closed.
    func nextDatagram() async -> Datagram<I>? {
        while true {
            do {
                return try await receive()
            } catch .closed {
                return nil
            } catch {
                continue
            }
        }
    }
}
