import NetstackCore
import Synchronization

/// The engine's side of sockets: runs socket operations on the engine thread,
/// one hop per operation, and keeps the operations that must wait (receive
/// with nothing queued, accept with nobody connecting, ...) until their
/// socket reports an event.
///
/// A parked operation is an `attempt` (returns nil while it cannot complete)
/// and a `completion`. Attempts of one socket are retried in the order they
/// were parked, and a retry stops at the first that still cannot complete, so
/// waiting operations complete in order.
public final class SocketRuntime: Sendable {
    private let submitWork: @Sendable (@escaping @Sendable (Stack) -> Void) -> Void
    /// Touched only on the engine thread (inside submitted work and
    /// `deliverEvents`), which is what makes the unchecked box safe.
    private let parked = EngineConfined(ParkedOperations())
    /// Set when the engine stops: from then on nothing waits.
    private let stopped = Atomic<Bool>(false)

    /// `submit` runs work on the engine thread.
    public init(submit: @escaping @Sendable (@escaping @Sendable (Stack) -> Void) -> Void) {
        submitWork = submit
    }

    /// Runs `operation` with the stack on the engine thread and returns its result.
    public func perform<R: Sendable>(_ operation: @escaping @Sendable (Stack) -> R) async -> R {
        await withCheckedContinuation { continuation in
            submitWork { stack in continuation.resume(returning: operation(stack)) }
        }
    }

    /// Runs `operation` on the engine thread without waiting for it.
    public func submit(_ operation: @escaping @Sendable (Stack) -> Void) {
        submitWork(operation)
    }

    /// Tries `attempt` on the engine thread now and, while it returns nil,
    /// again after each event of `socket`; then calls `completion` with its
    /// value, on the engine thread. If the wait is cancelled (`cancelWaits`),
    /// `completion` gets nil.
    public func park<R: Sendable>(on socket: SocketID, _ attempt: @escaping @Sendable (Stack) -> R?,
                                  then completion: @escaping @Sendable (R?) -> Void) {
        submitWork { [self] stack in
            let operations = parked.value
            // Behind operations already waiting on this socket, to keep order.
            if !operations.isWaiting(on: socket), let value = attempt(stack) {
                completion(value)
                return
            }
            if self.stopped.load(ordering: .acquiring) {
                completion(nil)
                return
            }
            operations.append(socket, ParkedOperation(
                attempt: { stack in attempt(stack).map { value in { completion(value) } } },
                cancel: { completion(nil) }))
        }
    }

    /// Ends every wait on `socket`: their completions get nil.
    public func cancelWaits(on socket: SocketID) {
        submitWork { [parked] _ in
            for operation in parked.value.remove(socket) { operation.cancel() }
        }
    }

    /// Ends every wait of every socket (the engine is stopping). Engine thread only.
    public func cancelAllWaits() {
        stopped.store(true, ordering: .releasing)
        for operation in parked.value.removeAll() { operation.cancel() }
    }

    /// Retries the waits of every socket with an event. The engine calls this
    /// on its thread after each iteration.
    public func deliverEvents(_ stack: Stack) {
        let operations = parked.value
        while stack.hasSocketEvents {
            for socket in stack.takeSocketEvents() where operations.isWaiting(on: socket) {
                operations.retry(socket, stack)
            }
        }
    }

    /// Operations waiting, for tests and queries.
    public func waitingCount(_ stack: Stack) -> Int { parked.value.count }
}

/// One waiting operation: `attempt` returns the completion to run once it can.
private struct ParkedOperation {
    var attempt: (Stack) -> (() -> Void)?
    var cancel: () -> Void
}

/// Waiting operations by socket, in order. Engine thread only.
private final class ParkedOperations {
    private var waiting: [SocketID: [ParkedOperation]] = [:]

    var count: Int { waiting.values.reduce(0) { $0 + $1.count } }

    func isWaiting(on socket: SocketID) -> Bool { waiting[socket] != nil }

    func append(_ socket: SocketID, _ operation: ParkedOperation) {
        waiting[socket, default: []].append(operation)
    }

    func remove(_ socket: SocketID) -> [ParkedOperation] {
        waiting.removeValue(forKey: socket) ?? []
    }

    func removeAll() -> [ParkedOperation] {
        defer { waiting.removeAll() }
        return waiting.values.flatMap { $0 }
    }

    /// Completes waiting operations of `socket` in order, up to the first
    /// that still cannot complete.
    func retry(_ socket: SocketID, _ stack: Stack) {
        guard var queue = waiting.removeValue(forKey: socket) else { return }
        var completed = 0
        for operation in queue {
            guard let complete = operation.attempt(stack) else { break }
            completed += 1
            complete()
        }
        queue.removeFirst(completed)
        // A completion may have parked more on the same socket meanwhile.
        if let added = waiting.removeValue(forKey: socket) { queue += added }
        if !queue.isEmpty { waiting[socket] = queue }
    }
}

/// A value confined to the engine thread. The box is `@unchecked Sendable`
/// because its users only reach `value` from work running on that one thread
/// (submitted work and `deliverEvents`); no other thread ever touches it.
final class EngineConfined<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
