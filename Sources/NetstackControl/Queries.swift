/// What the stack queries answer, as JSON documents (`queryResult`).

public struct StatusReport: Codable, Sendable {
    public var version: String
    public var interface: String
    public var mac: String
    public var mtu: Int
    public var uptimeSeconds: Double
    public var sockets: Int
    public var controlClients: Int
    /// What the TAP's offloads came to ("refused by the kernel ..." when the
    /// daemon fell back to plain frames).
    public var offloads: String?
    /// Each of the stack's caps ([limits] in the configuration): what it
    /// holds now and its limit.
    public var resources: [ResourceReport]?
    public init(version: String, interface: String, mac: String, mtu: Int, uptimeSeconds: Double, sockets: Int,
                controlClients: Int, offloads: String? = nil, resources: [ResourceReport]? = nil) {
        self.offloads = offloads
        self.resources = resources
        self.version = version
        self.interface = interface
        self.mac = mac
        self.mtu = mtu
        self.uptimeSeconds = uptimeSeconds
        self.sockets = sockets
        self.controlClients = controlClients
    }
}

public struct ResourceReport: Codable, Sendable {
    public var name: String
    public var inUse: Int
    public var limit: Int
    public init(name: String, inUse: Int, limit: Int) {
        self.name = name
        self.inUse = inUse
        self.limit = limit
    }
}

public struct AddressReport: Codable, Sendable {
    public var family: IPFamily
    /// Address with prefix length: "192.168.69.1/24".
    public var address: String
    public var state: String
    public init(family: IPFamily, address: String, state: String) {
        self.family = family
        self.address = address
        self.state = state
    }
}

public struct NeighborReport: Codable, Sendable {
    public var family: IPFamily
    public var address: String
    public var mac: String?
    public var state: String
    public var isRouter: Bool
    public init(family: IPFamily, address: String, mac: String?, state: String, isRouter: Bool) {
        self.family = family
        self.address = address
        self.mac = mac
        self.state = state
        self.isRouter = isRouter
    }
}

/// One socket, like a line of `ss`.
public struct SocketReport: Codable, Sendable {
    public var proto: String
    public var state: String
    public var local: String
    public var remote: String
    /// Bytes (datagram: bytes of queued datagrams) waiting to be read, or
    /// for a listener connections waiting to be accepted.
    public var receiveQueue: Int
    /// Bytes not yet acknowledged or sent, or for a listener its backlog.
    public var sendQueue: Int
    public init(proto: String, state: String, local: String, remote: String, receiveQueue: Int, sendQueue: Int) {
        self.proto = proto
        self.state = state
        self.local = local
        self.remote = remote
        self.receiveQueue = receiveQueue
        self.sendQueue = sendQueue
    }
}

public struct StatsReport: Codable, Sendable {
    /// The stack's counters by name (drops by reason among them), non-zero ones.
    public var counters: [String: UInt64]
    /// The services' metrics in the Prometheus text format.
    public var metrics: String
    public init(counters: [String: UInt64], metrics: String) {
        self.counters = counters
        self.metrics = metrics
    }
}
