import Metrics

/// Records, through swift-metrics, for the service `name`:
/// `<name>_calls_total`, `<name>_errors_total` (dimension `error`: the
/// error's type), `<name>_in_flight` (a meter) and `<name>_duration` (a timer).
public struct MetricsService<Inner: Service>: Service {
    public let inner: Inner
    public let name: String
    public let dimensions: [(String, String)]
    public let factory: any MetricsFactory
    private let calls: Counter
    private let inFlight: Meter
    private let duration: Metrics.Timer

    /// `factory` is the bootstrapped metrics system unless a test gives its own.
    public init(inner: Inner, name: String, dimensions: [(String, String)] = [],
                factory: any MetricsFactory = MetricsSystem.factory) {
        self.inner = inner
        self.name = name
        self.dimensions = dimensions
        self.factory = factory
        calls = Counter(label: "\(name)_calls_total", dimensions: dimensions, factory: factory)
        inFlight = Meter(label: "\(name)_in_flight", dimensions: dimensions, factory: factory)
        duration = Metrics.Timer(label: "\(name)_duration", dimensions: dimensions, factory: factory)
    }

    public func call(_ request: Inner.Request) async throws -> Inner.Response {
        calls.increment()
        inFlight.increment()
        let start = ContinuousClock.now
        defer {
            inFlight.decrement()
            let elapsed = (ContinuousClock.now - start).components
            duration.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
        }
        do {
            return try await inner.call(request)
        } catch {
            Counter(label: "\(name)_errors_total", dimensions: dimensions + [("error", "\(type(of: error))")],
                    factory: factory).increment()
            throw error
        }
    }
}

extension MetricsService: Sendable where Inner: Sendable {}

public struct MetricsLayer<Inner: Service>: Layer {
    public let name: String
    public let dimensions: [(String, String)]
    public let factory: any MetricsFactory
    public init(name: String, dimensions: [(String, String)] = [], factory: any MetricsFactory = MetricsSystem.factory) {
        self.name = name
        self.dimensions = dimensions
        self.factory = factory
    }
    public func wrap(_ inner: Inner) -> MetricsService<Inner> {
        MetricsService(inner: inner, name: name, dimensions: dimensions, factory: factory)
    }
}
