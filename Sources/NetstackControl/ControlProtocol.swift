/// The control protocol between `netstackd` and local programs, version 3
/// (described in docs/control-protocol.md).
///
/// Every message is a frame: a 4-byte big-endian length, then that many
/// bytes: a 1-byte type and the body. Integers are big-endian; an endpoint is
/// a family byte (4 or 6), the address (4 or 16 bytes) and a 2-byte port;
/// data is a 4-byte length and the bytes; text is a 2-byte length and UTF-8.
public enum ControlProtocol {
    public static let version: UInt16 = 3
    /// The largest frame either side accepts (type and body).
    public static let maximumFrame = 1 << 20 + 64
    /// The most data one send or receive carries.
    public static let maximumData = 1 << 20
    public static let defaultSocketPath = "/run/netstackd.sock"
}

public enum IPFamily: UInt8, Sendable, Codable {
    case ipv4 = 4
    case ipv6 = 6
}

public enum SocketKind: UInt8, Sendable, Codable {
    case stream = 1
    case datagram = 2
}

/// The file format of a live capture.
public enum CaptureFileFormat: UInt8, Sendable, CaseIterable {
    case pcap = 1
    case pcapng = 2
}

public enum QueryKind: UInt8, Sendable, CaseIterable {
    case status = 1
    case addresses = 2
    case neighbors = 3
    case sockets = 4
    case stats = 5
}

public enum SocketOption: UInt8, Sendable {
    case noDelay = 1
    case keepalive = 2
    case receiveBuffer = 3
    case sendBuffer = 4
    /// IPV6_V6ONLY: 0 lets an IPv6 TCP listener on `::` take IPv4 connections too.
    case v6Only = 5
    /// SO_REUSEADDR: UDP sockets that all set it share a port.
    case reuseAddress = 6
    /// TCP_KEEPIDLE, TCP_KEEPINTVL (seconds, 1...32767) and TCP_KEEPCNT
    /// (1...127): when this socket's keepalive probes go.
    case keepaliveIdle = 7
    case keepaliveInterval = 8
    case keepaliveCount = 9
    /// SO_LINGER on with a zero time, for a socket that carries its bytes
    /// (`streamOption`): 1 makes the program's end closing reset the
    /// connection (RST) instead of ending it with a FIN.
    case resetOnClose = 10
}

/// An address and port, either version: `address` holds 4 or 16 bytes.
public struct ControlEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var family: IPFamily
    public var address: [UInt8]
    public var port: UInt16

    public init(family: IPFamily, address: [UInt8], port: UInt16) {
        self.family = family
        self.address = address
        self.port = port
    }

    public var description: String { family == .ipv4 ? "\(host):\(port)" : "[\(host)]:\(port)" }
}

/// An error the daemon answers with: a reason, the errno of a socket error
/// (0 otherwise) and a message for people.
public struct ControlError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: UInt16, Sendable {
        /// The frame's body does not parse as its type says.
        case malformed = 1
        /// No message has this type.
        case unknownType = 2
        /// The length prefix is over `ControlProtocol.maximumFrame`.
        case tooLarge = 3
        case unsupportedVersion = 4
        /// The peer's uid/gid is not allowed to use the daemon.
        case notPermitted = 5
        /// The message is valid but not now (a socket request before a socket exists, ...).
        case wrongState = 6
        case unknownToken = 7
        /// The socket operation failed; `errno` says how.
        case socket = 8
        case internalError = 9
        /// A configured limit (control clients, ...) is reached; `errno` says which kind.
        case limitReached = 10
    }

    public var code: Code
    public var errno: Int32
    public var message: String

    public init(_ code: Code, errno: Int32 = 0, _ message: String) {
        self.code = code
        self.errno = errno
        self.message = message
    }

    public var description: String { message }
}

/// Every message of the protocol. Client requests first, then the daemon's answers.
public enum ControlMessage: Equatable, Sendable {
    /// First message on every connection.
    case hello(version: UInt16)
    case query(QueryKind)
    /// Creates a socket; the connection becomes its request channel.
    case openSocket(IPFamily, SocketKind)
    /// Joins the socket a `token` names (from `clone` or `accept`).
    case join(token: UInt64)
    case bind(ControlEndpoint)
    case listen(backlog: UInt32)
    /// Answered with a token for the accepted connection, to `join` on a new connection.
    case accept
    case connect(ControlEndpoint)
    /// Stream: queue the bytes (waits for room). Datagram: send one, to the
    /// endpoint or the connected peer.
    case send([UInt8], to: ControlEndpoint?)
    /// Stream: up to `maximum` bytes, empty at end of stream. Datagram: the next one.
    case receive(maximum: UInt32)
    case shutdown(read: Bool, write: Bool)
    /// Answered with a token another connection can `join`.
    case clone
    /// Closes this channel; the socket closes when it was the last.
    case close
    /// Answered with `.endpoints`.
    case getEndpoints
    case setOption(SocketOption, UInt64)
    /// Connected stream sockets: after the `done` answer the connection
    /// carries the socket's bytes, both ways, and no more messages; shutting
    /// down its write side sends FIN, the peer's FIN shuts down the daemon's.
    case stream
    /// Listeners: the next connection as a byte stream at once. Answered
    /// with `.acceptedStream` (its key, local and peer endpoints) and, attached to that frame
    /// (SCM_RIGHTS), a Unix stream descriptor that carries the connection's
    /// bytes as a `stream` connection would: no `join` and no new control
    /// connection per accepted connection.
    case acceptStream
    /// A live capture: after the `done` answer the connection carries a
    /// capture file (pcap or pcapng) of every frame the BPF `filter` selects
    /// (all when empty), and no more messages, until the client closes it.
    case capture(filter: String, format: CaptureFileFormat)
    /// On a connection with no socket: sets an option of the socket whose
    /// bytes a stream carries, named by the key its `stream` or
    /// `acceptStream` answer gave (the stream itself takes no more messages).
    case streamOption(key: UInt64, SocketOption, UInt64)

    case welcome(version: UInt16)
    /// A query's answer: a JSON document of the query's `Codable` type.
    case queryResult([UInt8])
    /// Success, with a count where the request has one (bytes sent).
    case done(UInt64)
    case endpoints(local: ControlEndpoint?, remote: ControlEndpoint?)
    /// Received bytes, and for a datagram its source.
    case data([UInt8], from: ControlEndpoint?)
    case token(UInt64, peer: ControlEndpoint?)
    /// The answer to `acceptStream`: the stream's key (for `streamOption`)
    /// and the connection's endpoints, with the stream descriptor attached.
    case acceptedStream(key: UInt64, local: ControlEndpoint?, remote: ControlEndpoint?)
    case failure(ControlError)

    var type: UInt8 {
        switch self {
        case .hello: 0x01
        case .query: 0x02
        case .openSocket: 0x03
        case .join: 0x04
        case .bind: 0x10
        case .listen: 0x11
        case .accept: 0x12
        case .connect: 0x13
        case .send: 0x14
        case .receive: 0x15
        case .shutdown: 0x16
        case .clone: 0x17
        case .close: 0x18
        case .getEndpoints: 0x19
        case .setOption: 0x1A
        case .stream: 0x1B
        case .acceptStream: 0x1C
        case .capture: 0x1D
        case .streamOption: 0x1E
        case .done: 0x80
        case .welcome: 0x81
        case .queryResult: 0x82
        case .endpoints: 0x90
        case .data: 0x91
        case .token: 0x93
        case .acceptedStream: 0x94
        case .failure: 0xFF
        }
    }
}
