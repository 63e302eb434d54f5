/// Rejects a call at once with `OverloadedError` when the inner service
/// (a concurrency or rate limit) would make it wait.
public struct LoadShed<Inner: LoadReporting>: Service {
    public let inner: Inner
    public init(inner: Inner) { self.inner = inner }
    public func call(_ request: Inner.Request) async throws -> Inner.Response {
        try await inner.callIfReady(request)
    }
}

extension LoadShed: Sendable where Inner: Sendable {}

public struct LoadShedLayer<Inner: LoadReporting>: Layer {
    public init() {}
    public func wrap(_ inner: Inner) -> LoadShed<Inner> { LoadShed(inner: inner) }
}
