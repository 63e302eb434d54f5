import Glibc
import NetstackControl
import NetstackCore
import NetstackIO
import NetstackSockets

/// The socket a control connection speaks for, once it opened or joined one.
enum ControlChannel: Sendable {
    case stream4(StreamSocket<IPv4>)
    case stream6(StreamSocket<IPv6>)
    case datagram4(DatagramSocket<IPv4>)
    case datagram6(DatagramSocket<IPv6>)
    /// An IPv6 TCP socket that also takes IPv4 connections (IPV6_V6ONLY off).
    case dual(DualStackListener)
    /// An IPv6 UDP socket that also reaches IPv4 peers (IPV6_V6ONLY off).
    case dualDatagrams(DualStackDatagrams)

    static func open(_ family: IPFamily, _ kind: SocketKind, _ runtime: SocketRuntime) async -> ControlChannel {
        switch (family, kind) {
        case (.ipv4, .stream): .stream4(await StreamSocket<IPv4>.open(runtime))
        case (.ipv6, .stream): .stream6(await StreamSocket<IPv6>.open(runtime))
        case (.ipv4, .datagram): .datagram4(await DatagramSocket<IPv4>.open(runtime))
        case (.ipv6, .datagram): .datagram6(await DatagramSocket<IPv6>.open(runtime))
        }
    }

    /// Ends this channel's request stream (the socket closes when it was the last).
    func close() async {
        switch self {
        case .stream4(let socket): await socket.close()
        case .stream6(let socket): await socket.close()
        case .datagram4(let socket): await socket.close()
        case .datagram6(let socket): await socket.close()
        case .dual(let listener): await listener.close()
        case .dualDatagrams(let sockets): await sockets.close()
        }
    }

    /// Resets a connection (a stream socket), else closes.
    func abort() async {
        switch self {
        case .stream4(let socket): await socket.abort()
        case .stream6(let socket): await socket.abort()
        default: await close()
        }
    }

    /// Why this channel cannot become a byte stream (`stream`), or nil: it
    /// must be a connected TCP socket.
    func streamRefusal() async -> ControlError? {
        func check<I: IPVersion>(_ socket: StreamSocket<I>) async -> ControlError? {
            do {
                return try await socket.remoteEndpoint() == nil
                    ? ControlError(.wrongState, "stream needs a connected socket") : nil
            } catch {
                return ControlError(error)
            }
        }
        switch self {
        case .stream4(let socket): return await check(socket)
        case .stream6(let socket): return await check(socket)
        case .dual: return ControlError(.wrongState, "stream needs a connected socket")
        case .datagram4(let socket): return await bound(socket)
        case .datagram6(let socket): return await bound(socket)
        case .dualDatagrams(let sockets): return await bound(sockets.v6)
        }
        func bound<I: IPVersion>(_ socket: DatagramSocket<I>) async -> ControlError? {
            ((try? await socket.localEndpoint()) ?? nil) == nil
                ? ControlError(.wrongState, "bind the datagram socket first") : nil
        }
    }

    /// Joins the channel's connected socket to the client's descriptor (after
    /// `stream` was answered); once both directions end, or one fails, the
    /// channel closes (gracefully, or with a reset). The descriptor is the
    /// engine's from now on.
    /// `ended` runs once the stream is over.
    func stream(to descriptor: Int32, ended: @escaping @Sendable () -> Void = {}) async {
        func join<I: IPVersion>(_ socket: StreamSocket<I>) async {
            do {
                try await socket.bridge(to: descriptor) { end in
                    ended()
                    Task {
                        if end == .finished { await socket.close() } else { await socket.abort() }
                    }
                }
            } catch {
                // The socket went away meanwhile: the client sees its stream end.
                ended()
                Glibc.close(descriptor)
                await socket.abort()
            }
        }
        func frames<I: IPVersion>(_ socket: DatagramSocket<I>, companion: DatagramSocket<IPv4>? = nil) async {
            do {
                try await socket.bridge(to: descriptor, companion: companion) { _ in
                    ended()
                    Task {
                        await companion?.close()
                        await socket.close()
                    }
                }
            } catch {
                ended()
                Glibc.close(descriptor)
                await companion?.close()
                await socket.close()
            }
        }
        switch self {
        case .stream4(let socket): await join(socket)
        case .stream6(let socket): await join(socket)
        case .datagram4(let socket): await frames(socket)
        case .datagram6(let socket): await frames(socket)
        case .dualDatagrams(let sockets): await frames(sockets.v6, companion: sockets.v4)
        case .dual:
            ended()
            Glibc.close(descriptor)
        }
    }

    /// A listener's next connection with its endpoints, in one trip to the
    /// engine (the preload's accept: `acceptStream`).
    func acceptConnection() async -> Result<AcceptedChannel, ControlError> {
        func take<I: IPVersion>(_ socket: StreamSocket<I>,
                                _ wrap: (StreamSocket<I>) -> ControlChannel) async -> Result<AcceptedChannel, ControlError> {
            do throws(SocketError) {
                let accepted = try await socket.acceptWithEndpoints()
                return .success(AcceptedChannel(channel: wrap(accepted.socket),
                                                local: accepted.local.map(ControlEndpoint.init),
                                                peer: accepted.remote.map(ControlEndpoint.init)))
            } catch {
                return .failure(ControlError(error))
            }
        }
        switch self {
        case .stream4(let socket): return await take(socket) { .stream4($0) }
        case .stream6(let socket): return await take(socket) { .stream6($0) }
        case .dual(let listener):
            guard let accepted = await listener.accept() else {
                return .failure(ControlError(SocketError.closed))
            }
            return .success(accepted)
        case .datagram4, .datagram6, .dualDatagrams:
            return .failure(ControlError(.wrongState, "not a request for a datagram socket"))
        }
    }

    /// Serves one request; the answer and a token's channel to register, if any.
    func handle(_ request: ControlMessage) async -> (ControlMessage, ControlChannel?) {
        do {
            switch self {
            case .stream4(let socket): return try await Self.stream(request, socket) { .stream4($0) }
            case .stream6(let socket): return try await Self.stream(request, socket) { .stream6($0) }
            case .datagram4(let socket): return try await Self.datagram(request, socket) { .datagram4($0) }
            case .datagram6(let socket): return try await Self.datagram(request, socket) { .datagram6($0) }
            case .dual(let listener): return try await Self.dual(request, listener)
            case .dualDatagrams(let sockets): return try await Self.dualDatagrams(request, sockets)
            }
        } catch let error as SocketError {
            return (.failure(ControlError(error)), nil)
        } catch let error as ControlError {
            return (.failure(error), nil)
        } catch {
            return (.failure(ControlError(.internalError, "\(error)")), nil)
        }
    }

    private static func stream<I: IPVersion>(
        _ request: ControlMessage, _ socket: StreamSocket<I>, _ wrap: (StreamSocket<I>) -> ControlChannel
    ) async throws -> (ControlMessage, ControlChannel?) {
        switch request {
        case .bind(let local):
            return (.endpoints(local: ControlEndpoint(try await socket.bind(try local.endpoint(I.self))), remote: nil), nil)
        case .listen(let backlog):
            try await socket.listen(backlog: Int(min(backlog, 4096)))
        case .accept:
            let accepted = try await socket.acceptWithEndpoints()
            return (.token(0, peer: accepted.remote.map(ControlEndpoint.init)), wrap(accepted.socket))
        case .connect(let remote):
            try await socket.connect(try remote.endpoint(I.self))
        case .send(let bytes, nil):
            return (.done(UInt64(try await socket.send(bytes))), nil)
        case .receive(let maximum):
            let bytes = try await socket.receive(maximum: Int(min(maximum, UInt32(ControlProtocol.maximumData))))
            return (.data(bytes, from: nil), nil)
        case .shutdown(let read, let write):
            try await socket.shutdown(read: read, write: write)
        case .clone:
            return (.token(0, peer: nil), wrap(try await socket.clone()))
        case .getEndpoints:
            return (.endpoints(local: try await socket.localEndpoint().map(ControlEndpoint.init),
                               remote: try await socket.remoteEndpoint().map(ControlEndpoint.init)), nil)
        case .setOption(.noDelay, let value): try await socket.setNoDelay(value != 0)
        case .setOption(.keepalive, let value): try await socket.setKeepalive(value != 0)
        case .setOption(.keepaliveIdle, let value):
            try await socket.setKeepaliveTiming(idle: .seconds(Int64(clamping: value)))
        case .setOption(.keepaliveInterval, let value):
            try await socket.setKeepaliveTiming(interval: .seconds(Int64(clamping: value)))
        case .setOption(.keepaliveCount, let value): try await socket.setKeepaliveTiming(probes: Int(clamping: value))
        case .setOption(.receiveBuffer, let value): try await socket.setBufferSizes(receive: Int(clamping: value))
        case .setOption(.sendBuffer, let value): try await socket.setBufferSizes(send: Int(clamping: value))
        case .setOption(.resetOnClose, let value): try await socket.setResetOnClose(value != 0)
        case .setOption(.reuseAddress, _):
            // TCP binds never clash with connections (TIME-WAIT included), so
            // there is nothing SO_REUSEADDR would allow.
            break
        default:
            throw ControlError(.wrongState, "not a request for a stream socket")
        }
        return (.done(0), nil)
    }

    private static func dual(_ request: ControlMessage, _ listener: DualStackListener) async throws
        -> (ControlMessage, ControlChannel?) {
        switch request {
        case .listen(let backlog):
            try await listener.listen(backlog: Int(min(backlog, 4096)))
            return (.done(0), nil)
        case .accept:
            guard let accepted = await listener.accept() else { throw SocketError.closed }
            return (.token(0, peer: accepted.peer), accepted.channel)
        case .clone, .connect, .send, .receive, .shutdown:
            throw ControlError(.wrongState, "not a request for a listener that takes both IP versions")
        default:
            // Bind, endpoints and options are the IPv6 socket's.
            return try await stream(request, listener.v6) { .stream6($0) }
        }
    }

    private static func dualDatagrams(_ request: ControlMessage, _ sockets: DualStackDatagrams) async throws
        -> (ControlMessage, ControlChannel?) {
        switch request {
        case .bind(let local):
            return (.endpoints(local: ControlEndpoint(try await sockets.bind(try local.endpoint(IPv6.self))), remote: nil),
                    nil)
        case .connect(let remote) where remote.family == .ipv4:
            guard let v4 = sockets.v4 else { throw SocketError.networkUnreachable }
            try await v4.connect(try remote.endpoint(IPv4.self))
            return (.done(0), nil)
        case .send(let bytes, let to?) where to.family == .ipv4:
            guard let v4 = sockets.v4 else { throw SocketError.networkUnreachable }
            return (.done(UInt64(try await v4.send(bytes, to: try to.endpoint(IPv4.self)))), nil)
        case .setOption(.reuseAddress, let value):
            try await sockets.setReuseAddress(value != 0)
            return (.done(0), nil)
        case .clone:
            throw ControlError(.wrongState, "not a request for a socket that takes both IP versions")
        default:
            return try await datagram(request, sockets.v6) { .datagram6($0) }
        }
    }

    private static func datagram<I: IPVersion>(
        _ request: ControlMessage, _ socket: DatagramSocket<I>, _ wrap: (DatagramSocket<I>) -> ControlChannel
    ) async throws -> (ControlMessage, ControlChannel?) {
        switch request {
        case .bind(let local):
            return (.endpoints(local: ControlEndpoint(try await socket.bind(try local.endpoint(I.self))), remote: nil), nil)
        case .connect(let remote):
            try await socket.connect(try remote.endpoint(I.self))
        case .send(let bytes, let to):
            return (.done(UInt64(try await socket.send(bytes, to: try to?.endpoint(I.self)))), nil)
        case .receive:
            let datagram = try await socket.receive()
            return (.data(datagram.payload, from: ControlEndpoint(datagram.source)), nil)
        case .clone:
            return (.token(0, peer: nil), wrap(try await socket.clone()))
        case .getEndpoints:
            return (.endpoints(local: try await socket.localEndpoint().map(ControlEndpoint.init),
                               remote: try await socket.remoteEndpoint().map(ControlEndpoint.init)), nil)
        case .setOption(.receiveBuffer, let value):
            try await socket.setReceiveBufferSize(Int(clamping: value))
        case .setOption(.reuseAddress, let value):
            try await socket.setReuseAddress(value != 0)
        default:
            throw ControlError(.wrongState, "not a request for a datagram socket")
        }
        return (.done(0), nil)
    }
}

extension ControlEndpoint {
    init<I: IPVersion>(_ endpoint: Endpoint<I>) {
        // The stack's addresses print in the standard text forms inet_pton reads.
        self = ControlEndpoint(host: "\(endpoint.address)", port: endpoint.port)
            ?? .any(I.self == IPv4.self ? .ipv4 : .ipv6, port: endpoint.port)
    }

    func endpoint<I: IPVersion>(_ version: I.Type) throws(ControlError) -> Endpoint<I> {
        guard (family == .ipv4) == (I.self == IPv4.self), let address = I.Address(host) else {
            throw ControlError(.malformed, "\(self) is not an \(I.name) endpoint")
        }
        return Endpoint(address, port)
    }
}

/// A connection a listener accepted, as a channel, with its endpoints.
struct AcceptedChannel: Sendable {
    let channel: ControlChannel
    let local: ControlEndpoint?
    let peer: ControlEndpoint?
}

extension ControlError {
    /// A socket's error as the control protocol reports it (its errno).
    init(_ error: SocketError) {
        self.init(.socket, errno: error.errno, "\(error)")
    }
}
