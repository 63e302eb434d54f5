import Logging
import Metrics
import MetricsTestKit
import NetstackService
import Synchronization
import Testing

/// A `Sendable` test service: counts calls and concurrent calls, and does
/// what each request says.
final class Probe: Service, Sendable {
    enum Action: Sendable {
        case succeed
        case fail
        case sleep(Duration)
    }
    struct Failure: Error {}

    let clock: TestClock
    private let counts = Mutex<(calls: Int, running: Int, mostRunning: Int)>((0, 0, 0))
    init(clock: TestClock) { self.clock = clock }

    var calls: Int { counts.withLock { $0.calls } }
    var mostRunning: Int { counts.withLock { $0.mostRunning } }

    func call(_ action: Action) async throws -> Int {
        let call = counts.withLock { counts in
            counts.calls += 1
            counts.running += 1
            counts.mostRunning = max(counts.mostRunning, counts.running)
            return counts.calls
        }
        defer { counts.withLock { $0.running -= 1 } }
        switch action {
        case .succeed: return call
        case .fail: throw Failure()
        case .sleep(let duration):
            try await clock.sleep(for: duration)
            return call
        }
    }
}

@Suite struct MiddlewareTests {
    let clock = TestClock()

    @Test func timeoutFiresWhenTheInnerCallIsSlow() async throws {
        let probe = Probe(clock: clock)
        let service = ServiceBuilder.layer(TimeoutLayer(.seconds(1), clock: clock)).service(probe)
        // Fast enough: the answer comes back.
        #expect(try await service.call(.succeed) == 1)
        // Too slow: after one second of the clock, the timeout error.
        let slow = Task { try await service.call(.sleep(.seconds(10))) }
        await clock.waitForSleepers(2)   // the inner call and the timer
        clock.advance(by: .seconds(1))
        await #expect(throws: TimeoutError(limit: .seconds(1))) { try await slow.value }
        #expect(clock.sleepers == 0, "the inner call was cancelled")
    }

    @Test func retriesStopAtTheSharedBudget() async throws {
        let probe = Probe(clock: clock)
        let budget = RetryBudget(initial: 3, depositPerRequest: 0, maximum: 3)
        let layer = RetryLayer<Probe, _, _>(policy: RetryAnyError(maximumAttempts: 10),
                                             backoff: Backoff(base: .milliseconds(100), maximum: .seconds(1), jitter: { 0 }),
                                             budget: budget, clock: clock)
        let first = layer.wrap(probe)
        let copy = layer.wrap(probe)
        await #expect(throws: Probe.Failure.self) { try await first.call(.fail) }
        #expect(probe.calls == 4, "one call and the three retries the budget holds")
        await #expect(throws: Probe.Failure.self) { try await copy.call(.fail) }
        #expect(probe.calls == 5, "the budget is shared: no retry is left for the copy")
    }

    @Test func retriesStopAtThePolicyAndBackOff() async throws {
        let probe = Probe(clock: clock)
        let service = RetryLayer<Probe, _, _>(policy: RetryAnyError(maximumAttempts: 3),
                                               backoff: Backoff(base: .milliseconds(100), maximum: .seconds(1), jitter: { 1 }),
                                               budget: RetryBudget(initial: 100, depositPerRequest: 1, maximum: 100),
                                               clock: clock).wrap(probe)
        let outcome = Task { try await service.call(.fail) }
        await clock.waitForSleepers(1)
        #expect(probe.calls == 1)
        clock.advance(by: .milliseconds(100))   // first backoff: 100 ms
        await clock.waitForSleepers(1)
        #expect(probe.calls == 2)
        clock.advance(by: .milliseconds(199))   // second: 200 ms, not yet over
        #expect(probe.calls == 2)
        clock.advance(by: .milliseconds(1))
        await #expect(throws: Probe.Failure.self) { try await outcome.value }
        #expect(probe.calls == 3)
        let backoff = Backoff(base: .milliseconds(100), maximum: .seconds(1), jitter: { 1 })
        #expect((1...6).map { backoff.delay(beforeRetry: $0) }
                == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
    }

    @Test func concurrencyNeverExceedsTheLimitUnderAThousandCallers() async throws {
        let probe = Probe(clock: clock)
        let service = ConcurrencyLimitLayer<Probe>(limit: 10).wrap(probe)
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<1_000 { group.addTask { try await service.call(.sleep(.seconds(1))) } }
            for _ in 0..<100 {
                await clock.waitForSleepers(10)
                #expect(clock.sleepers == 10)
                clock.advance(by: .seconds(1))
            }
            var finished = 0
            for try await _ in group { finished += 1 }
            #expect(finished == 1_000)
        }
        #expect(probe.mostRunning == 10)
        #expect(service.available == 10 && service.waiting == 0)
    }

    @Test func aCancelledWaiterFreesItsPlace() async throws {
        let probe = Probe(clock: clock)
        let service = ConcurrencyLimit(inner: probe, limit: 1)
        let holder = Task { try await service.call(.sleep(.seconds(1))) }
        await clock.waitForSleepers(1)
        let cancelled = Task { try await service.call(.succeed) }
        let patient = Task { try await service.call(.succeed) }
        for _ in 0..<100_000 where service.waiting < 2 { await Task.yield() }
        #expect(service.waiting == 2)
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(service.waiting == 1)
        clock.advance(by: .seconds(1))
        #expect(try await holder.value == 1)
        #expect(try await patient.value == 2, "the slot went to the caller still waiting")
        #expect(probe.calls == 2 && service.available == 1)
    }

    @Test func theRateLimitHoldsAcrossCopies() async throws {
        let probe = Probe(clock: clock)
        let layer = RateLimitLayer<Probe, TestClock>(bucket: TokenBucket(rate: 10, burst: 5, clock: clock))
        let copies = [layer.wrap(probe), layer.wrap(probe)]
        for index in 0..<5 { _ = try await copies[index % 2].call(.succeed) }
        #expect(probe.calls == 5, "the burst is shared by both copies")
        let late = Task { try await copies[1].call(.succeed) }
        await clock.waitForSleepers(1)
        #expect(probe.calls == 5, "the sixth call waits for a token")
        clock.advance(by: .milliseconds(100))   // one token at 10 per second
        _ = try await late.value
        #expect(probe.calls == 6)
        // Shedding instead of waiting: the bucket is empty again.
        let shed = LoadShed(inner: copies[0])
        await #expect(throws: OverloadedError()) { try await shed.call(.succeed) }
        #expect(probe.calls == 6)
    }

    @Test func loadSheddingRejectsAtOnce() async throws {
        let probe = Probe(clock: clock)
        let service = ServiceBuilder.layer(LoadShedLayer()).layer(ConcurrencyLimitLayer(limit: 1)).service(probe)
        let busy = Task { try await service.call(.sleep(.seconds(1))) }
        await clock.waitForSleepers(1)
        // No clock movement: the rejection does not wait for the slot.
        await #expect(throws: OverloadedError()) { try await service.call(.succeed) }
        clock.advance(by: .seconds(1))
        _ = try await busy.value
        #expect(try await service.call(.succeed) == 2)
    }

    @Test func theBreakerOpensHalfOpensAndCloses() async throws {
        let probe = Probe(clock: clock)
        let state = CircuitBreakerState(failureRatio: 0.5, minimumCalls: 4, window: 4, openDuration: .seconds(10), clock: clock)
        let service = CircuitBreakerLayer<Probe, TestClock>(state: state).wrap(probe)
        _ = try await service.call(.succeed)
        for _ in 0..<2 { await #expect(throws: Probe.Failure.self) { try await service.call(.fail) } }
        #expect(state.phase == .closed, "three calls are fewer than the minimum")
        await #expect(throws: Probe.Failure.self) { try await service.call(.fail) }
        #expect(state.phase == .open, "three of four failed")
        await #expect(throws: CircuitOpenError()) { try await service.call(.succeed) }
        #expect(probe.calls == 4, "an open breaker does not call the service")
        clock.advance(by: .seconds(10))
        #expect(state.phase == .halfOpen)
        // The trial fails: open again for another ten seconds.
        await #expect(throws: Probe.Failure.self) { try await service.call(.fail) }
        #expect(state.phase == .open)
        clock.advance(by: .seconds(10))
        // One trial at a time: a second caller is refused while it runs.
        let trial = Task { try await service.call(.sleep(.seconds(1))) }
        await clock.waitForSleepers(1)
        await #expect(throws: CircuitOpenError()) { try await service.call(.succeed) }
        clock.advance(by: .seconds(1))
        _ = try await trial.value
        #expect(state.phase == .closed)
        #expect(try await service.call(.succeed) == 7)
    }

    @Test func metricsCountCallsErrorsAndDuration() async throws {
        let metrics = TestMetrics()
        let probe = Probe(clock: clock)
        let service = ServiceBuilder
            .layer(LoggingLayer(logger: Logger(label: "test"), name: "probe"))
            .layer(MetricsLayer(name: "probe", dimensions: [("service", "test")], factory: metrics))
            .service(probe)
        _ = try await service.call(.succeed)
        _ = try await service.call(.succeed)
        await #expect(throws: Probe.Failure.self) { try await service.call(.fail) }
        #expect(try metrics.expectCounter("probe_calls_total", [("service", "test")]).totalValue == 3)
        #expect(try metrics.expectCounter("probe_errors_total", [("service", "test"), ("error", "Failure")]).totalValue == 1)
        #expect(try metrics.expectMeter("probe_in_flight", [("service", "test")]).lastValue == 0)
        #expect(try metrics.expectTimer("probe_duration", [("service", "test")]).values.count == 3)
    }
}
