import Logging
import MetricsTestKit
import NetstackService
import Testing

/// A service that is not `Sendable`: plain mutable state in a class.
final class Tally: Service {
    private(set) var total = 0
    private(set) var running = 0
    private(set) var mostRunning = 0

    func call(_ amount: Int) async throws -> Int {
        running += 1
        mostRunning = max(mostRunning, running)
        defer { running -= 1 }
        await Task.yield()
        total += amount
        return total
    }
}

@Suite struct NonSendableServiceTests {
    /// Compiles only because no layer here demands `Sendable`: every one of
    /// them runs the inner call in the caller's task.
    @Test func composesWithEveryLayerThatStaysInOneTask() async throws {
        let clock = TestClock()
        let stack = ServiceBuilder
            .layer(LoggingLayer(logger: Logger(label: "test"), name: "tally"))
            .layer(MetricsLayer(name: "tally", factory: TestMetrics()))
            .layer(RetryLayer(policy: RetryAnyError(maximumAttempts: 2),
                              backoff: Backoff(base: .milliseconds(1), maximum: .milliseconds(1)),
                              budget: RetryBudget(initial: 1, depositPerRequest: 0.1, maximum: 10), clock: clock))
            .layer(CircuitBreakerLayer(state: CircuitBreakerState(failureRatio: 0.5, minimumCalls: 10, window: 10,
                                                                  openDuration: .seconds(1), clock: clock)))
            .layer(LoadShedLayer())
            .layer(RateLimitLayer(bucket: TokenBucket(rate: 1_000, burst: 100, clock: clock)))
            .layer(ConcurrencyLimitLayer(limit: 4))
            .service(Tally())
        let erased = AnyService(stack)
        #expect(try await stack.call(2) == 2)
        #expect(try await erased.call(3) == 5)

        // The `Sendable` erasure refuses it:
        //     AnySendableService(stack)
        //     error: type 'Tally' does not conform to the 'Sendable' protocol
        // and so does the one layer that races the call in a child task:
        //     TimeoutLayer(.seconds(1)).wrap(Tally())
        //     error: type 'Tally' does not conform to the 'Sendable' protocol
    }

    /// `Buffer` moves the non-`Sendable` service into a task of its own:
    /// many tasks share it, and it still sees one call at a time.
    @Test func bufferServesManyTasksOneCallAtATime() async throws {
        let buffer = Buffer(Tally(), capacity: 8)
        let sendable = AnySendableService(buffer)
        let totals = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<200 { group.addTask { try await sendable.call(1) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(totals.sorted() == Array(1...200), "every call saw the one before it finished")
        // The service itself cannot be asked from here (it lives in the
        // buffer's task), so ask through the buffer once more.
        #expect(try await buffer.call(0) == 200)
    }
}
