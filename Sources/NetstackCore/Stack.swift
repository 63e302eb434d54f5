import NetstackWire

/// Something the stack wants its driver to know (to log, mostly): rare
/// changes of state, not per-packet events.
public enum StackNotice: Sendable, Hashable, CustomStringConvertible {
    /// Duplicate address detection finished: the address is in use.
    case addressPreferred(String)
    /// Another node on the link has this address (RFC 4862 §5.4.5).
    case duplicateAddress(String)
    /// A neighbour claims one of our IPv4 addresses (RFC 5227 §2.4).
    case addressConflict(address: String, mac: MACAddress)
    /// A router advertisement made this router a default router.
    case routerLearned(String)
    /// A cap was reached `times` times since the last such notice (one
    /// notice per cap per `Stack.limitNoticeInterval` at most).
    case limitReached(StackLimit, value: Int, times: Int)

    /// Whether the daemon should log it as a warning.
    public var isWarning: Bool {
        switch self {
        case .duplicateAddress, .addressConflict, .limitReached: true
        case .addressPreferred, .routerLearned: false
        }
    }

    public var description: String {
        switch self {
        case .limitReached(let limit, let value, let times):
            "limit reached: \(limit) (\(value)\(limit.unit)); \(limit.consequence)"
                + (times > 1 ? " (\(times) times since the last notice)" : "")
        case .addressPreferred(let address): "address \(address) is ready"
        case .duplicateAddress(let address): "address \(address) is a duplicate on the link; not using it"
        case .addressConflict(let address, let mac): "\(mac) claims our address \(address)"
        case .routerLearned(let router): "default router \(router) learned from an advertisement"
        }
    }
}

/// The caps of `StackConfiguration` whose reaching the stack reports as a
/// notice (rate-limited), besides counting what it dropped.
public enum StackLimit: Int, CaseIterable, Sendable, CustomStringConvertible {
    case socketBufferMemory, reassemblyMemory, neighborEntries, tcpConnections, synQueue, listenQueue

    public var description: String {
        switch self {
        case .socketBufferMemory: "socket buffer memory"
        case .reassemblyMemory: "reassembly memory"
        case .neighborEntries: "neighbour entries"
        case .tcpConnections: "TCP connections, in all or with one peer"
        case .synQueue: "half-open connections of a listener"
        case .listenQueue: "a listener's accept queue"
        }
    }

    var unit: String { self == .socketBufferMemory || self == .reassemblyMemory ? " bytes" : "" }

    /// What the stack does at the cap.
    var consequence: String {
        switch self {
        case .socketBufferMemory: "buffers stop growing, data that does not fit is dropped (drop.tcp.bufferMemory, drop.udp.bufferMemory)"
        case .reassemblyMemory: "the oldest incomplete datagrams are dropped (drop.fragment.evicted)"
        case .neighborEntries: "entries still resolving, then the least recently used, are evicted (neighbor.evicted)"
        case .tcpConnections: "new SYNs are dropped and connects fail (drop.tcp.connectionLimit)"
        case .synQueue: "SYNs are answered with SYN cookies (tcp.synCookiesSent)"
        case .listenQueue: "SYNs and completing ACKs are dropped until the application accepts (drop.tcp.listenOverflow)"
        }
    }
}

/// One cap and what it holds now.
public struct ResourceUse: Sendable, Hashable {
    public var name: String
    public var inUse: Int
    public var limit: Int

    init(_ name: String, _ inUse: Int, _ limit: Int) {
        (self.name, self.inUse, self.limit) = (name, inUse, limit)
    }
}

/// The stack's core: sans-I/O and deterministic.
///
/// It takes Ethernet frames and the time (`receive(frame:now:)`), runs timers
/// when asked (`poll(now:)`, by `nextDeadline`), and queues the frames it wants
/// sent (`transmit(_:)`). It never touches a file descriptor, a clock or a
/// thread, so the daemon's engine, fixture replay and the simulator all drive
/// the very same code, and two stacks can live in one process.
///
/// Everything above the link layer is generic over `IPVersion`; the per-version
/// state is in `ipv4` and `ipv6`, and the logic in extensions of `Stack`.
public final class Stack {
    public let configuration: StackConfiguration
    public let mac: MACAddress
    public let mtu: Int
    public internal(set) var counters = Counters()
    /// What the link finishes for the stack (set by the driver once the
    /// device has accepted it). With a virtio header, every frame given to
    /// `receive` and handed out by `transmit` starts with one.
    public var offloads = LinkOffloads.none
    let ipv4: IPLayer<IPv4>
    let ipv6: IPLayer<IPv6>
    var output: FrameOutput
    var random: StackRandom
    /// The time of the call being handled.
    var now: Instant
    /// Group MAC addresses we accept: all-nodes, all-hosts, solicited-node groups.
    var acceptedGroupMACs: Set<MACAddress> = []
    /// Scratch space where datagrams too big for one frame are built before
    /// being cut into fragments.
    var fragmentScratch: [UInt8] = []
    var notices: [StackNotice] = []
    /// Per cap: when its last notice went out, and how often it was
    /// reached since.
    var limitNotices = [(last: Instant?, times: Int)](repeating: (nil, 0), count: StackLimit.allCases.count)
    /// The memory every socket buffer holds, against its cap.
    let socketMemory: SocketMemory
    var nextSocketID: UInt64 = 0
    /// The key of TCP's keyed hashes (initial sequence numbers, timestamp
    /// offsets, SYN cookies), drawn at start.
    let tcpSecret: (UInt64, UInt64)
    /// Sockets with something to report, in order, each once.
    var socketEvents: [SocketID] = []
    var pendingSocketEvents: Set<SocketID> = []

    // Start-up work (RFC 5227 announcements, RFC 4861 router solicitation).
    var announcementsLeft: Int
    var announcementDeadline: Instant?
    var routerSolicitationsLeft = 0
    var routerSolicitationDeadline: Instant?
    /// The groups reported to MLD snoopers and the reports still to send.
    var mld = MulticastListenerState()

    /// Builds a stack that starts at `now`. `seed` feeds its randomness
    /// (identifiers, timer jitter, ports, initial sequence numbers).
    public init(configuration: StackConfiguration, now: Instant, seed: UInt64) {
        self.configuration = configuration
        socketMemory = SocketMemory(limit: configuration.socketBufferMemory)
        mac = configuration.mac
        mtu = configuration.mtu
        self.now = now
        var random = StackRandom(seed: seed)
        ipv4 = IPLayer(addresses: configuration.ipv4Addresses, gateway: configuration.ipv4Gateway,
                       configuration: configuration, random: &random, now: now)
        var v6Addresses = configuration.ipv6Addresses
        if configuration.ipv6LinkLocal {
            let linkLocal = InterfaceAddress<IPv6>(.linkLocal(eui64: configuration.mac), prefixLength: 64)
            if !v6Addresses.contains(linkLocal) { v6Addresses.insert(linkLocal, at: 0) }
        }
        ipv6 = IPLayer(addresses: v6Addresses, gateway: configuration.ipv6Gateway,
                       configuration: configuration, random: &random, now: now)
        tcpSecret = (random.next(), random.next())
        self.random = random
        output = FrameOutput(mtu: configuration.mtu)
        announcementsLeft = configuration.ipv4Addresses.isEmpty ? 0 : configuration.gratuitousARPCount
        announcementDeadline = announcementsLeft > 0 ? now : nil
        ipv4.answersGroupEcho = configuration.icmp.answerBroadcastEcho
        startDuplicateAddressDetection(now: now)
        updateAcceptedGroups()
    }

    // MARK: Driving the stack

    /// Handles one received Ethernet frame (after its virtio header, when
    /// `offloads.virtioHeader`). Malformed or unwanted frames are counted by
    /// reason and dropped; replies are queued for `transmit`.
    public func receive(frame bytes: RawSpan, now: Instant) {
        self.now = now
        counters.count(.framesReceived)
        counters.count(.bytesReceived, by: bytes.byteCount)
        guard offloads.virtioHeader else { return receiveEthernet(bytes, offload: .none) }
        let header: VirtioNetHeader
        do {
            header = try VirtioNetHeader(bytes)
        } catch {
            return counters.drop(error)
        }
        receiveEthernet(bytes.extracting(VirtioNetHeader.length...), offload: ReceiveOffload(header))
    }

    private func receiveEthernet(_ bytes: RawSpan, offload: ReceiveOffload) {
        let ethernet: EthernetFrame
        do {
            ethernet = try EthernetFrame(bytes)
        } catch {
            counters.drop(error)
            return
        }
        guard ethernet.vlan == nil else { return counters.drop(.vlanTagged) }
        let destination = ethernet.destination
        guard destination == mac || destination.isBroadcast || acceptedGroupMACs.contains(destination) else {
            return counters.drop(.foreignDestinationMAC)
        }
        let source = ethernet.source
        guard source != mac, source.isUnicast else { return counters.drop(.badSourceMAC) }
        switch ethernet.etherType {
        case .arp:
            guard offload.segmentation == .none else { return counters.drop(WireError(.virtio, .badValue)) }
            receiveARP(ethernet.payload)
        case .ipv4:
            receiveIPv4(ethernet.payload, linkGroup: destination.isMulticast, offload: offload)
        case .ipv6:
            receiveIPv6(ethernet.payload, linkGroup: destination.isMulticast, offload: offload)
        default:
            counters.drop(.unknownEtherType)
        }
    }

    /// Runs every timer due at `now`: neighbour solicitations and expiry,
    /// reassembly timeouts, duplicate address detection, announcements.
    public func poll(now: Instant) {
        self.now = now
        pollNeighbors(IPv4.self)
        pollNeighbors(IPv6.self)
        pollTCP(IPv4.self)
        pollTCP(IPv6.self)
        expireFragments(IPv4.self)
        expireFragments(IPv6.self)
        ipv4.pathMTUs.expire(now: now)
        ipv6.pathMTUs.expire(now: now)
        pollAnnouncements()
        pollDuplicateAddressDetection()
        pollRouterSolicitations()
        pollMulticastListening()
        expireRouterInformation()
    }

    /// When `poll` next has work to do; nil if no timer is running.
    public var nextDeadline: Instant? {
        var deadline = earliest(announcementDeadline, routerSolicitationDeadline)
        deadline = earliest(deadline, ipv4.neighbors.nextDeadline())
        deadline = earliest(deadline, ipv6.neighbors.nextDeadline())
        deadline = earliest(deadline, nextTCPDeadline(IPv4.self))
        deadline = earliest(deadline, nextTCPDeadline(IPv6.self))
        deadline = earliest(deadline, ipv4.reassembler.nextDeadline())
        deadline = earliest(deadline, ipv6.reassembler.nextDeadline())
        deadline = earliest(deadline, ipv4.pathMTUs.nextDeadline)
        deadline = earliest(deadline, ipv6.pathMTUs.nextDeadline)
        for address in ipv6.addresses { deadline = earliest(deadline, address.deadline) }
        deadline = earliest(deadline, mld.nextDeadline)
        return deadline
    }

    /// Whether frames are waiting for `transmit` (acknowledgments it will
    /// make included).
    public var hasOutput: Bool {
        !output.isEmpty || !ipv4.tcp.acknowledgeAtFlush.isEmpty || !ipv6.tcp.acknowledgeAtFlush.isEmpty
    }

    /// Hands every queued frame to `send` (oldest first, each with its
    /// virtio-net header when `offloads.virtioHeader`), which returns false
    /// if the device refused it; refused frames are counted and dropped.
    public func transmit(_ send: (UnsafeRawBufferPointer) -> Bool) {
        sendOwedAcknowledgments(IPv4.self)
        sendOwedAcknowledgments(IPv6.self)
        // Connections that ran out of output buffers go on once the queue is
        // drained, a few rounds at most per call.
        for _ in 0..<8 {
            let result = output.drain(virtioHeader: offloads.virtioHeader, send)
            counters.count(.framesSent, by: result.sent)
            counters.count(.bytesSent, by: result.bytes)
            for _ in 0..<result.refused { counters.drop(.deviceQueueFull) }
            let resumed4 = resumeBlockedOutput(IPv4.self)
            let resumed6 = resumeBlockedOutput(IPv6.self)
            guard resumed4 || resumed6 else { return }
        }
    }

    /// One notice per cap per this interval at most.
    static var limitNoticeInterval: Duration { .seconds(10) }

    /// `limit` was reached: a notice now, unless one went out within the
    /// interval (then it is counted for the next).
    func reachedLimit(_ limit: StackLimit) {
        var state = limitNotices[limit.rawValue]
        state.times += 1
        if let last = state.last, now - last < Self.limitNoticeInterval {
            limitNotices[limit.rawValue] = state
            return
        }
        notices.append(.limitReached(limit, value: value(of: limit), times: state.times))
        limitNotices[limit.rawValue] = (now, 0)
    }

    /// Reports the socket memory cap if it cut a buffer's growth short.
    func noteSocketMemory() {
        if socketMemory.takeRefused() { reachedLimit(.socketBufferMemory) }
    }

    private func value(of limit: StackLimit) -> Int {
        switch limit {
        case .socketBufferMemory: configuration.socketBufferMemory
        case .reassemblyMemory: configuration.reassembly.totalBytes
        case .neighborEntries: configuration.neighbors.maximumEntries
        case .tcpConnections: configuration.tcp.maximumConnections
        case .synQueue: configuration.tcp.synQueueLimit
        case .listenQueue: configuration.tcp.maximumBacklog
        }
    }

    /// Notices since the last call (address state changes and the like).
    public func takeNotices() -> [StackNotice] {
        defer { notices.removeAll() }
        return notices
    }

    // MARK: Queries

    /// The IPv4 addresses and their state.
    public var ipv4Addresses: [AssignedAddress<IPv4>] { ipv4.addresses }
    /// The IPv6 addresses (link-local included) and their state.
    public var ipv6Addresses: [AssignedAddress<IPv6>] { ipv6.addresses }
    public var ipv4Neighbors: [NeighborSnapshot<IPv4>] { ipv4.neighbors.snapshot }
    public var ipv6Neighbors: [NeighborSnapshot<IPv6>] { ipv6.neighbors.snapshot }
    /// Memory held by incomplete datagrams, both versions.
    public var reassemblyMemory: Int { ipv4.reassembler.memoryInUse + ipv6.reassembler.memoryInUse }
    /// Memory every socket buffer holds now (TCP rings, UDP queues).
    public var socketBufferMemory: Int { socketMemory.inUse }
    /// What each cap holds now against its limit, for status queries. The
    /// reassembly, neighbour and connection caps apply to each IP version.
    public var resources: [ResourceUse] {
        [ResourceUse("socket buffer memory", socketMemory.inUse, configuration.socketBufferMemory),
         ResourceUse("reassembly memory, IPv4", ipv4.reassembler.memoryInUse, configuration.reassembly.totalBytes),
         ResourceUse("reassembly memory, IPv6", ipv6.reassembler.memoryInUse, configuration.reassembly.totalBytes),
         ResourceUse("neighbour entries, ARP", ipv4.neighbors.entries.count, configuration.neighbors.maximumEntries),
         ResourceUse("neighbour entries, NDP", ipv6.neighbors.entries.count, configuration.neighbors.maximumEntries),
         ResourceUse("TCP connections, IPv4", ipv4.tcp.liveCount, configuration.tcp.maximumConnections),
         ResourceUse("TCP connections, IPv6", ipv6.tcp.liveCount, configuration.tcp.maximumConnections)]
    }
    /// Incomplete datagrams held, both versions.
    public var incompleteDatagrams: Int { ipv4.reassembler.count + ipv6.reassembler.count }

    /// Whether every address finished duplicate address detection (or failed it).
    public var addressesSettled: Bool {
        !ipv6.addresses.contains { $0.state == .tentative }
    }

    // MARK: Helpers shared by the layers

    /// Recomputes the group MAC addresses the interface listens to (RFC 4861
    /// §7.2.1: solicited-node groups of every address, tentative ones included).
    func updateAcceptedGroups() {
        var groups: Set<MACAddress> = [MACAddress(ipv6Multicast: .allNodes),
                                       MACAddress(ipv4Multicast: IPv4Address(224, 0, 0, 1))]
        for address in ipv6.addresses where address.state != .duplicate {
            groups.insert(MACAddress(ipv6Multicast: address.address.solicitedNodeMulticast))
        }
        acceptedGroupMACs = groups
        updateMulticastListening()
    }

    /// A reachable time drawn from 0.5–1.5 times the base (RFC 4861 §6.3.2).
    func randomReachableTime() -> Duration {
        let base = configuration.neighbors.reachableTime
        return random.duration(in: (base / 2)...(base * 3 / 2))
    }

    func enqueue(_ frames: [OutputFrame]) {
        for frame in frames { output.enqueue(frame) }
    }
}
