import Dispatch
import Foundation
import Glibc
import NetstackControl
import Synchronization

/// A failure on the client's side of the control socket.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// One connection to the daemon's control socket. Requests go one at a
/// time; the blocking reads and writes run on a dispatch queue of the
/// connection's own, never on Swift's cooperative threads.
public final class ControlConnection: Sendable {
    private let descriptor: Int32
    private let queue = DispatchQueue(label: "netstack-client")
    /// Set once the descriptor was handed to the caller (`stream`).
    private let released = Mutex(false)

    private init(descriptor: Int32) { self.descriptor = descriptor }

    deinit {
        if !released.withLock({ $0 }) { close(descriptor) }
    }

    /// Gives up the descriptor (the caller closes it from now on).
    func releaseDescriptor() -> Int32 {
        released.withLock { $0 = true }
        return descriptor
    }

    /// Connects to `path` and says hello.
    public static func connect(path: String) async throws -> ControlConnection {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError(description: "socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        guard path.utf8.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw ClientError(description: "\(path): path too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.enumerated() { bytes[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
        guard connected else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ClientError(description: "cannot connect to \(path): \(reason)"
                              + (errno == EACCES ? " (netstackd's control socket is for root and its group)" : ""))
        }
        let connection = ControlConnection(descriptor: fd)
        let answer = try await connection.exchange(.hello(version: ControlProtocol.version))
        guard case .welcome = answer else { throw ClientError(description: "unexpected answer to hello: \(answer)") }
        return connection
    }

    /// Sends `request` and waits for its answer; a `.failure` answer is thrown.
    @discardableResult
    public func exchange(_ request: ControlMessage) async throws -> ControlMessage {
        let answer = try await raw(ControlCodec.encode(request))
        if case .failure(let error) = answer { throw error }
        return answer
    }

    /// Sends bytes as they are (tests send malformed frames) and reads one answer.
    public func raw(_ bytes: [UInt8]) async throws -> ControlMessage {
        let descriptor = descriptor
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                // A daemon that refuses a client answers before reading and
                // closes; its answer is still there to read after a failed write.
                let written = Result { try Self.write(bytes, descriptor) }
                continuation.resume(with: Result {
                    do { return try Self.read(descriptor) } catch { try written.get(); throw error }
                })
            }
        }
    }

    private static func write(_ bytes: [UInt8], _ fd: Int32) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ClientError(description: "netstackd closed the connection") }
            offset += n
        }
    }

    private static func read(_ fd: Int32) throws -> ControlMessage {
        func exactly(_ count: Int) throws -> [UInt8] {
            var buffer = [UInt8](repeating: 0, count: count)
            var offset = 0
            while offset < count {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + offset, count - offset) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw ClientError(description: "netstackd closed the connection") }
                offset += n
            }
            return buffer
        }
        let length = try ControlCodec.frameLength(try exactly(4))
        return try ControlCodec.decode(try exactly(length))
    }
}

/// The client library: queries, and sockets inside the stack.
public struct NetstackClient: Sendable {
    public let path: String

    public init(path: String = ControlProtocol.defaultSocketPath) { self.path = path }

    public func query<Answer: Decodable>(_ kind: QueryKind, as type: Answer.Type = Answer.self) async throws -> Answer {
        let connection = try await ControlConnection.connect(path: path)
        guard case .queryResult(let json) = try await connection.exchange(.query(kind)) else {
            throw ClientError(description: "unexpected answer to a query")
        }
        return try JSONDecoder().decode(Answer.self, from: Data(json))
    }

    public func status() async throws -> StatusReport { try await query(.status) }
    public func addresses() async throws -> [AddressReport] { try await query(.addresses) }
    public func neighbors() async throws -> [NeighborReport] { try await query(.neighbors) }
    public func sockets() async throws -> [SocketReport] { try await query(.sockets) }
    public func stats() async throws -> StatsReport { try await query(.stats) }

    /// A new socket inside the stack, with a connection of its own.
    public func openSocket(_ family: IPFamily, _ kind: SocketKind) async throws -> RemoteSocket {
        let connection = try await ControlConnection.connect(path: path)
        try await connection.exchange(.openSocket(family, kind))
        return RemoteSocket(connection: connection, client: self)
    }

    /// A live capture of the stack's frames that `filter` (a BPF expression;
    /// empty for all) selects: the descriptor returned reads a capture file,
    /// as `tcpdump -w -` would write it, until it is closed. The caller owns it.
    public func capture(filter: String = "", format: CaptureFileFormat = .pcap) async throws -> Int32 {
        let connection = try await ControlConnection.connect(path: path)
        try await connection.exchange(.capture(filter: filter, format: format))
        return connection.releaseDescriptor()
    }

    /// Joins the socket a token from `clone` or `accept` names.
    public func join(token: UInt64) async throws -> RemoteSocket {
        let connection = try await ControlConnection.connect(path: path)
        try await connection.exchange(.join(token: token))
        return RemoteSocket(connection: connection, client: self)
    }
}

/// A socket inside the stack, reached through one control connection (its
/// request channel). Operations on one value run one at a time; `clone()`
/// gives another channel to the same socket for concurrent use.
public final class RemoteSocket: Sendable {
    let connection: ControlConnection
    let client: NetstackClient

    init(connection: ControlConnection, client: NetstackClient) {
        self.connection = connection
        self.client = client
    }

    @discardableResult
    public func bind(_ local: ControlEndpoint) async throws -> ControlEndpoint {
        guard case .endpoints(let bound?, _) = try await connection.exchange(.bind(local)) else { return local }
        return bound
    }

    public func listen(backlog: Int = 4096) async throws {
        try await connection.exchange(.listen(backlog: UInt32(clamping: backlog)))
    }

    /// Waits for a connection; it comes on a control connection of its own.
    public func accept() async throws -> (socket: RemoteSocket, peer: ControlEndpoint?) {
        guard case .token(let token, let peer) = try await connection.exchange(.accept) else {
            throw ClientError(description: "unexpected answer to accept")
        }
        return (try await client.join(token: token), peer)
    }

    public func connect(_ remote: ControlEndpoint) async throws {
        try await connection.exchange(.connect(remote))
    }

    /// Stream: queues all of `bytes`. Datagram: sends one, to `destination`
    /// or the connected peer.
    @discardableResult
    public func send(_ bytes: [UInt8], to destination: ControlEndpoint? = nil) async throws -> Int {
        var sent = 0
        for start in stride(from: 0, to: max(bytes.count, 1), by: ControlProtocol.maximumData) {
            let chunk = Array(bytes[start..<min(bytes.count, start + ControlProtocol.maximumData)])
            if case .done(let count) = try await connection.exchange(.send(chunk, to: destination)) { sent += Int(count) }
        }
        return sent
    }

    /// Stream: up to `maximum` bytes, empty at the end of the stream.
    /// Datagram: the next datagram and its source.
    public func receive(maximum: Int = 65_536) async throws -> (bytes: [UInt8], from: ControlEndpoint?) {
        guard case .data(let bytes, let from) = try await connection.exchange(.receive(maximum: UInt32(clamping: maximum))) else {
            throw ClientError(description: "unexpected answer to receive")
        }
        return (bytes, from)
    }

    public func shutdown(read: Bool = false, write: Bool = true) async throws {
        try await connection.exchange(.shutdown(read: read, write: write))
    }

    /// Another channel to this socket (on a new control connection).
    public func clone() async throws -> RemoteSocket {
        guard case .token(let token, _) = try await connection.exchange(.clone) else {
            throw ClientError(description: "unexpected answer to clone")
        }
        return try await client.join(token: token)
    }

    public func endpoints() async throws -> (local: ControlEndpoint?, remote: ControlEndpoint?) {
        guard case .endpoints(let local, let remote) = try await connection.exchange(.getEndpoints) else {
            throw ClientError(description: "unexpected answer to getEndpoints")
        }
        return (local, remote)
    }

    public func setOption(_ option: SocketOption, _ value: UInt64) async throws {
        try await connection.exchange(.setOption(option, value))
    }

    /// Ends this channel; the socket closes when it was the last.
    public func close() async throws {
        try await connection.exchange(.close)
    }

    /// Turns this channel of a connected TCP socket into the socket's byte
    /// stream: the descriptor returned reads what arrives and writes what is
    /// sent, with no framing and no request per operation (the daemon's
    /// engine moves the bytes). `shutdown(fd, SHUT_WR)` sends FIN; the peer's
    /// FIN reads as end of file; closing the descriptor closes the channel.
    /// The caller owns the descriptor; this value must not be used again.
    public func stream() async throws -> Int32 {
        try await connection.exchange(.stream)
        let descriptor = connection.releaseDescriptor()
        // The stream's marker (docs/control-protocol.md): the byte the daemon
        // keeps unread, so that a reset reads here as ECONNRESET.
        var marker: UInt8 = 0
        guard Glibc.send(descriptor, &marker, 1, Int32(MSG_NOSIGNAL)) == 1 else {
            let code = errno
            Glibc.close(descriptor)
            throw ClientError(description: "stream marker: \(String(cString: strerror(code)))")
        }
        return descriptor
    }
}
