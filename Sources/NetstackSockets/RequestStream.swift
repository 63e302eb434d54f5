import DequeModule
import Synchronization

/// A socket's request stream: what its handles send and its worker takes, in
/// order. Made for the one consumer it has (the socket's worker) and the few
/// producers (the handle and its clones): a lock, a queue and one waiting
/// continuation, where `AsyncStream` plus a forwarding task per merged stream
/// cost an allocation, generic lookups and a task switch per request.
///
/// A stream merged into a worker (`ControlFlow.merge`) hands its queue to the
/// worker's and forwards what comes later, so requests of every stream reach
/// one queue, each stream's in its order.
public struct RequestStream<Request: Sendable>: Sendable {
    let inbox: RequestInbox<Request>

    /// A new stream and the one continuation that sends into it.
    public static func makeStream() -> (stream: RequestStream, continuation: Continuation) {
        let inbox = RequestInbox<Request>()
        return (RequestStream(inbox: inbox), Continuation(inbox: inbox, id: RequestStreamIDs.next()))
    }

    /// The sending end of one stream. `finish` ends it; requests sent after
    /// that, or after the worker has gone, are refused (dropped, so that their
    /// replies answer "closed").
    public struct Continuation: Sendable {
        let inbox: RequestInbox<Request>
        let id: Int

        @discardableResult
        public func yield(_ request: Request) -> Bool {
            inbox.deliver(.request(stream: id, request))
        }

        public func finish() {
            _ = inbox.deliver(.ended(stream: id))
        }
    }
}

/// Stream numbers, unique in the process (streams of several inboxes meet
/// in one after a merge).
enum RequestStreamIDs {
    private static let counter = Atomic<Int>(0)
    static func next() -> Int { counter.wrappingAdd(1, ordering: .relaxed).newValue }
}

/// What a worker takes from its inbox.
enum InboxEntry<Request: Sendable>: Sendable {
    case request(stream: Int, Request)
    case ended(stream: Int)
}

/// The queue behind one or more streams.
final class RequestInbox<Request: Sendable>: Sendable {
    private struct State: ~Copyable {
        var queue = Deque<InboxEntry<Request>>()
        var waiter: UnsafeContinuation<InboxEntry<Request>?, Never>?
        /// Set once merged: everything goes there.
        var redirect: RequestInbox<Request>?
        /// The worker has gone: nothing is accepted.
        var closed = false
        /// Streams that ended here (their later requests are refused).
        var ended: Set<Int> = []
    }

    private let state = Mutex(State())

    /// Queues `entry` (or hands it to the waiting worker); false when refused.
    func deliver(_ entry: InboxEntry<Request>) -> Bool {
        let outcome = state.withLock { state -> Outcome in
            switch entry {
            case .ended(let stream):
                guard state.ended.insert(stream).inserted else { return .refused }
            case .request(let stream, _):
                guard !state.ended.contains(stream) else { return .refused }
            }
            if let target = state.redirect { return .forward(target) }
            return Self.accept(entry, &state)
        }
        switch outcome {
        case .refused:
            return false
        case .queued:
            return true
        case .forward(let target):
            // Checked here; the worker's inbox only queues it.
            let forwarded = target.state.withLock { Self.accept(entry, &$0) }
            return target.finish(forwarded, entry)
        case .resume(let waiter):
            waiter.resume(returning: entry)
            return true
        }
    }

    private enum Outcome {
        case refused, queued
        case forward(RequestInbox<Request>)
        case resume(UnsafeContinuation<InboxEntry<Request>?, Never>)
    }

    /// Queues an entry, or hands it over when the worker waits. Under the lock.
    private static func accept(_ entry: InboxEntry<Request>, _ state: inout State) -> Outcome {
        if state.closed { return .refused }
        if let waiter = state.waiter {
            state.waiter = nil
            return .resume(waiter)
        }
        state.queue.append(entry)
        return .queued
    }

    /// After `accept`, outside the lock: resumes the worker if it waited.
    private func finish(_ outcome: Outcome, _ entry: InboxEntry<Request>) -> Bool {
        switch outcome {
        case .refused, .forward: return false
        case .queued: return true
        case .resume(let waiter):
            waiter.resume(returning: entry)
            return true
        }
    }

    /// The next entry, waiting for one; nil once closed.
    func next() async -> InboxEntry<Request>? {
        await withUnsafeContinuation { continuation in
            let ready: InboxEntry<Request>?? = state.withLock { state in
                if let entry = state.queue.popFirst() { return entry }
                if state.closed { return .some(nil) }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Takes over `other`'s queue; from now on what is sent to it comes here.
    /// Called by the worker itself (so it is not waiting meanwhile).
    func absorb(_ other: RequestInbox<Request>) {
        // Both locks, the merged stream's first (a worker's own inbox is
        // never merged away), so nothing sent meanwhile overtakes the queue.
        other.state.withLock { merged in
            merged.redirect = self
            let moved = merged.queue
            merged.queue.removeAll()
            state.withLock { state in
                if !state.closed { state.queue.append(contentsOf: moved) }
            }
        }
    }

    /// The worker has gone: refuse everything from now on and drop what is
    /// queued (each request's reply then answers "closed").
    func close() {
        let dropped = state.withLock { state -> Deque<InboxEntry<Request>> in
            state.closed = true
            defer { state.queue.removeAll() }
            return state.queue
        }
        _ = consume dropped
    }
}
