import DequeModule
import Synchronization

/// Permits handed out in arrival order. A waiter whose task is cancelled
/// leaves the queue at once and throws `CancellationError`; a permit is
/// never lost to a cancelled waiter.
final class AsyncSemaphore: Sendable {
    private struct State {
        var available: Int
        var nextID: UInt64 = 0
        var waiters: Deque<(id: UInt64, continuation: CheckedContinuation<Void, any Error>)> = []
    }

    private let state: Mutex<State>

    init(permits: Int) {
        precondition(permits >= 0, "permits must not be negative")
        state = Mutex(State(available: permits))
    }

    /// Permits free now.
    var available: Int { state.withLock { $0.available } }
    /// Callers waiting for a permit.
    var waiting: Int { state.withLock { $0.waiters.count } }

    /// Takes a permit if one is free now.
    func tryAcquire() -> Bool {
        state.withLock { state in
            guard state.available > 0 else { return false }
            state.available -= 1
            return true
        }
    }

    /// Waits for a permit.
    func acquire() async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Outcome { case acquired, cancelled, queued }
                // The cancellation flag is set before the handler below runs,
                // so checking it under the lock closes the window where the
                // handler ran before this waiter was queued.
                let outcome = state.withLock { state -> Outcome in
                    if Task.isCancelled { return .cancelled }
                    if state.available > 0 {
                        state.available -= 1
                        return .acquired
                    }
                    state.waiters.append((id, continuation))
                    return .queued
                }
                switch outcome {
                case .acquired: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .queued: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0) }
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Returns a permit: to the longest waiter if there is one.
    func release() {
        let waiter = state.withLock { state -> (id: UInt64, continuation: CheckedContinuation<Void, any Error>)? in
            if let first = state.waiters.popFirst() { return first }
            state.available += 1
            return nil
        }
        waiter?.continuation.resume()
    }
}
