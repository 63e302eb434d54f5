import Glibc
import NetstackControl
import NetstackIO
import Synchronization

/// One control connection, from hello to disconnect (or to becoming a byte
/// stream). Runs as a task on the engine's executor and reads and writes
/// without blocking (the engine's epoll says when it may go on), so 10,000
/// connections cost 10,000 small tasks, not threads; a client that stops
/// reading stalls only its own socket (the stack's windows close) instead of
/// making the daemon buffer.
final class ControlSession {
    private let client: Int32
    private let io: AsyncDescriptor
    private let context: ControlContext
    private let current: CurrentChannel
    private var channel: ControlChannel? {
        didSet { current.set(channel) }
    }

    private init(client: Int32, context: ControlContext, current: CurrentChannel) {
        self.client = client
        io = AsyncDescriptor(client, runtime: context.runtime)
        self.context = context
        self.current = current
    }

    /// Serves `client` until it disconnects.
    static func start(client: Int32, context: ControlContext) {
        let current = CurrentChannel()
        context.runtime.spawn {
            // A client gone while its request waits: end this channel's
            // stream, which ends the waiting request (for the socket's last
            // stream).
            let watched = await context.runtime.watch(client) {
                if let channel = current.get() { Task { await channel.close() } }
            }
            var streaming = false
            if watched {
                let session = ControlSession(client: client, context: context, current: current)
                streaming = await session.run()
            }
            context.clients.remove(client)
            // A stream's descriptor is the engine's now.
            if !streaming {
                await context.runtime.unwatch(client)
                close(client)
            }
        }
    }

    private func run() async -> Bool {
        guard case .message(.hello(let version)) = await readMessage() else {
            await reply(.failure(ControlError(.wrongState, "the first message must be hello")))
            return await closeChannel()
        }
        guard version == ControlProtocol.version else {
            await reply(.failure(ControlError(.unsupportedVersion, "version \(version) is not supported; this daemon speaks \(ControlProtocol.version)")))
            return await closeChannel()
        }
        guard await reply(.welcome(version: ControlProtocol.version)) else { return await closeChannel() }
        while true {
            switch await readMessage() {
            case .closed:
                return await closeChannel()
            case .failed(let error):
                // A bad length cannot be skipped; anything else can.
                guard await reply(.failure(error)), error.code != .tooLarge else { return await closeChannel() }
            case .message(.stream):
                guard let open = channel else {
                    await reply(.failure(ControlError(.wrongState, "open or join a socket first")))
                    continue
                }
                if let refusal = await open.streamRefusal() {
                    await reply(.failure(refusal))
                    continue
                }
                // The answer (with the stream's key) goes before any of the
                // stream's bytes can.
                let streams = context.streams
                let key = streams.insert(open)
                guard await reply(.done(key)) else {
                    streams.remove(key)
                    return await closeChannel()
                }
                channel = nil
                // The bridge watches the descriptor from now on.
                await context.runtime.unwatch(client)
                await open.stream(to: client) { streams.remove(key) }
                return true
            case .message(.acceptStream):
                guard await acceptStream() else { return await closeChannel() }
            case .message(.capture(let filter, let format)) where channel == nil:
                // The capture's writer thread owns a copy of the connection
                // from here: it sends the answer, then the capture file.
                let copy = dup(client)
                do throws(CaptureError) {
                    guard copy >= 0 else {
                        throw CaptureError.pcap(.open(path: "live capture", message: String(cString: strerror(errno))))
                    }
                    try context.capture.addLiveReader(copy, filter: filter.isEmpty ? nil : filter,
                                                      format: format == .pcapng ? .pcapng : .pcap,
                                                      preamble: ControlCodec.encode(.done(0)))
                    return await closeChannel()
                } catch {
                    if copy >= 0 { close(copy) }
                    let code: ControlError.Code = if case .tooManyReaders = error { .limitReached } else { .malformed }
                    guard await reply(.failure(ControlError(code, "\(error)"))) else { return await closeChannel() }
                }
            case .message(let message):
                let (answer, end) = await handle(message)
                guard await reply(answer), !end else { return await closeChannel() }
            }
        }
    }

    /// Ends the session's channel, if any; false (not streaming). Awaited
    /// before the client's connection closes: a program whose close waits
    /// for that end may bind the same port the moment it returns.
    private func closeChannel() async -> Bool {
        if let channel { await channel.close() }
        return false
    }

    /// `acceptStream`: takes the listener's next connection, joins it to one
    /// end of a new socket pair and sends the other end with its key and endpoints
    /// (docs/control-protocol.md). False once the client is gone.
    private func acceptStream() async -> Bool {
        guard let listener = channel else {
            return await reply(.failure(ControlError(.wrongState, "open or join a socket first")))
        }
        let taken: AcceptedChannel
        switch await listener.acceptConnection() {
        case .success(let connection): taken = connection
        case .failure(let error): return await reply(.failure(error))
        }
        let accepted = taken.channel
        let (local, remote) = (taken.local, taken.peer)
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            let code = errno
            await accepted.abort()
            return await reply(.failure(ControlError(.socket, errno: code, "socketpair: \(String(cString: strerror(code)))")))
        }
        // The program's end may queue as much as the engine's.
        ByteStreamBuffers.enlarge(pair[1])
        // The stream's marker (docs/control-protocol.md), sent here on the
        // program's behalf: the byte the engine keeps queued until a clean end.
        var marker: UInt8 = 0
        guard send(pair[1], &marker, 1, Int32(MSG_NOSIGNAL)) == 1 else {
            let code = errno
            close(pair[0])
            close(pair[1])
            await accepted.abort()
            return await reply(.failure(ControlError(.socket, errno: code, "marker: \(String(cString: strerror(code)))")))
        }
        // The engine owns pair[0] from here; the client gets a copy of pair[1].
        let streams = context.streams
        let key = streams.insert(accepted)
        await accepted.stream(to: pair[0]) { streams.remove(key) }
        defer { close(pair[1]) }
        return await io.write(ControlCodec.encode(.acceptedStream(key: key, local: local, remote: remote)),
                              passing: pair[1])
    }

    /// The answer to one request, and whether the connection ends after it.
    private func handle(_ message: ControlMessage) async -> (ControlMessage, Bool) {
        switch (message, channel) {
        case (.hello, _):
            return (.failure(ControlError(.wrongState, "hello was already said")), false)
        case (.query(let kind), nil):
            do {
                return (.queryResult(try await context.queries.call(kind)), false)
            } catch {
                return (.failure(ControlError(.internalError, "\(error)")), false)
            }
        case (.openSocket(let family, let kind), nil):
            channel = await ControlChannel.open(family, kind, context.runtime)
            return (.done(0), false)
        case (.join(let token), nil):
            guard let joined = context.tokens.take(token) else {
                return (.failure(ControlError(.unknownToken, "no socket waits for token \(token)")), false)
            }
            channel = joined
            return (.done(0), false)
        case (.streamOption(let key, let option, let value), nil):
            // SO_LINGER and friends on a socket whose connection carries its
            // bytes now: through the key its stream answer gave.
            guard let streaming = context.streams.channel(key) else {
                return (.failure(ControlError(.unknownToken, "no stream has key \(key)")), false)
            }
            return (await streaming.handle(.setOption(option, value)).0, false)
        case (.close, let open?):
            channel = nil
            await open.close()
            return (.done(0), true)
        case (.setOption(.v6Only, let value), let open?):
            // IPV6_V6ONLY off: the socket takes IPv4 connections too (when it
            // listens on ::). Linux's default; the stack's own is on.
            switch (open, value) {
            case (.stream6(let socket), 0): channel = .dual(DualStackListener(socket, runtime: context.runtime))
            case (.dual(let listener), 1...): channel = .stream6(listener.v6)
            case (.datagram6(let socket), 0): channel = .dualDatagrams(DualStackDatagrams(socket, runtime: context.runtime))
            case (.dualDatagrams(let sockets), 1...): channel = .datagram6(sockets.v6)
            case (.stream6, _), (.dual, _), (.datagram6, _), (.dualDatagrams, _): break
            default:
                return (.failure(ControlError(.socket, errno: 92, "IPV6_V6ONLY is for IPv6 TCP sockets")), false)
            }
            return (.done(0), false)
        case (_, let open?):
            var (answer, newChannel) = await open.handle(message)
            if let newChannel, case .token(_, let peer) = answer {
                do {
                    answer = .token(try context.tokens.insert(newChannel), peer: peer)
                } catch {
                    await newChannel.close()
                    answer = .failure(error)
                }
            }
            return (answer, false)
        case (_, nil):
            return (.failure(ControlError(.wrongState, "open or join a socket first")), false)
        }
    }

    private enum Incoming {
        case message(ControlMessage)
        case failed(ControlError)
        case closed
    }

    private func readMessage() async -> Incoming {
        guard let prefix = await readExactly(4) else { return .closed }
        let length: Int
        do {
            length = try ControlCodec.frameLength(prefix)
        } catch {
            return .failed(error)
        }
        guard let frame = await readExactly(length) else { return .closed }
        do {
            return .message(try ControlCodec.decode(frame))
        } catch {
            return .failed(error)
        }
    }

    /// Exactly `count` bytes, never more (what follows a `stream` request is
    /// the stream's); nil at the end of the connection.
    private func readExactly(_ count: Int) async -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            let chunk = await io.read(maximum: count - bytes.count)
            if chunk.isEmpty { return nil }
            bytes += chunk
        }
        return bytes
    }

    @discardableResult
    private func reply(_ message: ControlMessage) async -> Bool {
        await io.write(ControlCodec.encode(message))
    }

    /// Writes all of `bytes` (blocking); false once the peer is gone. For the
    /// accepting thread's refusals, before any session exists.
    static func write(_ bytes: [UInt8], to client: Int32) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(client, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
}

/// The session's channel, readable from the hang-up handler.
final class CurrentChannel: Sendable {
    private let channel = Mutex<ControlChannel?>(nil)
    func set(_ value: ControlChannel?) { channel.withLock { $0 = value } }
    func get() -> ControlChannel? { channel.withLock { $0 } }
}
