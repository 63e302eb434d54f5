import NetstackWire

/// Identifies a socket in a stack. Never reused within a stack's life, so a
/// stale identifier cannot reach a newer socket.
public struct SocketID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (a: SocketID, b: SocketID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "#\(rawValue)" }

    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

    /// What dictionaries and sets of sockets hash with. Identifiers come
    /// from the stack's own counter, never from a peer, so they need no keyed
    /// hash against flooding: splitmix64's finalizer (two multiplications)
    /// spreads them over the buckets at a fraction of SipHash's cost, and
    /// every socket operation and timer looks one up.
    public func _rawHashValue(seed: Int) -> Int {
        var x = rawValue ^ UInt64(UInt(bitPattern: seed))
        x = (x ^ (x >> 30)) &* 0xbf58_476d_1ce4_e5b9
        x = (x ^ (x >> 27)) &* 0x94d0_49bb_1331_11eb
        return Int(truncatingIfNeeded: x ^ (x >> 31))
    }
}

/// An address and port of one IP version.
public struct Endpoint<I: IPVersion>: Hashable, Sendable, CustomStringConvertible {
    public var address: I.Address
    public var port: UInt16

    public init(_ address: I.Address, _ port: UInt16) {
        self.address = address
        self.port = port
    }

    /// The unspecified address with `port` (0 asks for an ephemeral port).
    public static func any(port: UInt16 = 0) -> Endpoint { Endpoint(.unspecified, port) }

    public var description: String {
        let text = "\(address)"
        return text.contains(":") ? "[\(text)]:\(port)" : "\(text):\(port)"
    }
}

/// Why a socket operation failed, with the errno a POSIX socket would give.
public enum SocketError: Error, Hashable, Sendable, CustomStringConvertible {
    case addressInUse
    case addressNotAvailable
    case invalidArgument(String)
    case notConnected
    case alreadyConnected
    case connectionRefused
    case connectionReset
    case connectionAborted
    case hostUnreachable
    case networkUnreachable
    /// A filter on the path refused the packets (EACCES; ICMPv6
    /// "administratively prohibited").
    case permissionDenied
    case timedOut
    case messageTooLong
    case noBufferSpace
    case protocolError
    case shutDown
    /// The socket has been closed (or never existed).
    case closed

    public var errno: Int32 {
        switch self {
        case .addressInUse: 98
        case .addressNotAvailable: 99
        case .invalidArgument: 22
        case .notConnected: 107
        case .alreadyConnected: 106
        case .connectionRefused: 111
        case .connectionReset: 104
        case .connectionAborted: 103
        case .hostUnreachable: 113
        case .networkUnreachable: 101
        case .permissionDenied: 13
        case .timedOut: 110
        case .messageTooLong: 90
        case .noBufferSpace: 105
        case .protocolError: 71
        case .shutDown: 32
        case .closed: 9
        }
    }

    public var description: String {
        switch self {
        case .addressInUse: "address already in use"
        case .addressNotAvailable: "address not available"
        case .invalidArgument(let why): "invalid argument: \(why)"
        case .notConnected: "not connected"
        case .alreadyConnected: "already connected"
        case .connectionRefused: "connection refused"
        case .connectionReset: "connection reset by peer"
        case .connectionAborted: "connection aborted"
        case .hostUnreachable: "no route to host"
        case .networkUnreachable: "network is unreachable"
        case .permissionDenied: "permission denied"
        case .timedOut: "connection timed out"
        case .messageTooLong: "message too long"
        case .noBufferSpace: "no buffer space available"
        case .protocolError: "protocol error"
        case .shutDown: "cannot send after shutdown"
        case .closed: "socket closed"
        }
    }
}

extension Stack {
    /// A new socket identifier.
    func makeSocketID() -> SocketID {
        nextSocketID += 1
        return SocketID(rawValue: nextSocketID)
    }

    /// Notes that something happened on a socket (readable, writable,
    /// error, closed) for whoever waits on it.
    func signal(_ socket: SocketID) {
        // The common case, a socket signalled again (each segment of a
        // burst), needs no hash.
        if socketEvents.last == socket { return }
        if pendingSocketEvents.insert(socket).inserted { socketEvents.append(socket) }
    }

    /// Sockets with events since the last call, in the order they happened.
    /// The bindings call this after each batch to wake the operations that
    /// wait on those sockets.
    public func takeSocketEvents() -> [SocketID] {
        guard !socketEvents.isEmpty else { return [] }
        defer {
            socketEvents.removeAll(keepingCapacity: true)
            pendingSocketEvents.removeAll(keepingCapacity: true)
        }
        return socketEvents
    }

    /// Whether any socket has an event to report.
    public var hasSocketEvents: Bool { !socketEvents.isEmpty }

    /// An ephemeral port (RFC 6056 algorithm 1: a random start, then the
    /// next free one) from the configured range, for which `isFree` holds.
    func ephemeralPort(_ isFree: (UInt16) -> Bool) -> UInt16? {
        let range = configuration.ephemeralPorts
        let count = Int(range.upperBound) - Int(range.lowerBound) + 1
        let start = Int.random(in: 0..<count, using: &random)
        for step in 0..<count {
            let port = UInt16(Int(range.lowerBound) + (start + step) % count)
            if isFree(port) { return port }
        }
        return nil
    }
}
