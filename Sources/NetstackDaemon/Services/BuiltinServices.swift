import Logging
import NetstackCore
import NetstackIO
import NetstackSockets
import ServiceLifecycle
import Synchronization

/// The configured built-in services, each a socket inside the stack served by
/// its own worker. Runs until graceful shutdown, which closes the sockets.
struct BuiltinServices: ServiceLifecycle.Service {
    let settings: [ServiceSetting]
    let sockets: SocketRuntime
    let logger: Logger

    func run() async throws {
        let open = OpenSockets()
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for setting in settings where setting.transports.contains(.udp) {
                    group.addTask { await serveUDP(setting, IPv4.self, open) }
                    group.addTask { await serveUDP(setting, IPv6.self, open) }
                }
                for setting in settings where setting.transports.contains(.tcp) {
                    group.addTask { await serveTCP(setting, IPv4.self, open) }
                    group.addTask { await serveTCP(setting, IPv6.self, open) }
                }
            }
        } onGracefulShutdown: {
            open.closeAll()
        }
    }

    /// One UDP service on one IP version: answer each datagram as the service says.
    private func serveUDP<I: IPVersion>(_ setting: ServiceSetting, _ version: I.Type, _ open: OpenSockets) async {
        let socket = await DatagramSocket<I>.open(sockets)
        guard open.register({ await socket.close() }) != nil else { return }
        do {
            let local = try await socket.bind(.any(port: setting.port))
            logger.info("udp \(setting.kind.rawValue) on \(local)")
        } catch {
            logger.error("udp \(setting.kind.rawValue) on \(I.name) port \(setting.port): \(error)")
            return
        }
        while true {
            let datagram: Datagram<I>
            do {
                datagram = try await socket.receive()
            } catch .closed {
                return
            } catch {
                continue
            }
            let answer: [UInt8]? = switch setting.kind {
            case .echo: datagram.payload
            case .discard: nil
            case .daytime: SmallServers.daytime()
            case .chargen: SmallServers.chargenDatagram()
            }
            guard let answer else { continue }
            do {
                try await socket.send(answer, to: datagram.source)
            } catch {
                logger.debug("udp \(setting.kind.rawValue): cannot answer \(datagram.source): \(error)")
            }
        }
    }

    /// One TCP service on one IP version: a listener, and a task per
    /// accepted connection doing what the service does.
    private func serveTCP<I: IPVersion>(_ setting: ServiceSetting, _ version: I.Type, _ open: OpenSockets) async {
        let listener = await StreamSocket<I>.open(sockets)
        guard open.register({ await listener.close() }) != nil else { return }
        do {
            let local = try await listener.bind(.any(port: setting.port))
            try await listener.listen(backlog: 128)
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
                    await SmallServers.serve(setting.kind, connection)
                    await connection.close()
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
