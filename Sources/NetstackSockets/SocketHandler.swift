/// What a socket's worker does with each request (Netstack3's
/// `SocketWorkerHandler`): handle it completely, then say how to go on.
///
/// A handler holds one socket's binding-side state. Its worker calls `handle`
/// for one request at a time, never concurrently, in the order each stream
/// delivered them, and `close` exactly once, after the last.
public protocol SocketHandler {
    associatedtype Request: Sendable

    /// Handles one request completely. Operations that must wait for the
    /// network (a receive with nothing queued) are parked in the engine in
    /// request order and reply when they complete; the handler returns at once,
    /// so one client's wait does not hold up the others.
    nonisolated(nonsending) mutating func handle(_ request: Request) async -> ControlFlow<Request>

    /// Releases everything the socket holds in the core. Called once, after
    /// every stream has ended; its child tasks end before it returns.
    nonisolated(nonsending) consuming func close() async
}

/// How a worker goes on after a request.
public enum ControlFlow<Request: Sendable>: Sendable {
    /// Go on with the next request.
    case proceed
    /// Go on, and also serve requests from this new stream (a clone).
    case merge(RequestStream<Request>)
    /// This stream is done (the client sent close); the socket closes when
    /// it was the last one.
    case closeStream
}

/// Serves one socket: waits on its request streams, merged, and hands each
/// request to the handler, one at a time. When every stream has ended or
/// asked to close, it closes the handler and returns. Streams that merge in
/// later (clones) are served the same way.
///
/// A worker is `Sendable` when its handler is, so each socket-specific type
/// can spawn it as a task of its own and the compiler checks that it may.
public struct SocketWorker<Handler: SocketHandler> {
    private var handler: Handler
    private let requests: RequestStream<Handler.Request>

    public init(handler: Handler, requests: RequestStream<Handler.Request>) {
        self.handler = handler
        self.requests = requests
    }

    /// Serves until the socket closes.
    public consuming func run() async {
        var handler = self.handler
        let inbox = requests.inbox
        var live = 1
        var closed = Set<Int>()
        while live > 0, let entry = await inbox.next() {
            switch entry {
            case .request(let stream, let request):
                // A stream that asked to close gets nothing more handled;
                // whatever it still sends is dropped (and so replied to with
                // "closed" by the requests' own reply handles).
                guard !closed.contains(stream) else { continue }
                switch await handler.handle(request) {
                case .proceed:
                    break
                case .merge(let stream):
                    inbox.absorb(stream.inbox)
                    live += 1
                case .closeStream:
                    closed.insert(stream)
                    live -= 1
                }
            case .ended(let stream):
                if closed.insert(stream).inserted { live -= 1 }
            }
        }
        inbox.close()
        await handler.close()
    }
}

extension SocketWorker: Sendable where Handler: Sendable {}
