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
            }
        } onGracefulShutdown: {
            open.closeAll()
        }
    }

    /// One UDP service on one IP version: answer each datagram as the service says.
    private func serveUDP<I: IPVersion>(_ setting: ServiceSetting, _ version: I.Type, _ open: OpenSockets) async {
        let socket = await DatagramSocket<I>.open(sockets)
        guard open.add(socket) else { return }
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
}

/// The services' sockets, so that shutdown can close them (which ends the
/// receives they wait in).
final class OpenSockets: Sendable {
    private let state = Mutex<(closing: Bool, closers: [@Sendable () async -> Void])>((false, []))

    /// Registers a socket; false if shutdown has begun (and the socket is closed).
    func add<I: IPVersion>(_ socket: DatagramSocket<I>) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.closing else { return false }
            state.closers.append { await socket.close() }
            return true
        }
        if !accepted { Task { await socket.close() } }
        return accepted
    }

    func closeAll() {
        let closers = state.withLock { state -> [@Sendable () async -> Void] in
            state.closing = true
            defer { state.closers.removeAll() }
            return state.closers
        }
        Task {
            for close in closers { await close() }
        }
    }
}
