import Glibc
import NetstackControl
import Synchronization

/// One control connection, from hello to disconnect. Runs as a task on the
/// connection's own thread, so its blocking reads and writes stall only
/// itself: a client that stops reading stops its own socket's operations
/// (the stack's windows close) instead of making the daemon buffer.
final class ControlSession {
    private let client: Int32
    private let context: ControlContext
    private let current: CurrentChannel
    private var channel: ControlChannel? {
        didSet { current.set(channel) }
    }

    private init(client: Int32, context: ControlContext, current: CurrentChannel) {
        self.client = client
        self.context = context
        self.current = current
    }

    /// Serves `client` on a thread of its own until it disconnects.
    static func start(client: Int32, context: ControlContext) {
        let current = CurrentChannel()
        // A client gone while its request waits: end this channel's stream,
        // which ends the waiting request (for the socket's last stream).
        let thread = ConnectionThread(client: client) {
            if let channel = current.get() { Task { await channel.close() } }
        }
        context.clients.insert(client)
        Task(executorPreference: thread) {
            let session = ControlSession(client: client, context: context, current: current)
            let streaming = await session.run()
            context.clients.remove(client)
            // A stream's descriptor is the engine's now.
            if !streaming { close(client) }
            thread.stop()
        }
    }

    /// Serves requests until the client leaves; true when the connection
    /// became a byte stream (its descriptor then belongs to the engine).
    private func run() async -> Bool {
        guard case .message(.hello(let version)) = readMessage() else {
            reply(.failure(ControlError(.wrongState, "the first message must be hello")))
            return closeChannel()
        }
        guard version == ControlProtocol.version else {
            reply(.failure(ControlError(.unsupportedVersion, "version \(version) is not supported; this daemon speaks \(ControlProtocol.version)")))
            return closeChannel()
        }
        guard reply(.welcome(version: ControlProtocol.version)) else { return closeChannel() }
        while true {
            switch readMessage() {
            case .closed:
                return closeChannel()
            case .failed(let error):
                // A bad length cannot be skipped; anything else can.
                guard reply(.failure(error)), error.code != .tooLarge else { return closeChannel() }
            case .message(.stream):
                guard let open = channel else {
                    reply(.failure(ControlError(.wrongState, "open or join a socket first")))
                    continue
                }
                if let refusal = await open.streamRefusal() {
                    reply(.failure(refusal))
                    continue
                }
                // The answer goes before any of the stream's bytes can.
                guard reply(.done(0)) else { return closeChannel() }
                channel = nil
                await open.stream(to: client)
                return true
            case .message(let message):
                let (answer, end) = await handle(message)
                guard reply(answer), !end else { return closeChannel() }
            }
        }
    }

    /// Ends the session's channel, if any; false (not streaming).
    private func closeChannel() -> Bool {
        if let channel { Task { await channel.close() } }
        return false
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

    private func readMessage() -> Incoming {
        var prefix = [UInt8](repeating: 0, count: 4)
        guard readExactly(&prefix) else { return .closed }
        let length: Int
        do {
            length = try ControlCodec.frameLength(prefix)
        } catch {
            return .failed(error)
        }
        var frame = [UInt8](repeating: 0, count: length)
        guard readExactly(&frame) else { return .closed }
        do {
            return .message(try ControlCodec.decode(frame))
        } catch {
            return .failed(error)
        }
    }

    private func readExactly(_ buffer: inout [UInt8]) -> Bool {
        var offset = 0
        while offset < buffer.count {
            let n = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    @discardableResult
    private func reply(_ message: ControlMessage) -> Bool {
        Self.write(ControlCodec.encode(message), to: client)
    }

    /// Writes all of `bytes` (blocking); false once the peer is gone.
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

/// The session's channel, readable from the connection thread's hang-up handler.
final class CurrentChannel: Sendable {
    private let channel = Mutex<ControlChannel?>(nil)
    func set(_ value: ControlChannel?) { channel.withLock { $0 = value } }
    func get() -> ControlChannel? { channel.withLock { $0 } }
}
