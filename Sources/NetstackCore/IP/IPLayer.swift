import NetstackWire

/// Whether an address may be used yet (RFC 4862 §5.4). IPv4 addresses are
/// always preferred: the stack announces them but does not probe (RFC 5227
/// probing is optional).
public enum AddressState: String, Sendable {
    /// Duplicate address detection is running; the address is not used.
    case tentative
    case preferred
    /// Another node on the link has it; it stays unused.
    case duplicate
}

/// An address of the interface and where it is in its life.
public struct AssignedAddress<I: IPVersion>: Sendable {
    public var interface: InterfaceAddress<I>
    public var state: AddressState
    /// DAD probes still to send, and when the next step is due.
    var probesLeft = 0
    var deadline: Instant?

    public var address: I.Address { interface.address }
}

/// Where a packet goes next on the link.
enum NextHop<I: IPVersion> {
    /// A known link address: broadcast, a multicast group, or a neighbour
    /// whose address is already known.
    case link(MACAddress)
    /// A unicast neighbour, to be resolved.
    case neighbor(I.Address)
}

/// How a received packet was addressed to us.
enum DestinationKind: Sendable {
    case unicast
    case broadcast
    case multicast
}

/// The state of one IP version in the stack: addresses, routes, neighbours,
/// reassembly and ICMP limits. The logic that uses it lives in extensions of
/// `Stack` generic over `I`, which reach this through `I.layer(of:)`.
public final class IPLayer<I: IPVersion> {
    public internal(set) var addresses: [AssignedAddress<I>]
    var gateway: I.Address?
    /// Routers learned from router advertisements, with their expiry.
    var routers: [I.Address: Instant] = [:]
    /// On-link prefixes learned from router advertisements, with their expiry.
    var learnedPrefixes: [Subnet<I>: Instant] = [:]
    var neighbors: NeighborTable<I>
    var udp = UDPTable<I>()
    var tcp = TCPTable<I>()
    var reassembler: Reassembler<I>
    var icmpErrors: TokenBucket
    var icmpErrorsByDestination: DestinationBuckets<I.Address>?
    /// The next identification for fragmented (and, for IPv4, all) datagrams.
    var nextIdentification: UInt32
    var hopLimit: UInt8
    /// The largest packet this version sends in one frame (IPv6 router
    /// advertisements may lower it, RFC 4861 §6.3.4).
    var linkMTU: Int
    /// Path MTUs below the link MTU, learned from ICMP.
    var pathMTUs: PathMTUTable<I.Address>
    /// Whether echo requests to a broadcast or group address get answers.
    var answersGroupEcho = true

    init(addresses: [InterfaceAddress<I>], gateway: I.Address?, configuration: StackConfiguration,
         random: inout StackRandom, now: Instant) {
        self.addresses = addresses.map { AssignedAddress(interface: $0, state: .preferred) }
        self.gateway = gateway
        neighbors = NeighborTable(limits: configuration.neighbors)
        reassembler = Reassembler(limits: configuration.reassembly)
        icmpErrors = TokenBucket(ratePerSecond: configuration.icmp.errorsPerSecond, burst: configuration.icmp.burst,
                                 now: now)
        icmpErrorsByDestination = configuration.icmp.perDestinationInterval.map {
            DestinationBuckets(interval: $0, burst: configuration.icmp.perDestinationBurst,
                               capacity: configuration.icmp.trackedDestinations)
        }
        nextIdentification = UInt32.random(in: 0...UInt32.max, using: &random)
        hopLimit = configuration.defaultHopLimit
        linkMTU = configuration.mtu
        pathMTUs = PathMTUTable(capacity: configuration.pathMTUEntries)
    }

    /// The largest packet to send to `destination` in one piece.
    func pathMTU(to destination: I.Address) -> Int {
        guard !pathMTUs.entries.isEmpty, let learned = pathMTUs.mtu(to: destination) else { return linkMTU }
        return min(linkMTU, learned)
    }

    /// The addresses in use (not tentative or duplicate).
    var usableAddresses: some Sequence<I.Address> {
        addresses.lazy.filter { $0.state == .preferred }.map(\.address)
    }

    func state(of address: I.Address) -> AddressState? {
        addresses.first { $0.address == address }?.state
    }

    func isOurs(_ address: I.Address) -> Bool {
        addresses.contains { $0.address == address && $0.state == .preferred }
    }

    /// Whether `address` is on the link: inside a prefix of ours or one a
    /// router advertised.
    func isOnLink(_ address: I.Address, now: Instant) -> Bool {
        if addresses.contains(where: { $0.state != .duplicate && $0.interface.subnet.contains(address) }) {
            return true
        }
        return learnedPrefixes.contains { $0.key.contains(address) && $0.value > now }
    }

    /// The router to send off-link traffic to: a live advertised one first,
    /// then the configured gateway.
    func defaultRouter(now: Instant) -> I.Address? {
        if let router = routers.filter({ $0.value > now }).min(by: { $0.key < $1.key })?.key { return router }
        return gateway
    }

    func takeIdentification() -> UInt32 {
        defer { nextIdentification &+= 1 }
        return nextIdentification
    }
}

/// A token bucket: `ratePerSecond` tokens a second, at most `burst` saved.
/// Used to rate-limit ICMP errors (RFC 4443 §2.4(f)).
struct TokenBucket {
    let ratePerSecond: Int
    let burst: Int
    private var tokens: Double
    private var updated: Instant

    init(ratePerSecond: Int, burst: Int, now: Instant) {
        self.ratePerSecond = ratePerSecond
        self.burst = burst
        tokens = Double(burst)
        updated = now
    }

    /// Takes a token if one is available.
    mutating func take(now: Instant) -> Bool {
        let elapsed = max(0, (now - updated).seconds)
        tokens = min(Double(burst), tokens + elapsed * Double(ratePerSecond))
        updated = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// A token bucket per destination: `burst` tokens, one more per `interval`
/// (Linux keeps the same in its inet_peer entries). At most `capacity`
/// destinations are tracked; a full table first forgets the ones whose
/// bucket has refilled (idle for burst × interval, indistinguishable from
/// new), and if all are recent refuses new destinations, so that spoofed
/// sources cannot grow it.
struct DestinationBuckets<Address: Hashable> {
    let interval: Duration
    let burst: Int
    let capacity: Int
    private var buckets: [Address: (tokens: Double, updated: Instant)] = [:]
    /// When a sweep of a full table last found nothing to forget.
    private var fruitlessSweep: Instant?

    init(interval: Duration, burst: Int, capacity: Int) {
        self.interval = interval
        self.burst = burst
        self.capacity = max(1, capacity)
    }

    var count: Int { buckets.count }

    /// Takes a token for `destination` if it has one.
    mutating func take(_ destination: Address, now: Instant) -> Bool {
        let perSecond = 1 / max(interval.seconds, 1e-9)
        if var bucket = buckets[destination] {
            let elapsed = max(0, (now - bucket.updated).seconds)
            bucket.tokens = min(Double(burst), bucket.tokens + elapsed * perSecond)
            bucket.updated = now
            let allowed = bucket.tokens >= 1
            if allowed { bucket.tokens -= 1 }
            buckets[destination] = bucket
            return allowed
        }
        guard burst > 0 else { return false }
        if buckets.count >= capacity {
            guard fruitlessSweep.map({ now - $0 >= interval }) ?? true else { return false }
            let refill = interval * burst
            buckets = buckets.filter { now - $0.value.updated < refill }
            guard buckets.count < capacity else {
                fruitlessSweep = now
                return false
            }
        }
        buckets[destination] = (Double(burst - 1), now)
        return true
    }
}
