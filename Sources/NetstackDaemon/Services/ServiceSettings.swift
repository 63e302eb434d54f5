/// The daemon's built-in services: the classic small servers of RFC 862–867.
public enum BuiltinServiceKind: String, CaseIterable, Sendable, Hashable {
    /// RFC 862: sends back what it receives.
    case echo
    /// RFC 863: throws away what it receives.
    case discard
    /// RFC 867: answers with the date and time.
    case daytime
    /// RFC 864: answers with characters (a datagram of them, or an endless stream).
    case chargen
    /// An iperf3 server (iperf3's own protocol, TCP and UDP; `IperfServer`).
    case iperf3
    /// HTTP/1.1 with the Prometheus text at /metrics and the status page at
    /// / (`StatusServer`), TCP only.
    case metrics
    /// The same server on port 80, for a browser.
    case status

    /// Served by `StatusServer` (HTTP), TCP only.
    public var isWeb: Bool { self == .metrics || self == .status }

    public var defaultPort: UInt16 {
        switch self {
        case .echo: 7
        case .discard: 9
        case .daytime: 13
        case .chargen: 19
        case .iperf3: 5201
        case .metrics: 9100
        case .status: 80
        }
    }
}

public enum TransportKind: String, CaseIterable, Sendable, Hashable {
    case udp
    case tcp
}

/// What happens to a TCP connection that arrives while a service already
/// serves its `max-connections`.
public enum OverflowPolicy: String, CaseIterable, Sendable, Hashable {
    /// It is accepted and waits (in arrival order) for a connection to end.
    case wait
    /// It is reset at once.
    case refuse
}

/// One built-in service as configured: which, on which port, over what, and
/// the limits of the middleware stack around it.
public struct ServiceSetting: Sendable, Hashable {
    public var kind: BuiltinServiceKind
    public var port: UInt16
    public var transports: Set<TransportKind>
    /// TCP connections served at once.
    public var maxConnections: Int = 16_384
    public var overflow: OverflowPolicy = .wait
    /// A TCP connection that moves no byte for this long is reset; nil: never.
    public var idleTimeout: Duration? = .seconds(300)
    /// New TCP connections, or UDP datagrams, per second (a token bucket
    /// with a burst of one second's worth); nil: no limit. Connections over
    /// the rate wait; datagrams over it are dropped.
    public var rateLimit: Double?

    public init(kind: BuiltinServiceKind, port: UInt16? = nil, transports: Set<TransportKind>) {
        self.kind = kind
        self.port = port ?? kind.defaultPort
        self.transports = transports
        // A scrape is one short request: slow or idle clients go soon.
        if kind.isWeb { idleTimeout = .seconds(10) }
    }
}
