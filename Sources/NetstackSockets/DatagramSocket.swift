import NetstackCore
import NetstackIO
import NetstackWire

/// A received datagram: its bytes and where it came from.
public struct Datagram<I: IPVersion>: Sendable, Hashable {
    public var payload: [UInt8]
    public var source: Endpoint<I>
    /// Which of our addresses it was sent to.
    public var destination: I.Address
}

/// Serves one UDP socket for its worker: each request becomes one operation
/// on the engine thread. Receives with nothing queued are parked there and
/// answered, in order, as datagrams arrive.
public struct DatagramSocketHandler<I: IPVersion>: SocketHandler, Sendable {
    public enum Request: Sendable {
        case bind(Endpoint<I>, Reply<Endpoint<I>>)
        case connect(Endpoint<I>, Reply<Void>)
        case send([UInt8], to: Endpoint<I>?, Reply<Int>)
        case receive(Reply<Datagram<I>>)
        case localEndpoint(Reply<Endpoint<I>?>)
        case remoteEndpoint(Reply<Endpoint<I>?>)
        case setReceiveBufferSize(Int, Reply<Void>)
        case setReuseAddress(Bool, Reply<Void>)
        case clone(Reply<DatagramSocket<I>>)
        case close(Reply<Void>)
        /// Joins the socket (and an IPv4 companion for an IPv6 socket that
        /// takes both versions) to a descriptor that carries its datagrams as
        /// frames (`SocketRuntime.bridgeDatagrams`).
        case bridge(descriptor: Int32, companion: SocketID?, onEnd: @Sendable (BridgeEnd) -> Void, Reply<Void>)
    }

    let runtime: SocketRuntime
    public let id: SocketID

    nonisolated(nonsending) public mutating func handle(_ request: Request) async -> ControlFlow<Request> {
        let id = id
        switch request {
        case .bind(let local, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in
                    try stack.udpBind(I.self, id, to: local)
                    return try stack.udpLocalEndpoint(I.self, id) ?? local
                }
            })
        case .connect(let remote, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.udpConnect(I.self, id, to: remote) }
            })
        case .send(let payload, let destination, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in
                    try stack.udpSend(I.self, id, to: destination, payload: payload.span.bytes)
                }
            })
        case .receive(let reply):
            runtime.park(on: id, { stack -> Result<Datagram<I>, SocketError>? in
                do throws(SocketError) {
                    return try stack.udpReceive(I.self, id) { metadata, payload in
                        .success(Datagram(payload: payload.array, source: metadata.source,
                                          destination: metadata.destination))
                    }
                } catch {
                    return .failure(error)
                }
            }, then: { result in reply.send(result ?? .failure(.closed)) })
        case .localEndpoint(let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.udpLocalEndpoint(I.self, id) }
            })
        case .remoteEndpoint(let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.udpRemoteEndpoint(I.self, id) }
            })
        case .setReceiveBufferSize(let size, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.udpSetReceiveBufferSize(I.self, id, size) }
            })
        case .setReuseAddress(let on, let reply):
            reply.send(await runtime.perform { stack in
                Result { () throws(SocketError) in try stack.udpSetReuseAddress(I.self, id, on) }
            })
        case .clone(let reply):
            let (stream, continuation) = RequestStream<Request>.makeStream()
            reply.succeed(DatagramSocket(requests: continuation, id: id))
            return .merge(stream)
        case .close(let reply):
            reply.succeed()
            return .closeStream
        case .bridge(let descriptor, let companion, let onEnd, let reply):
            runtime.bridgeDatagrams(I.self, id, descriptor: descriptor, companion: companion, onEnd: onEnd)
            reply.succeed()
        }
        return .proceed
    }

    nonisolated(nonsending) public consuming func close() async {
        let id = id
        runtime.cancelWaits(on: id)
        await runtime.perform { stack in stack.udpClose(I.self, id) }
    }
}

/// A UDP socket inside the stack, for code in the same process (the daemon's
/// built-in services, the control server). Each value is one request stream
/// of the socket's worker; `clone()` makes another, and the socket closes
/// when every stream is closed or dropped.
public final class DatagramSocket<I: IPVersion>: Sendable {
    typealias Request = DatagramSocketHandler<I>.Request
    private let requests: RequestStream<Request>.Continuation
    /// The socket in the stack (the same for every clone).
    public let id: SocketID

    init(requests: RequestStream<Request>.Continuation, id: SocketID) {
        self.requests = requests
        self.id = id
    }

    deinit {
        requests.finish()
    }

    /// Opens an unbound socket, served by a worker task of its own.
    public static func open(_ runtime: SocketRuntime) async -> DatagramSocket<I> {
        let id = await runtime.perform { stack in stack.udpOpen(I.self) }
        let (stream, continuation) = RequestStream<Request>.makeStream()
        let worker = SocketWorker(handler: DatagramSocketHandler<I>(runtime: runtime, id: id), requests: stream)
        // Spawned here, where the compiler sees the concrete worker is Sendable.
        runtime.spawn { await worker.run() }
        return DatagramSocket(requests: continuation, id: id)
    }

    private func ask<Success: Sendable>(_ make: (Reply<Success>) -> Request) async throws(SocketError) -> Success {
        try await Reply<Success>.ask { reply in
            requests.yield(make(reply))
        }
    }

    /// Binds to `local` (port 0: an ephemeral port); returns the bound endpoint.
    @discardableResult
    public func bind(_ local: Endpoint<I>) async throws(SocketError) -> Endpoint<I> {
        try await ask { .bind(local, $0) }
    }

    public func connect(_ remote: Endpoint<I>) async throws(SocketError) {
        try await ask { .connect(remote, $0) }
    }

    /// Sends one datagram, to `destination` or the connected peer.
    @discardableResult
    public func send(_ payload: [UInt8], to destination: Endpoint<I>? = nil) async throws(SocketError) -> Int {
        try await ask { .send(payload, to: destination, $0) }
    }

    /// Waits for the next datagram.
    public func receive() async throws(SocketError) -> Datagram<I> {
        try await ask { .receive($0) }
    }

    public func localEndpoint() async throws(SocketError) -> Endpoint<I>? {
        try await ask { .localEndpoint($0) }
    }

    public func remoteEndpoint() async throws(SocketError) -> Endpoint<I>? {
        try await ask { .remoteEndpoint($0) }
    }

    public func setReceiveBufferSize(_ size: Int) async throws(SocketError) {
        try await ask { .setReceiveBufferSize(size, $0) }
    }

    /// SO_REUSEADDR: share the port with other sockets that set it.
    public func setReuseAddress(_ on: Bool) async throws(SocketError) {
        try await ask { .setReuseAddress(on, $0) }
    }

    /// Another handle on the same socket, with a request stream of its own.
    public func clone() async throws(SocketError) -> DatagramSocket<I> {
        try await ask { .clone($0) }
    }

    /// Hands the socket's datagrams to `descriptor` as frames
    /// (`DatagramFrames`); the engine owns and closes it. `onEnd` runs on
    /// the engine thread once the program closed it or it failed.
    public func bridge(to descriptor: Int32, companion: DatagramSocket<IPv4>? = nil,
                       onEnd: @escaping @Sendable (BridgeEnd) -> Void) async throws(SocketError) {
        try await ask { .bridge(descriptor: descriptor, companion: companion?.id, onEnd: onEnd, $0) }
    }

    /// Ends this handle's stream; the socket closes when it was the last.
    public func close() async {
        _ = try? await ask { .close($0) } as Void
        requests.finish()
    }
}
