import Synchronization

/// A token bucket: `rate` tokens per second, at most `burst` saved up. It
/// is a reference, so every copy of a service holding it draws from the same
/// bucket (Tower's `RateLimit` keeps one per clone; users keep asking for
/// this instead).
public final class TokenBucket<C: Clock<Duration>>: Sendable {
    private struct State: Sendable {
        var tokens: Double
        var updated: C.Instant
    }

    public let rate: Double
    public let burst: Double
    let clock: C
    private let state: Mutex<State>

    public init(rate: Double, burst: Double, clock: C) {
        precondition(rate > 0 && burst >= 1, "a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        state = Mutex(State(tokens: burst, updated: clock.now))
    }

    /// Takes a token, going into debt if none is saved, and says how long the
    /// caller must wait for its token to be earned (zero if it was there).
    func reserve() -> Duration {
        let now = clock.now
        return state.withLock { state in
            refill(&state, now)
            state.tokens -= 1
            return state.tokens >= 0 ? .zero : .seconds(-state.tokens / rate)
        }
    }

    /// Takes a token only if one is saved now.
    func take() -> Bool {
        let now = clock.now
        return state.withLock { state in
            refill(&state, now)
            guard state.tokens >= 1 else { return false }
            state.tokens -= 1
            return true
        }
    }

    /// Gives back a reserved token whose caller gave up waiting.
    func refund() { state.withLock { $0.tokens = min(burst, $0.tokens + 1) } }

    private func refill(_ state: inout State, _ now: C.Instant) {
        let elapsed = state.updated.duration(to: now)
        guard elapsed > .zero else { return }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        state.tokens = min(burst, state.tokens + seconds * rate)
        state.updated = now
    }
}

/// Lets calls through at the bucket's rate; a caller over the rate sleeps
/// until its token is earned.
public struct RateLimit<Inner: Service, C: Clock<Duration>>: Service {
    public let inner: Inner
    public let bucket: TokenBucket<C>

    public init(inner: Inner, bucket: TokenBucket<C>) {
        self.inner = inner
        self.bucket = bucket
    }

    public func call(_ request: Inner.Request) async throws -> Inner.Response {
        let wait = bucket.reserve()
        if wait > .zero {
            do {
                try await bucket.clock.sleep(for: wait)
            } catch {
                bucket.refund()
                throw error
            }
        }
        return try await inner.call(request)
    }
}

extension RateLimit: LoadReporting {
    public func callIfReady(_ request: Inner.Request) async throws -> Inner.Response {
        guard bucket.take() else { throw OverloadedError() }
        return try await inner.call(request)
    }
}

extension RateLimit: Sendable where Inner: Sendable {}

public struct RateLimitLayer<Inner: Service, C: Clock<Duration>>: Layer {
    public let bucket: TokenBucket<C>
    public init(bucket: TokenBucket<C>) { self.bucket = bucket }
    public func wrap(_ inner: Inner) -> RateLimit<Inner, C> { RateLimit(inner: inner, bucket: bucket) }
}
