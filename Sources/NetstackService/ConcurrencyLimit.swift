/// At most `limit` calls run at once; further callers wait in arrival order.
/// A waiting caller that is cancelled leaves the queue (and throws
/// `CancellationError`). Copies share the limit.
public struct ConcurrencyLimit<Inner: Service>: Service {
    public let inner: Inner
    let permits: AsyncSemaphore

    public init(inner: Inner, limit: Int) {
        self.inner = inner
        permits = AsyncSemaphore(permits: limit)
    }

    /// Calls running now would be `limit - available`.
    public var available: Int { permits.available }
    /// Callers waiting for a slot.
    public var waiting: Int { permits.waiting }

    public func call(_ request: Inner.Request) async throws -> Inner.Response {
        try await permits.acquire()
        defer { permits.release() }
        return try await inner.call(request)
    }
}

extension ConcurrencyLimit: LoadReporting {
    public func callIfReady(_ request: Inner.Request) async throws -> Inner.Response {
        guard permits.tryAcquire() else { throw OverloadedError() }
        defer { permits.release() }
        return try await inner.call(request)
    }
}

extension ConcurrencyLimit: Sendable where Inner: Sendable {}

public struct ConcurrencyLimitLayer<Inner: Service>: Layer {
    public let limit: Int
    public init(limit: Int) { self.limit = limit }
    public func wrap(_ inner: Inner) -> ConcurrencyLimit<Inner> { ConcurrencyLimit(inner: inner, limit: limit) }
}
