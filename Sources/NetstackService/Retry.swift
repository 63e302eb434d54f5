import Synchronization

/// Decides, per request and error, whether a failed call is tried again.
public protocol RetryPolicy<Request>: Sendable {
    associatedtype Request
    /// `attempt` counts the failures so far (1 after the first).
    func shouldRetry(_ request: Request, after error: any Error, attempt: Int) -> Bool
}

/// Retries any error up to `maximumAttempts` calls in all.
public struct RetryAnyError<Request>: RetryPolicy {
    public let maximumAttempts: Int
    public init(maximumAttempts: Int) { self.maximumAttempts = maximumAttempts }
    public func shouldRetry(_ request: Request, after error: any Error, attempt: Int) -> Bool {
        attempt < maximumAttempts
    }
}

/// Exponential backoff with full jitter: before retry n the caller sleeps a
/// random time between zero and min(maximum, base × 2^(n-1)).
public struct Backoff: Sendable {
    public let base: Duration
    public let maximum: Duration
    /// A number in 0...1; random by default, fixed in tests.
    public let jitter: @Sendable () -> Double

    public init(base: Duration, maximum: Duration, jitter: @escaping @Sendable () -> Double = { .random(in: 0...1) }) {
        self.base = base
        self.maximum = maximum
        self.jitter = jitter
    }

    public func delay(beforeRetry retry: Int) -> Duration {
        let ceiling = min(maximum, base * (1 << min(retry - 1, 30)))
        return ceiling * jitter()
    }
}

/// Retries cost tokens shared by every request (and every copy of the
/// service holding this budget): each request deposits `depositPerRequest`,
/// each retry withdraws one, the balance never exceeds `maximum`. A failing
/// dependency thus sees at most a fixed share of extra load, not a storm.
public final class RetryBudget: Sendable {
    private let balance: Mutex<Double>
    public let depositPerRequest: Double
    public let maximum: Double

    public init(initial: Double, depositPerRequest: Double, maximum: Double) {
        balance = Mutex(min(initial, maximum))
        self.depositPerRequest = depositPerRequest
        self.maximum = maximum
    }

    func deposit() { balance.withLock { $0 = min(maximum, $0 + depositPerRequest) } }

    func withdraw() -> Bool {
        balance.withLock { balance in
            guard balance >= 1 else { return false }
            balance -= 1
            return true
        }
    }
}

/// Calls again after a failure while the policy agrees and the budget
/// allows, sleeping the backoff on `clock` in between.
public struct Retry<Inner: Service, Policy: RetryPolicy, C: Clock<Duration>>: Service
where Policy.Request == Inner.Request {
    public let inner: Inner
    public let policy: Policy
    public let backoff: Backoff
    public let budget: RetryBudget
    public let clock: C

    public func call(_ request: Inner.Request) async throws -> Inner.Response {
        budget.deposit()
        var failures = 0
        while true {
            do {
                return try await inner.call(request)
            } catch {
                failures += 1
                guard policy.shouldRetry(request, after: error, attempt: failures), budget.withdraw() else { throw error }
                try await clock.sleep(for: backoff.delay(beforeRetry: failures))
            }
        }
    }
}

extension Retry: Sendable where Inner: Sendable {}

public struct RetryLayer<Inner: Service, Policy: RetryPolicy, C: Clock<Duration>>: Layer
where Policy.Request == Inner.Request {
    public let policy: Policy
    public let backoff: Backoff
    public let budget: RetryBudget
    public let clock: C
    public init(policy: Policy, backoff: Backoff, budget: RetryBudget, clock: C) {
        self.policy = policy
        self.backoff = backoff
        self.budget = budget
        self.clock = clock
    }
    public func wrap(_ inner: Inner) -> Retry<Inner, Policy, C> {
        Retry(inner: inner, policy: policy, backoff: backoff, budget: budget, clock: clock)
    }
}
