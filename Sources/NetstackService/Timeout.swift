/// The inner call did not finish within the time allowed.
public struct TimeoutError: Error, Equatable, CustomStringConvertible {
    public let limit: Duration
    public init(limit: Duration) { self.limit = limit }
    public var description: String { "timed out after \(limit)" }
}

/// Fails a call that takes longer than `limit` with `TimeoutError`.
///
/// The call races a sleep on `clock` in two child tasks, so the service,
/// its requests and responses must be `Sendable`. When the sleep wins, the
/// inner call is cancelled and `call` returns once it has ended: an inner
/// service that ignores cancellation delays the error (structured
/// concurrency does not abandon a running task).
public struct Timeout<Inner: Service & Sendable, C: Clock<Duration>>: Service, Sendable
where Inner.Request: Sendable, Inner.Response: Sendable {
    public let inner: Inner
    public let limit: Duration
    public let clock: C

    public func call(_ request: Inner.Request) async throws -> Inner.Response {
        try await withThrowingTaskGroup(of: Race<Inner.Response>.self) { group in
            group.addTask { .finished(try await inner.call(request)) }
            group.addTask {
                try await clock.sleep(for: limit)
                return .timedOut
            }
            defer { group.cancelAll() }
            switch try await group.next()! {
            case .finished(let response): return response
            case .timedOut: throw TimeoutError(limit: limit)
            }
        }
    }
}

public struct TimeoutLayer<Inner: Service & Sendable, C: Clock<Duration>>: Layer
where Inner.Request: Sendable, Inner.Response: Sendable {
    public let limit: Duration
    public let clock: C
    public init(_ limit: Duration, clock: C) {
        self.limit = limit
        self.clock = clock
    }
    public func wrap(_ inner: Inner) -> Timeout<Inner, C> { Timeout(inner: inner, limit: limit, clock: clock) }
}

extension TimeoutLayer where C == ContinuousClock {
    public init(_ limit: Duration) { self.init(limit, clock: ContinuousClock()) }
}

/// Which child of a `Timeout` finished first.
private enum Race<Response: Sendable>: Sendable {
    case finished(Response)
    case timedOut
}
