import DequeModule
import HeapModule
import NetstackWire

/// Local and remote endpoint: what identifies a connection.
struct FourTuple<I: IPVersion>: Hashable {
    var local: Endpoint<I>
    var remote: Endpoint<I>
}

/// Per-socket settings chosen before a connection exists, given to it when
/// it does (and, for a listener, to each connection it accepts).
struct TCPSocketOptions {
    var sendBuffer: Int
    var receiveBuffer: Int
    var noDelay = false
    var keepalive = false
    var keepaliveTiming: KeepaliveTiming
    var userTimeout: Duration?

    init(_ settings: TCPSettings) {
        sendBuffer = settings.sendBuffer
        receiveBuffer = settings.receiveBuffer
        keepaliveTiming = settings.keepalive
    }
}

/// A socket that is neither listening nor connected yet.
final class TCPOpenSocket<I: IPVersion> {
    var local: Endpoint<I>?
    var options: TCPSocketOptions

    init(options: TCPSocketOptions) {
        self.options = options
    }
}

/// A listening socket: its half-open connections are counted, its completed
/// ones wait in the accept queue (RFC 9293 §3.10.2, Linux's two queues).
final class TCPListener<I: IPVersion> {
    let id: SocketID
    let local: Endpoint<I>
    var backlog: Int
    var options: TCPSocketOptions
    /// Connections in SYN-RECEIVED.
    var halfOpen = 0
    /// Established connections not yet accepted, oldest first.
    var acceptQueue: Deque<SocketID> = []

    init(id: SocketID, local: Endpoint<I>, backlog: Int, options: TCPSocketOptions) {
        self.id = id
        self.local = local
        self.backlog = backlog
        self.options = options
    }
}

enum TCPEntry<I: IPVersion> {
    case open(TCPOpenSocket<I>)
    case listener(TCPListener<I>)
    case connection(TCPConnection<I>)
}

/// A connection's timer in the table's heap. A connection has at most one
/// entry that matters: the one equal to its `scheduledDeadline`; others are
/// stale and skipped when they come up.
struct TCPTimerEntry: Comparable {
    var deadline: Instant
    var socket: SocketID

    static func < (a: TCPTimerEntry, b: TCPTimerEntry) -> Bool {
        (a.deadline, a.socket) < (b.deadline, b.socket)
    }
}

/// The TCP sockets of one IP version.
struct TCPTable<I: IPVersion> {
    var entries: [SocketID: TCPEntry<I>] = [:]
    var connections: [FourTuple<I>: TCPConnection<I>] = [:]
    var listeners: [UInt16: [TCPListener<I>]] = [:]
    /// Sockets holding a port: explicitly bound ones, listeners, and
    /// connections that picked their port themselves (not accepted ones).
    var bound: [UInt16: [SocketID]] = [:]
    var timers = Heap<TCPTimerEntry>()
    /// Connections that stopped sending for want of output buffers, oldest first.
    var blockedOutput: [SocketID] = []
    /// Connections owed an acknowledgment of in-order data at the end of the
    /// frames being received (`acknowledgeAtFlush`).
    var acknowledgeAtFlush: [SocketID] = []
    /// An empty list with room, traded with `acknowledgeAtFlush` when it is
    /// worked through (no allocation per turn).
    var spareSocketList: [SocketID] = []
    var timeWaitCount = 0
    /// Connections not in TIME-WAIT (nor CLOSED), in all and per remote address.
    var liveCount = 0
    var liveByPeer: [I.Address: Int] = [:]

    /// Whether one more connection with `peer` fits the limits.
    func admits(_ peer: I.Address, _ settings: TCPSettings) -> Bool {
        liveCount < settings.maximumConnections && liveByPeer[peer, default: 0] < settings.maximumConnectionsPerPeer
    }

    /// Indexes `connection` under its four-tuple and counts it as live.
    mutating func insert(_ connection: TCPConnection<I>) {
        connections[FourTuple(local: connection.local, remote: connection.remote)] = connection
        liveCount += 1
        liveByPeer[connection.remote.address, default: 0] += 1
    }

    /// Counts `connection` as no longer live (it entered TIME-WAIT or closed).
    mutating func retire(_ connection: TCPConnection<I>) {
        liveCount -= 1
        let peer = connection.remote.address
        if let count = liveByPeer[peer], count > 1 { liveByPeer[peer] = count - 1 } else { liveByPeer[peer] = nil }
    }

    /// Drops the heap's stale entries once they outnumber the live ones (a
    /// connection has at most one live entry, the one at its
    /// `scheduledDeadline`; an earlier deadline or its end leaves the old one
    /// in place). Without this, a connection rate of 80,000/s kept a quarter
    /// of a million dead entries around, each passed over a second later, and
    /// the heap's sifting was 7% of a connection's cost. Rebuilding costs
    /// the heap's size, at most once per that many insertions.
    mutating func compactTimersIfStale() {
        guard timers.count > 2 * entries.count + 1024 else { return }
        let live = timers.unordered.filter { entry in connection(entry.socket)?.scheduledDeadline == entry.deadline }
        timers = Heap(live)
    }

    func connection(_ id: SocketID) -> TCPConnection<I>? {
        if case .connection(let connection)? = entries[id] { return connection }
        return nil
    }

    func listener(_ id: SocketID) -> TCPListener<I>? {
        if case .listener(let listener)? = entries[id] { return listener }
        return nil
    }

    /// The local endpoint a socket holds in `bound`.
    func boundEndpoint(_ id: SocketID) -> Endpoint<I>? {
        switch entries[id] {
        case .open(let socket)?: socket.local
        case .listener(let listener)?: listener.local
        case .connection(let connection)?: connection.local
        case nil: nil
        }
    }

    /// Whether binding `local` clashes with a socket holding its port.
    func conflicts(_ local: Endpoint<I>) -> Bool {
        (bound[local.port] ?? []).contains { id in
            guard let other = boundEndpoint(id) else { return false }
            return other.address.isUnspecified || local.address.isUnspecified || other.address == local.address
        }
    }

    /// The listener for a segment to `local`: one bound to that address, else
    /// one bound to the wildcard.
    func listener(for local: Endpoint<I>) -> TCPListener<I>? {
        guard let candidates = listeners[local.port] else { return nil }
        return candidates.first { $0.local.address == local.address }
            ?? candidates.first { $0.local.address.isUnspecified }
    }

    mutating func hold(_ port: UInt16, by id: SocketID) {
        bound[port, default: []].append(id)
    }

    mutating func release(_ port: UInt16, by id: SocketID) {
        bound[port]?.removeAll { $0 == id }
        if bound[port]?.isEmpty == true { bound.removeValue(forKey: port) }
    }
}

/// What a query sees of a TCP socket (like a line of `ss`).
public struct TCPSocketInfo<I: IPVersion>: Sendable, Hashable {
    public var id: SocketID
    public var state: TCPState
    public var local: Endpoint<I>?
    public var remote: Endpoint<I>?
    /// Unread received bytes (or, for a listener, connections waiting to be accepted).
    public var receiveQueue: Int
    /// Unacknowledged and unsent bytes (or, for a listener, its backlog).
    public var sendQueue: Int
    public var smoothedRTT: Duration?
    public var congestionWindow: Int?
    public var orphan: Bool
    /// Bytes of memory its send and receive rings hold now (they grow with
    /// use and small ones are let go when empty).
    public var bufferMemory = 0
    /// Payload bytes per full segment (the peer's MSS and the path MTU, less
    /// options); nil before the connection has one.
    public var sendMSS: Int?
}

/// How a connect is going, for the operation waiting on it.
public enum TCPConnectStatus: Sendable, Hashable {
    case inProgress
    case established
    case failed(SocketError)
}
