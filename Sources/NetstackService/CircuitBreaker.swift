import DequeModule
import Synchronization

/// The breaker refused the call: too many recent calls failed.
public struct CircuitOpenError: Error, Equatable, CustomStringConvertible {
    public init() {}
    public var description: String { "circuit open" }
}

/// Counts the outcomes of recent calls and stops calling a service that keeps
/// failing. Closed: calls pass; once at least `minimumCalls` of the last
/// `window` calls were made and the failed share reaches `failureRatio`, it
/// opens. Open: calls fail at once with `CircuitOpenError` for `openDuration`.
/// Half-open: one trial call passes (others are refused); its success closes
/// the breaker with a clean window, its failure opens it again. Shared by
/// every copy.
public final class CircuitBreakerState<C: Clock<Duration>>: Sendable {
    public enum Phase: Equatable, Sendable {
        case closed
        case open
        case halfOpen
    }

    private struct State: Sendable {
        var phase: Phase = .closed
        var outcomes: Deque<Bool> = []   // true for a failure
        var openedAt: C.Instant?
        var trialRunning = false
    }

    public let failureRatio: Double
    public let minimumCalls: Int
    public let window: Int
    public let openDuration: Duration
    let clock: C
    private let state = Mutex(State())

    public init(failureRatio: Double, minimumCalls: Int, window: Int, openDuration: Duration, clock: C) {
        precondition(window >= minimumCalls && minimumCalls >= 1, "window must hold minimumCalls ≥ 1")
        self.failureRatio = failureRatio
        self.minimumCalls = minimumCalls
        self.window = window
        self.openDuration = openDuration
        self.clock = clock
    }

    public var phase: Phase {
        let now = clock.now
        return state.withLock { state in
            if state.phase == .open, let opened = state.openedAt, opened.advanced(by: openDuration) <= now { return .halfOpen }
            return state.phase
        }
    }

    /// Whether a call may start now; a half-open breaker admits one trial.
    func admit() -> Bool {
        let now = clock.now
        return state.withLock { state in
            switch state.phase {
            case .closed:
                return true
            case .open:
                guard let opened = state.openedAt, opened.advanced(by: openDuration) <= now else { return false }
                state.phase = .halfOpen
                state.trialRunning = true
                return true
            case .halfOpen:
                guard !state.trialRunning else { return false }
                state.trialRunning = true
                return true
            }
        }
    }

    func record(failure: Bool) {
        let now = clock.now
        state.withLock { state in
            switch state.phase {
            case .halfOpen:
                state.trialRunning = false
                state.outcomes.removeAll()
                if failure {
                    state.phase = .open
                    state.openedAt = now
                } else {
                    state.phase = .closed
                }
            case .closed:
                state.outcomes.append(failure)
                if state.outcomes.count > window { state.outcomes.removeFirst() }
                let failures = state.outcomes.lazy.filter { $0 }.count
                if state.outcomes.count >= minimumCalls,
                   Double(failures) >= failureRatio * Double(state.outcomes.count) {
                    state.phase = .open
                    state.openedAt = now
                }
            case .open:
                break   // a call admitted before the breaker opened; its outcome is stale
            }
        }
    }
}

public struct CircuitBreaker<Inner: Service, C: Clock<Duration>>: Service {
    public let inner: Inner
    public let state: CircuitBreakerState<C>

    public init(inner: Inner, state: CircuitBreakerState<C>) {
        self.inner = inner
        self.state = state
    }

    public func call(_ request: Inner.Request) async throws -> Inner.Response {
        guard state.admit() else { throw CircuitOpenError() }
        do {
            let response = try await inner.call(request)
            state.record(failure: false)
            return response
        } catch {
            state.record(failure: true)
            throw error
        }
    }
}

extension CircuitBreaker: Sendable where Inner: Sendable {}

public struct CircuitBreakerLayer<Inner: Service, C: Clock<Duration>>: Layer {
    public let state: CircuitBreakerState<C>
    public init(state: CircuitBreakerState<C>) { self.state = state }
    public func wrap(_ inner: Inner) -> CircuitBreaker<Inner, C> { CircuitBreaker(inner: inner, state: state) }
}
