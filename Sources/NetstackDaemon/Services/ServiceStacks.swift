import Logging
import NetstackService

/// The connection moved no byte for the configured time and was reset.
struct IdleTimeoutError: Error, CustomStringConvertible {
    let limit: Duration
    var description: String { "idle for \(limit)" }
}

/// Resets a connection that moves no byte for `limit`. A watchdog beside
/// the call looks at the connection's activity every quarter of the limit,
/// so an idle connection goes after between 1 and 1.25 times the limit.
/// The inner call runs in the caller's task; only the watchdog is a child.
/// Without a limit, the call goes straight through.
struct IdleTimeout<Inner: Service>: Service where Inner.Request == ServedConnection {
    let inner: Inner
    let limit: Duration?

    func call(_ connection: ServedConnection) async throws -> Inner.Response {
        guard let limit else { return try await inner.call(connection) }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [limit] in
                let slice = limit / 4
                var seen = connection.activityCount
                var quiet = Duration.zero
                while quiet < limit {
                    try await Task.sleep(for: slice)
                    let now = connection.activityCount
                    quiet = now == seen ? quiet + slice : .zero
                    seen = now
                }
                connection.markIdled()
                await connection.reset()
            }
            defer { group.cancelAll() }
            do {
                return try await inner.call(connection)
            } catch where connection.wasIdled {
                throw IdleTimeoutError(limit: limit)
            }
        }
    }
}

extension IdleTimeout: Sendable where Inner: Sendable {}

struct IdleTimeoutLayer<Inner: Service>: Layer where Inner.Request == ServedConnection {
    let limit: Duration?
    func wrap(_ inner: Inner) -> IdleTimeout<Inner> { IdleTimeout(inner: inner, limit: limit) }
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

    static func connections(_ setting: ServiceSetting, logger: Logger) -> ConnectionService {
        let dimensions = [("service", setting.kind.rawValue), ("transport", "tcp")]
        let served = ServiceBuilder
            .layer(MetricsLayer(name: "netstack_service_served", dimensions: dimensions))
            .layer(IdleTimeoutLayer(limit: setting.idleTimeout))
            .service(SmallStreamServer(kind: setting.kind))
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
