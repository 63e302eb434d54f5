import NetstackWire

/// Everything the core needs to know about its interface and its limits.
///
/// The defaults are Linux's where Linux has one; every limit that bounds memory
/// is here, so a test can make it small.
public struct StackConfiguration: Sendable {
    /// The stack's own MAC address.
    public var mac: MACAddress
    /// The link MTU: the largest IP packet sent in one frame.
    public var mtu: Int = 1500
    public var ipv4Addresses: [InterfaceAddress<IPv4>] = []
    public var ipv6Addresses: [InterfaceAddress<IPv6>] = []
    /// Whether to add the EUI-64 link-local address (fe80::/64) derived from
    /// the MAC (RFC 4862 §5.3).
    public var ipv6LinkLocal = true
    public var ipv4Gateway: IPv4Address?
    public var ipv6Gateway: IPv6Address?
    /// Hop limit / TTL of packets the stack originates.
    public var defaultHopLimit: UInt8 = 64

    public var neighbors = NeighborLimits()
    public var reassembly = ReassemblyLimits()
    public var icmp = ICMPLimits()
    public var ipv6Startup = IPv6StartupSettings()
    /// Ports for ephemeral binds (Linux's ip_local_port_range default).
    public var ephemeralPorts: ClosedRange<UInt16> = 32768...60999
    /// Bytes a UDP socket may hold queued (Linux's rmem_default).
    public var udpReceiveBuffer = 212_992
    /// Bytes every socket buffer (TCP send and receive rings, UDP queues)
    /// may hold together; each may hold 4 KiB whatever the total (see
    /// `SocketMemory`). Linux's tcp_mem is a fraction of RAM; 256 MiB holds
    /// a 1.25 MiB window for 200 bulk connections at once.
    public var socketBufferMemory = 256 << 20
    /// Destinations whose path MTU (learned from ICMP, RFC 1191 / RFC 8201)
    /// is remembered at once; past it the entry closest to expiry goes.
    public var pathMTUEntries = 1024
    public var tcp = TCPSettings()
    /// Gratuitous ARP announcements of each IPv4 address on start (RFC 5227
    /// §2.3: two, two seconds apart).
    public var gratuitousARPCount = 2

    public init(mac: MACAddress) {
        self.mac = mac
    }

    /// The daemon's default: 02:00:00:00:00:01, 192.168.69.1/24, fdaa::1/64,
    /// gateways 192.168.69.100 and fdaa::100 (smoltcp's tap0 example layout).
    public static var standard: StackConfiguration {
        var configuration = StackConfiguration(mac: MACAddress(0x02, 0, 0, 0, 0, 0x01))
        configuration.ipv4Addresses = [InterfaceAddress(IPv4Address(192, 168, 69, 1), prefixLength: 24)]
        configuration.ipv6Addresses = [InterfaceAddress(IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 1), prefixLength: 64)]
        configuration.ipv4Gateway = IPv4Address(192, 168, 69, 100)
        configuration.ipv6Gateway = IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100)
        return configuration
    }
}

/// Neighbour cache timing and caps (RFC 4861 §10 constants; ARP uses the same
/// machine, as Linux does).
public struct NeighborLimits: Sendable {
    /// Base reachable time; each entry draws 0.5–1.5 times this (RFC 4861 §6.3.2).
    public var reachableTime: Duration = .seconds(30)
    /// Time between solicitations while resolving or probing.
    public var retransmitTime: Duration = .seconds(1)
    /// Multicast (or broadcast) solicitations before giving up on a new neighbour.
    public var maximumMulticastSolicitations = 3
    /// Unicast probes of a stale neighbour before forgetting it.
    public var maximumUnicastSolicitations = 3
    /// Time a stale entry waits in DELAY before probing.
    public var delayFirstProbeTime: Duration = .seconds(5)
    /// Frames kept per unresolved neighbour; older ones are dropped.
    public var pendingFramesPerNeighbor = 8
    /// Entries in the table at most; when full, the oldest entry still
    /// resolving goes first, then the least recently used resolved one.
    public var maximumEntries = 1024
    /// Stale entries unused this long are removed.
    public var staleLifetime: Duration = .seconds(600)
}

/// Fragment reassembly bounds (RFC 8200 §4.5, RFC 791, RFC 5722).
public struct ReassemblyLimits: Sendable {
    /// Memory all incomplete datagrams may hold together; the oldest are
    /// evicted beyond it (Linux's ipfrag_high_thresh is 4 MiB).
    public var totalBytes = 4 * 1024 * 1024
    /// The largest datagram reassembled (IP's own maximum).
    public var maximumDatagramBytes = 65_535
    /// Incomplete datagrams at most, whatever their size.
    public var maximumDatagrams = 1024
    /// Overrides the version's timeout (30 s for IPv4, 60 s for IPv6).
    public var timeout: Duration?
}

/// ICMP error rate limiting (RFC 4443 §2.4(f), RFC 1812 §4.3.2.8): a token
/// bucket per version for all errors, as Linux's icmp_msgs_per_sec /
/// icmp_msgs_burst, and one per destination, as Linux's icmp_ratelimit
/// with its burst of 6, so that a scan of closed ports from one host draws a
/// handful of errors, not one per probe. "Packet too big" is exempt from the
/// per-destination limit (path MTU discovery depends on it; Linux does the
/// same).
public struct ICMPLimits: Sendable {
    public var errorsPerSecond = 1000
    public var burst = 50
    /// One more error to a destination per interval; nil: no per-destination limit.
    public var perDestinationInterval: Duration? = .seconds(1)
    public var perDestinationBurst = 6
    /// Destinations tracked at most; when all are recent, errors to new
    /// ones wait (are not sent) until old ones are idle.
    public var trackedDestinations = 4096
    /// Answer echo requests sent to an IPv4 broadcast address (Linux: no).
    public var answerBroadcastEcho = false
}

/// What an IPv6 interface does when it comes up (RFC 4862, RFC 4861 §6.3.7).
public struct IPv6StartupSettings: Sendable {
    /// Neighbour solicitations sent to detect a duplicate address; 0 disables
    /// duplicate address detection (RFC 4862 §5.1 DupAddrDetectTransmits).
    public var dadTransmits = 1
    /// Random delay before the first DAD probe, at most (RFC 4862 §5.4.2).
    public var maximumDADDelay: Duration = .seconds(1)
    /// Router solicitations sent on start (RFC 4861 §10 MAX_RTR_SOLICITATIONS).
    public var routerSolicitations = 3
    public var routerSolicitationInterval: Duration = .seconds(4)
    /// MLDv2's robustness variable (RFC 3810 §9.1): each state change is
    /// reported this many times; 0 sends no MLD at all.
    public var mldRobustness = 2
}

/// Whether TCP negotiates ECN (RFC 3168 §6.1.1).
public enum ECNMode: String, Sendable, CaseIterable {
    /// Never: SYNs asking for it are answered without it.
    case off
    /// When the peer's SYN asks for it.
    case passive
    /// Also on connect: SYNs ask for it.
    case active
}

/// TCP's knobs, with Linux's defaults where Linux has one.
public struct TCPSettings: Sendable {
    /// Bytes a connection buffers for sending and receiving. The receive
    /// buffer is the most the stack advertises. The send buffer is larger,
    /// as Linux's grows to be (tcp_wmem): a sender that refills it from
    /// another process (a byte stream of a local program) needs more than
    /// one bandwidth-delay product in flight and queued (256 KiB held
    /// program→host at 0.4–0.8× the built-in chargen, 1 MiB at 0.6–0.9×).
    /// Rings grow with use, so an idle connection does not pay for it.
    public var sendBuffer = 1024 * 1024
    public var receiveBuffer = 256 * 1024
    /// The largest buffer a socket may ask for (window scale 7 covers 8 MiB).
    public var maximumBuffer = 8 << 20
    public var congestionControl: CongestionAlgorithm = .cubic
    /// RFC 6298 bounds. The RFC's minimum is 1 s; Linux uses 200 ms, as here.
    public var initialRTO: Duration = .seconds(1)
    public var minimumRTO: Duration = .milliseconds(200)
    public var maximumRTO: Duration = .seconds(60)
    /// Delayed acknowledgments wait at most this (Linux's 40 ms; RFC 9293
    /// §3.8.6.3 allows up to 500 ms).
    public var delayedAckTimeout: Duration = .milliseconds(40)
    /// TIME-WAIT lasts 2·MSL (Linux: 60 s, an MSL of 30 s).
    public var timeWait: Duration = .seconds(60)
    /// An orphaned connection (closed by its application) waits this long in
    /// FIN-WAIT-2 for the peer's FIN (Linux's tcp_fin_timeout).
    public var finWait2Timeout: Duration = .seconds(60)
    /// SYN and SYN-ACK retransmissions before giving up (tcp_syn_retries,
    /// tcp_synack_retries).
    public var synRetries = 6
    public var synAckRetries = 5
    /// Retransmissions of data before the connection is aborted (tcp_retries2).
    public var maximumRetransmissions = 15
    /// RFC 5961's defences against blind injection: a RST not exactly at
    /// RCV.NXT (§3) and a SYN in a synchronized state (§4) get a challenge
    /// ACK. Off, RFC 793's rules apply: a RST anywhere in the window resets,
    /// and so does a SYN (with a RST of our own), as with FreeBSD's
    /// insecure_rst and insecure_syn. Linux has no off switch; neither
    /// should a stack facing the Internet.
    public var challengeResets = true
    public var challengeSyns = true
    /// RACK's time-based loss detection (RFC 8985 §6) beside the
    /// duplicate-ACK rule, on connections with SACK (Linux's default too).
    public var rack = true
    /// HyStart++ (RFC 9406) in the initial slow start: leave it when the
    /// round trip grows, before the queue overflows (Linux's CUBIC has
    /// HyStart on by default too).
    public var hyStart = true
    /// Keepalive timing of new sockets (each may change its own).
    public var keepalive = KeepaliveTiming()
    /// Half-open connections per listener before SYN cookies (or drops).
    public var synQueueLimit = 256
    /// The largest listen backlog (somaxconn).
    public var maximumBacklog = 4096
    /// Answer SYNs with cookies when the SYN queue is full (RFC 4987 §3.6).
    public var synCookies = true
    /// Disjoint out-of-order ranges kept per connection; more are dropped.
    public var outOfOrderRanges = 64
    /// Connections in TIME-WAIT at most; beyond, connections close at once.
    public var timeWaitLimit = 16_384
    /// Connections in any other state (half-open included) at most, in all
    /// and with one remote address. A SYN (or a cookie's ACK) past either is
    /// dropped and counted (`tcp.connectionLimit`), a connect fails with
    /// ENOBUFS; nothing is queued. Linux bounds them only by memory; these
    /// keep one hostile host from taking every connection.
    public var maximumConnections = 65_536
    public var maximumConnectionsPerPeer = 16_384
    public var timestamps = true
    public var selectiveAcknowledgments = true
    public var windowScaling = true
    /// Explicit congestion notification (RFC 3168): answered when a peer
    /// asks (Linux's and FreeBSD's default, tcp_ecn=2), asked for on connect
    /// too (`.active`), or neither.
    public var ecn: ECNMode = .passive

    public init() {}
}

/// When keepalive probes go (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6), once a
/// socket turns them on: after `idle` without anything received, then every
/// `interval`; `probes` unanswered end the connection. The defaults are
/// Linux's (tcp_keepalive_time, _intvl, _probes); a socket changes its own
/// as with TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT.
public struct KeepaliveTiming: Sendable, Hashable {
    public var idle: Duration = .seconds(7200)
    public var interval: Duration = .seconds(75)
    public var probes = 9

    /// Linux's bounds for the socket options: 1...32767 s, 1...127 probes.
    public static let secondsRange = 1...32_767
    public static let probesRange = 1...127

    public init(idle: Duration = .seconds(7200), interval: Duration = .seconds(75), probes: Int = 9) {
        self.idle = idle
        self.interval = interval
        self.probes = probes
    }
}
