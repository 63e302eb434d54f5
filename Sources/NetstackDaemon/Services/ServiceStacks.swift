import Logging
import NetstackService
import Synchronization

/// The connection moved no byte for the configured time and was reset.
struct IdleTimeoutError: Error, CustomStringConvertible {
    let limit: Duration
    var description: String { "idle for \(limit)" }
}

/// Resets a connection that moves no byte for `limit`. One watcher per
/// service looks at the activity of every connection it serves each quarter
/// of the limit, so an idle connection goes after between 1 and 1.25 times
/// the limit, and a connection costs an entry in a table, not a task and a
/// timer of its own. Without a limit, the call goes straight through.
struct IdleTimeout<Inner: Service>: Service where Inner.Request == ServedConnection {
    let inner: Inner
    let watcher: IdleWatcher?

    func call(_ connection: ServedConnection) async throws -> Inner.Response {
        guard let watcher else { return try await inner.call(connection) }
        let token = watcher.watch(connection)
        defer { watcher.unwatch(token) }
        do {
            return try await inner.call(connection)
        } catch where connection.wasIdled {
            throw IdleTimeoutError(limit: watcher.limit)
        }
    }
}

extension IdleTimeout: Sendable where Inner: Sendable {}

struct IdleTimeoutLayer<Inner: Service>: Layer where Inner.Request == ServedConnection {
    let watcher: IdleWatcher?
    init(limit: Duration?) { watcher = limit.map(IdleWatcher.init) }
    func wrap(_ inner: Inner) -> IdleTimeout<Inner> { IdleTimeout(inner: inner, watcher: watcher) }
}

/// The connections one service serves, and how long each has been quiet.
/// A task sweeps them every quarter of the limit while there are any.
final class IdleWatcher: Sendable {
    let limit: Duration
    private struct Watched {
        let connection: ServedConnection
        var seen: UInt64
        var quiet = Duration.zero
    }
    private let state = Mutex<(next: Int, watched: [Int: Watched], sweeping: Bool)>((0, [:], false))

    init(limit: Duration) {
        self.limit = limit
    }

    /// Starts watching `connection`; the token ends it.
    func watch(_ connection: ServedConnection) -> Int {
        let (token, start) = state.withLock { state -> (Int, Bool) in
            state.next += 1
            state.watched[state.next] = Watched(connection: connection, seen: connection.activityCount)
            defer { state.sweeping = true }
            return (state.next, !state.sweeping)
        }
        if start { Task { await sweep() } }
        return token
    }

    func unwatch(_ token: Int) {
        _ = state.withLock { $0.watched.removeValue(forKey: token) }
    }

    private func sweep() async {
        let slice = limit / 4
        while true {
            do { try await Task.sleep(for: slice) } catch { return }
            let idle = state.withLock { state -> [ServedConnection]? in
                guard !state.watched.isEmpty else {
                    state.sweeping = false
                    return nil
                }
                var idle: [ServedConnection] = []
                for (token, var entry) in state.watched {
                    let activity = entry.connection.activityCount
                    entry.quiet = activity == entry.seen ? entry.quiet + slice : .zero
                    entry.seen = activity
                    if entry.quiet >= limit {
                        idle.append(entry.connection)
                        state.watched.removeValue(forKey: token)
                    } else {
                        state.watched[token] = entry
                    }
                }
                return idle
            }
            guard let idle else { return }
            for connection in idle {
                connection.markIdled()
                await connection.reset()
            }
        }
    }
}

/// The middleware stacks of the built-in services, read from the configuration.
///
/// A TCP connection passes, outermost first: logging (failures at info);
/// metrics of every arrival (`netstack_service_connections_*`); the rate limit
/// of new connections; load shedding, when the overflow policy is `refuse`;
/// the connection limit; metrics of connections being served
/// (`netstack_service_served_*`), so that the two in-flight meters differ by
/// the connections waiting; the idle timeout; the server. A UDP datagram
/// passes logging, metrics (`netstack_service_datagrams_*`), load shedding over
/// the rate limit (datagrams over the rate are dropped), and the server.
enum ServiceStacks {
    typealias ConnectionService = AnySendableService<ServedConnection, ConnectionOutcome>
    typealias DatagramService = AnySendableService<[UInt8], [UInt8]?>

    static func connections<Server: Service & Sendable>(_ setting: ServiceSetting, logger: Logger, server: Server)
        -> ConnectionService where Server.Request == ServedConnection, Server.Response == ConnectionOutcome {
        let dimensions = [("service", setting.kind.rawValue), ("transport", "tcp")]
        let served = ServiceBuilder
            .layer(MetricsLayer(name: "netstack_service_served", dimensions: dimensions))
            .layer(IdleTimeoutLayer(limit: setting.idleTimeout))
            .service(server)
        let limited = ConcurrencyLimit(inner: served, limit: setting.maxConnections)
        let admitted = switch setting.overflow {
        case .wait: AnySendableService(limited)
        case .refuse: AnySendableService(LoadShed(inner: limited))
        }
        return AnySendableService(ServiceBuilder
            .layer(LoggingLayer(logger: logger, name: "tcp \(setting.kind.rawValue)"))
            .layer(MetricsLayer(name: "netstack_service_connections", dimensions: dimensions))
            .layer(RateLimitLayer(bucket: bucket(setting.rateLimit)))
            .service(admitted))
    }

    static func datagrams(_ setting: ServiceSetting, logger: Logger) -> DatagramService {
        AnySendableService(ServiceBuilder
            .layer(LoggingLayer(logger: logger, name: "udp \(setting.kind.rawValue)", failureLevel: .debug))
            .layer(MetricsLayer(name: "netstack_service_datagrams",
                                dimensions: [("service", setting.kind.rawValue), ("transport", "udp")]))
            .layer(LoadShedLayer())
            .layer(RateLimitLayer(bucket: bucket(setting.rateLimit)))
            .service(SmallDatagramServer(kind: setting.kind)))
    }

    /// A bucket with a burst of one second's worth; no limit is an infinite rate.
    private static func bucket(_ rate: Double?) -> TokenBucket<ContinuousClock> {
        TokenBucket(rate: rate ?? .infinity, burst: max(1, rate ?? 1), clock: ContinuousClock())
    }
}
