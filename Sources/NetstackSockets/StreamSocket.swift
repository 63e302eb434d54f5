import NetstackCore
import NetstackIO
import NetstackWire
import Synchronization

/// Serves one TCP socket for its worker. Requests that must wait (accept,
/// connect, a send into a full buffer, a receive with nothing there) are
/// parked in the engine, each kind in its own lane, and answered when they
/// complete; the worker goes on with the next request meanwhile.
public struct StreamSocketHandler<I: IPVersion>: SocketHandler, Sendable {
    public enum Request: Sendable {
        case bind(Endpoint<I>, Reply<Endpoint<I>>)
        case listen(backlog: Int, Reply<Void>)
        /// The next connection; with its endpoints (read in the same hop)
        /// when `endpoints` is set.
        case accept(endpoints: Bool, Reply<AcceptedConnection<I>>)
        case connect(Endpoint<I>, Reply<Void>)
        /// Queues all the bytes, waiting for buffer space as needed.
        case send([UInt8], Reply<Int>)
        /// Up to `maximum` bytes, waiting until there are some; empty at the end.
        case receive(maximum: Int, Reply<[UInt8]>)
        case shutdown(read: Bool, write: Bool, Reply<Void>)
        case setNoDelay(Bool, Reply<Void>)
        case setKeepalive(Bool, Reply<Void>)
        case setKeepaliveTiming(idle: Duration?, interval: Duration?, probes: Int?, Reply<Void>)
        case setUserTimeout(Duration?, Reply<Void>)
        case setBufferSizes(send: Int?, receive: Int?, Reply<Void>)
        case localEndpoint(Reply<Endpoint<I>?>)
        case remoteEndpoint(Reply<Endpoint<I>?>)
        case clone(Reply<StreamSocket<I>>)
        /// Ends this stream; the last one closes the socket (gracefully).
        case close(Reply<Void>)
        /// Resets the connection at once.
        case abort(Reply<Void>)
        /// Joins the connection to a stream descriptor (the engine moves the
        /// bytes; see `SocketRuntime.bridge`).
        case bridge(descriptor: Int32, onEnd: @Sendable (BridgeEnd) -> Void, Reply<Void>)
        /// SO_LINGER on with a zero time: once bridged, the program's end of
        /// the descriptor closing resets the connection instead of sending FIN.
        case setResetOnClose(Bool, Reply<Void>)
    }

    let runtime: SocketRuntime
    public let id: SocketID
    /// Set by `abort`, so that `close` does not also try a graceful close.
    private let aborted = AbortFlag()
    /// `setResetOnClose`, for a bridge made after it.
    private var resetOnClose = false

    init(runtime: SocketRuntime, id: SocketID) {
        self.runtime = runtime
        self.id = id
    }

    public mutating func handle(_ request: Request) async -> ControlFlow<Request> {
        let id = id
        let runtime = runtime
        switch request {
        case .bind(let local, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in
                    try stack.tcpBind(I.self, id, to: local)
                    return try stack.tcpLocalEndpoint(I.self, id) ?? local
                }
            })
        case .listen(let backlog, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.tcpListen(I.self, id, backlog: backlog) }
            })
        case .accept(let endpoints, let reply):
            runtime.park(on: id, lane: .accept, { stack -> Result<(SocketID, Endpoint<I>?, Endpoint<I>?), SocketError>? in
                do throws(SocketError) {
                    guard let child = try stack.tcpAccept(I.self, id) else { return nil }
                    guard endpoints else { return .success((child, nil, nil)) }
                    return .success((child, try? stack.tcpLocalEndpoint(I.self, child),
                                     try? stack.tcpRemoteEndpoint(I.self, child)))
                } catch {
                    return .failure(error)
                }
            }, then: { result in
                switch result {
                case .success(let (child, local, remote))?:
                    // The accepted connection gets a worker of its own.
                    reply.succeed(AcceptedConnection(socket: StreamSocket<I>.serve(child, runtime),
                                                     local: local, remote: remote))
                case .failure(let error)?:
                    reply.fail(error)
                case nil:
                    reply.fail(.closed)
                }
            })
        case .connect(let remote, let reply):
            let started = await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.tcpConnect(I.self, id, to: remote) }
            }
            guard case .success = started else {
                reply.send(started)
                return .proceed
            }
            runtime.park(on: id, lane: .connect, { stack -> Result<Void, SocketError>? in
                switch stack.tcpConnectStatus(I.self, id) {
                case .inProgress: nil
                case .established: .success(())
                case .failed(let error): .failure(error)
                }
            }, then: { reply.send($0 ?? .failure(.closed)) })
        case .send(let bytes, let reply):
            let progress = SendProgress()
            runtime.park(on: id, lane: .send, { stack -> Result<Int, SocketError>? in
                do throws(SocketError) {
                    while progress.offset < bytes.count {
                        let accepted = try bytes.withSpan { span throws(SocketError) in
                            try stack.tcpSend(I.self, id, span.extracting(progress.offset...))
                        }
                        if accepted == 0 { return nil }
                        progress.offset += accepted
                    }
                    return .success(bytes.count)
                } catch {
                    return .failure(error)
                }
            }, then: { reply.send($0 ?? .failure(.closed)) })
        case .receive(let maximum, let reply):
            let limit = max(1, min(maximum, 1 << 20))
            runtime.park(on: id, lane: .receive, { stack -> Result<[UInt8], SocketError>? in
                // Everything readable (up to the limit) in one hop, copied
                // once, into memory that is not zeroed first.
                var result: Result<Int?, SocketError> = .success(nil)
                let buffer = [UInt8](unsafeUninitializedCapacity: min(limit, max(stack.tcpReadable(I.self, id), 1))) {
                    bytes, count in
                    result = Result { () throws(SocketError) in
                        try stack.tcpReceive(I.self, id, into: UnsafeMutableRawBufferPointer(bytes))
                    }
                    if case .success(let received?) = result { count = received }
                }
                switch result {
                case .success(.some): return .success(buffer)
                case .success(nil): return nil
                case .failure(let error): return .failure(error)
                }
            }, then: { reply.send($0 ?? .failure(.closed)) })
        case .shutdown(let read, let write, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.tcpShutdown(I.self, id, read: read, write: write) }
            })
        case .setNoDelay(let on, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.tcpSetNoDelay(I.self, id, on) }
            })
        case .setKeepalive(let on, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.tcpSetKeepalive(I.self, id, on) }
            })
        case .setKeepaliveTiming(let idle, let interval, let probes, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in
                    try stack.tcpSetKeepaliveTiming(I.self, id, idle: idle, interval: interval, probes: probes)
                }
            })
        case .setUserTimeout(let timeout, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.tcpSetUserTimeout(I.self, id, timeout) }
            })
        case .setBufferSizes(let send, let receive, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in
                    try stack.tcpSetBufferSizes(I.self, id, send: send, receive: receive)
                }
            })
        case .localEndpoint(let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.tcpLocalEndpoint(I.self, id) }
            })
        case .remoteEndpoint(let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.tcpRemoteEndpoint(I.self, id) }
            })
        case .clone(let reply):
            let (stream, continuation) = RequestStream<Request>.makeStream()
            reply.succeed(StreamSocket(requests: continuation))
            return .merge(stream)
        case .close(let reply):
            reply.succeed()
            return .closeStream
        case .bridge(let descriptor, let onEnd, let reply):
            runtime.bridge(I.self, id, descriptor: descriptor, resetOnClose: resetOnClose, onEnd: onEnd)
            reply.succeed()
        case .setResetOnClose(let on, let reply):
            resetOnClose = on
            runtime.setBridgeResetOnClose(id, on)
            reply.succeed()
        case .abort(let reply):
            aborted.set()
            runtime.cancelWaits(on: id)
            await runtime.perform { stack in stack.tcpAbort(I.self, id) }
            reply.succeed()
        }
        return .proceed
    }

    public consuming func close() async {
        let id = id
        runtime.cancelWaits(on: id)
        guard !aborted.isSet else { return }
        await runtime.perform { stack in stack.tcpClose(I.self, id) }
    }
}

/// How far a parked send has got (touched only on the engine thread).
private final class SendProgress: @unchecked Sendable {
    // @unchecked: the attempt closure that uses it runs only on the engine thread.
    var offset = 0
}

/// An accepted connection and its endpoints (nil when not asked for).
public struct AcceptedConnection<I: IPVersion>: Sendable {
    public let socket: StreamSocket<I>
    public let local: Endpoint<I>?
    public let remote: Endpoint<I>?
}

private final class AbortFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}

/// A TCP socket inside the stack, for code in the same process. Each value is
/// one request stream of the socket's worker; `clone()` makes another, and the
/// socket closes when every stream is closed or dropped.
public final class StreamSocket<I: IPVersion>: Sendable {
    typealias Request = StreamSocketHandler<I>.Request
    private let requests: RequestStream<Request>.Continuation

    init(requests: RequestStream<Request>.Continuation) {
        self.requests = requests
    }

    deinit {
        requests.finish()
    }

    /// Opens an unbound socket, served by a worker task of its own.
    public static func open(_ runtime: SocketRuntime) async -> StreamSocket<I> {
        let id = await runtime.perform { stack in stack.tcpOpen(I.self) }
        return serve(id, runtime)
    }

    /// Starts a worker for the core socket `id` (new, or just accepted).
    /// Spawned here, where the compiler sees the concrete worker is Sendable.
    static func serve(_ id: SocketID, _ runtime: SocketRuntime) -> StreamSocket<I> {
        let (stream, continuation) = RequestStream<Request>.makeStream()
        let worker = SocketWorker(handler: StreamSocketHandler<I>(runtime: runtime, id: id), requests: stream)
        runtime.spawn { await worker.run() }
        return StreamSocket(requests: continuation)
    }

    private func ask<Success: Sendable>(_ make: (Reply<Success>) -> Request) async throws(SocketError) -> Success {
        try await Reply<Success>.ask { reply in
            requests.yield(make(reply))
        }
    }

    @discardableResult
    public func bind(_ local: Endpoint<I>) async throws(SocketError) -> Endpoint<I> {
        try await ask { .bind(local, $0) }
    }

    public func listen(backlog: Int = 4096) async throws(SocketError) {
        try await ask { .listen(backlog: backlog, $0) }
    }

    /// Waits for the next connection; it comes with a worker of its own.
    public func accept() async throws(SocketError) -> StreamSocket<I> {
        try await ask { .accept(endpoints: false, $0) }.socket
    }

    /// `accept`, with the connection's local and remote endpoints, read in
    /// the same trip to the engine (an accept loop that needs them saves two).
    public func acceptWithEndpoints() async throws(SocketError) -> AcceptedConnection<I> {
        try await ask { .accept(endpoints: true, $0) }
    }

    /// Opens a connection and waits for the handshake (refused, timed out
    /// and unreachable are the errors).
    public func connect(_ remote: Endpoint<I>) async throws(SocketError) {
        try await ask { .connect(remote, $0) }
    }

    /// Queues all of `bytes`, waiting for buffer space as needed.
    @discardableResult
    public func send(_ bytes: [UInt8]) async throws(SocketError) -> Int {
        try await ask { .send(bytes, $0) }
    }

    /// Waits for data; an empty array means the peer finished sending.
    public func receive(maximum: Int = 1 << 20) async throws(SocketError) -> [UInt8] {
        try await ask { .receive(maximum: maximum, $0) }
    }

    public func shutdown(read: Bool = false, write: Bool = true) async throws(SocketError) {
        try await ask { .shutdown(read: read, write: write, $0) }
    }

    public func setNoDelay(_ on: Bool) async throws(SocketError) { try await ask { .setNoDelay(on, $0) } }
    public func setKeepalive(_ on: Bool) async throws(SocketError) { try await ask { .setKeepalive(on, $0) } }
    /// TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT; nil leaves a value as it is.
    public func setKeepaliveTiming(idle: Duration? = nil, interval: Duration? = nil,
                                   probes: Int? = nil) async throws(SocketError) {
        try await ask { .setKeepaliveTiming(idle: idle, interval: interval, probes: probes, $0) }
    }
    public func setUserTimeout(_ timeout: Duration?) async throws(SocketError) {
        try await ask { .setUserTimeout(timeout, $0) }
    }
    public func setBufferSizes(send: Int? = nil, receive: Int? = nil) async throws(SocketError) {
        try await ask { .setBufferSizes(send: send, receive: receive, $0) }
    }

    public func localEndpoint() async throws(SocketError) -> Endpoint<I>? { try await ask { .localEndpoint($0) } }
    public func remoteEndpoint() async throws(SocketError) -> Endpoint<I>? { try await ask { .remoteEndpoint($0) } }

    public func clone() async throws(SocketError) -> StreamSocket<I> { try await ask { .clone($0) } }

    /// Ends this handle's stream; the socket closes (gracefully) when it was the last.
    public func close() async {
        _ = try? await ask { .close($0) } as Void
        requests.finish()
    }

    /// Hands the connection's bytes to `descriptor` (a connected stream
    /// descriptor, which the engine now owns and closes): what is read from
    /// it is sent, what arrives is written to it, ends of stream pass both
    /// ways. `onEnd` runs on the engine thread once both have ended or one
    /// side failed; the socket itself stays for this handle to close.
    public func bridge(to descriptor: Int32, onEnd: @escaping @Sendable (BridgeEnd) -> Void) async throws(SocketError) {
        try await ask { .bridge(descriptor: descriptor, onEnd: onEnd, $0) }
    }

    /// SO_LINGER on with a zero time (`on`), or off: whether the program's
    /// end of the bridge closing resets the connection (RST, RFC 9293
    /// §3.10.5's ABORT) rather than closing it (FIN).
    public func setResetOnClose(_ on: Bool) async throws(SocketError) { try await ask { .setResetOnClose(on, $0) } }

    /// Resets the connection (RST) and ends this handle.
    public func abort() async {
        _ = try? await ask { .abort($0) } as Void
        requests.finish()
    }
}
