import Glibc
import NetstackCore
import Synchronization

/// The engine's side of sockets: runs socket operations on the engine thread,
/// one hop per operation, and keeps the operations that must wait (receive
/// with nothing queued, accept with nobody connecting, ...) until their
/// socket reports an event.
///
/// A parked operation is an `attempt` (returns nil while it cannot complete)
/// and a `completion`. Each socket has lanes (receiving, sending, accepting,
/// connecting): attempts in one lane are retried in the order they were
/// parked, and a retry stops at the first that still cannot complete, so
/// waiting operations of a kind complete in order, while a receive that waits
/// does not hold up a send.
public final class SocketRuntime: Sendable {
    private let submitWork: @Sendable (@escaping @Sendable (Stack) -> Void) -> Void
    /// Touched only on the engine thread (inside submitted work and
    /// `deliverEvents`), which is what makes the unchecked box safe.
    private let parked = EngineConfined(ParkedOperations())
    /// Set when the engine stops: from then on nothing waits.
    private let stopped = Atomic<Bool>(false)
    /// Sockets joined to descriptors (nil without a poller). Engine thread only.
    private let bridges: EngineConfined<StreamBridges>?
    /// Descriptors that tasks wait on (nil without a poller). Engine thread only.
    private let reactor: EngineConfined<DescriptorReactor>?

    /// Where socket workers run: the engine's own executor, or (nil) the
    /// global one.
    public let executor: EngineExecutor?

    /// `submit` runs work on the engine thread.
    public init(submit: @escaping @Sendable (@escaping @Sendable (Stack) -> Void) -> Void,
                executor: EngineExecutor? = nil, poller: Int32? = nil) {
        submitWork = submit
        self.executor = executor
        bridges = poller.map { EngineConfined(StreamBridges(poller: $0)) }
        reactor = poller.map { EngineConfined(DescriptorReactor(poller: $0)) }
    }

    // MARK: Descriptors for tasks

    /// Watches `descriptor` (made non-blocking) for the waits below; `hangup`
    /// runs once (on the engine thread) when its peer goes away. False when
    /// it cannot be watched (no poller, or epoll refused it).
    public func watch(_ descriptor: Int32, hangup: (@Sendable () -> Void)? = nil) async -> Bool {
        guard let reactor else { return false }
        return await perform { _ in reactor.value.watch(descriptor, hangup: hangup) }
    }

    /// Stops watching (before the descriptor is closed or handed on).
    public func unwatch(_ descriptor: Int32) async {
        guard let reactor else { return }
        await perform { _ in reactor.value.unwatch(descriptor) }
    }

    /// Waits until `descriptor` may be read again (a read said EAGAIN);
    /// false when it is not watched (any more).
    public func waitReadable(_ descriptor: Int32) async -> Bool {
        guard let reactor else { return false }
        return await withCheckedContinuation { continuation in
            submitWork { _ in reactor.value.waitReadable(descriptor, continuation) }
        }
    }

    /// Waits until `descriptor` may be written again (a write said EAGAIN);
    /// false when it is not watched (any more).
    public func waitWritable(_ descriptor: Int32) async -> Bool {
        guard let reactor else { return false }
        return await withCheckedContinuation { continuation in
            submitWork { _ in reactor.value.waitWritable(descriptor, continuation) }
        }
    }

    /// Joins a connected TCP socket to `descriptor` (a stream descriptor
    /// that is now the engine's to close): the bytes of one flow to the
    /// other, each end of stream passed on, until both have ended or one side
    /// failed; then the descriptor is closed and `onEnd` says how it went
    /// (on the engine thread). The socket itself stays open for its owner.
    /// `resetOnClose`: see `setBridgeResetOnClose`.
    public func bridge<I: IPVersion>(_ version: I.Type, _ socket: SocketID, descriptor: Int32, resetOnClose: Bool = false,
                                     onEnd: @escaping @Sendable (BridgeEnd) -> Void) {
        join(descriptor, onEnd: onEnd) {
            $0.add(I.self, socket, descriptor: descriptor, onEnd: onEnd)
            if resetOnClose { $0.setResetOnClose(socket, true) }
        }
    }

    /// Whether the program closing its end of `socket`'s bridge (if it has
    /// one) ends the bridge as a failure, so that its owner resets the
    /// connection: SO_LINGER on with a zero time.
    public func setBridgeResetOnClose(_ socket: SocketID, _ on: Bool) {
        guard let bridges else { return }
        submitWork { stack in
            bridges.value.setResetOnClose(socket, on)
            bridges.value.pump(stack)
        }
    }

    /// Joins a UDP socket to `descriptor`: datagrams travel as frames
    /// (`DatagramFrames`), until the program closes it or it fails.
    /// `companion`: an IPv4 socket on the same port, for an IPv6 one that
    /// takes both versions (frames with IPv4 endpoints go through it).
    public func bridgeDatagrams<I: IPVersion>(_ version: I.Type, _ socket: SocketID, descriptor: Int32,
                                              companion: SocketID? = nil,
                                              onEnd: @escaping @Sendable (BridgeEnd) -> Void) {
        join(descriptor, onEnd: onEnd) {
            $0.addDatagrams(I.self, socket, descriptor: descriptor, companion: companion, onEnd: onEnd)
        }
    }

    /// Adds a bridge on the engine thread (`add`) and pumps it; without
    /// bridges, or once the engine has stopped, the descriptor is closed and
    /// `onEnd` says so.
    private func join(_ descriptor: Int32, onEnd: @escaping @Sendable (BridgeEnd) -> Void,
                      _ add: @escaping @Sendable (StreamBridges) -> Void) {
        guard let bridges else {
            close(descriptor)
            onEnd(.failed(nil))
            return
        }
        submitWork { stack in
            if self.stopped.load(ordering: .acquiring) {
                close(descriptor)
                onEnd(.failed(.closed))
                return
            }
            add(bridges.value)
            bridges.value.pump(stack)
        }
    }

    /// The poller reported a bridged or watched descriptor. Engine thread only.
    func descriptorReady(tag: UInt64, events: UInt32) {
        if tag >= DescriptorReactor.firstTag {
            reactor?.value.ready(tag: tag, events: events)
        } else {
            bridges?.value.ready(tag: tag, events: events)
        }
    }

    /// Bridged sockets now. Engine thread only.
    var bridgeCount: Int { bridges?.value.count ?? 0 }

    /// Starts `body` as a task of its own, on the engine's executor when
    /// there is one (socket workers: their hops are then function calls).
    public func spawn(_ body: sending @escaping @isolated(any) () async -> Void) {
        if let executor {
            Task(executorPreference: executor, operation: body)
        } else {
            Task(operation: body)
        }
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
    public func park<R: Sendable>(on socket: SocketID, lane: WaitLane = .receive,
                                  _ attempt: @escaping @Sendable (Stack) -> R?,
                                  then completion: @escaping @Sendable (R?) -> Void) {
        let key = WaitKey(socket: socket, lane: lane)
        submitWork { [self] stack in
            let operations = parked.value
            // Behind operations already waiting in this lane, to keep order.
            if !operations.isWaiting(on: key), let value = attempt(stack) {
                completion(value)
                return
            }
            if self.stopped.load(ordering: .acquiring) {
                completion(nil)
                return
            }
            operations.append(key, ParkedOperation(
                attempt: { stack in attempt(stack).map { value in { completion(value) } } },
                cancel: { completion(nil) }))
        }
    }

    /// Ends every wait on `socket`: their completions get nil.
    public func cancelWaits(on socket: SocketID) {
        submitWork { [parked] _ in
            for lane in WaitLane.allCases {
                for operation in parked.value.remove(WaitKey(socket: socket, lane: lane)) { operation.cancel() }
            }
        }
    }

    /// Ends every wait of every socket (the engine is stopping). Engine thread only.
    public func cancelAllWaits() {
        stopped.store(true, ordering: .releasing)
        for operation in parked.value.removeAll() { operation.cancel() }
        bridges?.value.closeAll()
        reactor?.value.closeAll()
    }

    /// Retries the waits of every socket with an event. The engine calls this
    /// on its thread after each iteration.
    public func deliverEvents(_ stack: Stack) {
        let operations = parked.value
        let bridges = bridges?.value
        repeat {
            while stack.hasSocketEvents {
                for socket in stack.takeSocketEvents() {
                    for lane in WaitLane.allCases where operations.isWaiting(on: WaitKey(socket: socket, lane: lane)) {
                        operations.retry(WaitKey(socket: socket, lane: lane), stack)
                    }
                    bridges?.socketEvent(socket)
                }
            }
            // Moving bytes may raise more events (room made, data queued).
            bridges?.pump(stack)
        } while stack.hasSocketEvents
    }

    /// Operations waiting, for tests and queries.
    public func waitingCount(_ stack: Stack) -> Int { parked.value.count }
}

/// One waiting operation: `attempt` returns the completion to run once it can.
private struct ParkedOperation {
    var attempt: (Stack) -> (() -> Void)?
    var cancel: () -> Void
}

/// What a parked operation waits for; each lane keeps its own order.
public enum WaitLane: Sendable, CaseIterable {
    case receive
    case send
    case accept
    case connect
}

private struct WaitKey: Hashable {
    var socket: SocketID
    var lane: WaitLane
}

/// Waiting operations by socket and lane, in order. Engine thread only.
private final class ParkedOperations {
    private var waiting: [WaitKey: [ParkedOperation]] = [:]

    var count: Int { waiting.values.reduce(0) { $0 + $1.count } }

    func isWaiting(on key: WaitKey) -> Bool { waiting[key] != nil }

    func append(_ key: WaitKey, _ operation: ParkedOperation) {
        waiting[key, default: []].append(operation)
    }

    func remove(_ key: WaitKey) -> [ParkedOperation] {
        waiting.removeValue(forKey: key) ?? []
    }

    func removeAll() -> [ParkedOperation] {
        defer { waiting.removeAll() }
        return waiting.values.flatMap { $0 }
    }

    /// Completes waiting operations of one lane in order, up to the first
    /// that still cannot complete.
    func retry(_ key: WaitKey, _ stack: Stack) {
        guard var queue = waiting.removeValue(forKey: key) else { return }
        var completed = 0
        for operation in queue {
            guard let complete = operation.attempt(stack) else { break }
            completed += 1
            complete()
        }
        queue.removeFirst(completed)
        // A completion may have parked more in the same lane meanwhile.
        if let added = waiting.removeValue(forKey: key) { queue += added }
        if !queue.isEmpty { waiting[key] = queue }
    }
}

/// A value confined to the engine thread. The box is `@unchecked Sendable`
/// because its users only reach `value` from work running on that one thread
/// (submitted work and `deliverEvents`); no other thread ever touches it.
final class EngineConfined<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
