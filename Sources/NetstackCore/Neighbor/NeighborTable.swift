import NetstackWire

/// The reachability states of RFC 4861 §7.3.2. ARP entries follow the same
/// machine (as in Linux), with ARP requests as the solicitations.
public enum NeighborState: String, Sendable {
    /// Resolution in progress: solicitations sent, frames waiting.
    case incomplete
    /// Recently confirmed.
    case reachable
    /// Not confirmed lately; used as is, and confirmed on next use.
    case stale
    /// Used while stale; waiting a moment for an upper layer to confirm.
    case delay
    /// Being confirmed with unicast solicitations.
    case probe
    /// Set by the owner (Linux's NUD_PERMANENT): never solicited, never
    /// expired or evicted, not changed by what neighbours say.
    case permanent
}

/// One neighbour cache entry.
struct NeighborEntry {
    var mac: MACAddress?
    var state: NeighborState
    /// When the current state's timer fires (next solicitation, end of
    /// reachability, end of the delay); nil for stale entries.
    var deadline: Instant?
    /// Solicitations sent in the current incomplete or probe phase.
    var solicitations = 0
    /// Frames waiting for resolution (incomplete entries only).
    var pending: [OutputFrame] = []
    var isRouter = false
    var lastUsed: Instant
}

/// A public view of an entry, for queries and tests.
public struct NeighborSnapshot<I: IPVersion>: Hashable, Sendable {
    public var address: I.Address
    public var mac: MACAddress?
    public var state: NeighborState
    public var isRouter: Bool
}

/// What the owner of a neighbour table must do after a timer or lookup.
enum NeighborSolicitation<Address: Hashable> {
    /// Send a multicast (or broadcast) solicitation for the address.
    case multicast(Address)
    /// Send a unicast solicitation to the cached link address.
    case unicast(Address, MACAddress)
}

/// The neighbour cache of one IP version: address → link-layer address and
/// reachability, frames waiting for resolution, and the timers that drive
/// solicitation and expiry. It decides; its owner (`IPLayer`) sends.
struct NeighborTable<I: IPVersion> {
    private(set) var entries: [I.Address: NeighborEntry] = [:]
    let limits: NeighborLimits
    private var cachedDeadline: Instant?
    private var deadlineIsCurrent = true
    /// Frames of entries evicted to make room, for the owner to recycle
    /// (`takeEvicted`).
    private var evicted: [OutputFrame] = []
    /// Entries evicted since the last `takeEvicted`.
    private var evictions = 0

    init(limits: NeighborLimits) {
        self.limits = limits
    }

    var snapshot: [NeighborSnapshot<I>] {
        entries.map { NeighborSnapshot(address: $0.key, mac: $0.value.mac, state: $0.value.state,
                                       isRouter: $0.value.isRouter) }
            .sorted { $0.address < $1.address }
    }

    /// The link address to send to `address` now, if one is known. Using a
    /// stale entry starts the delay before probing (RFC 4861 §7.3.3).
    mutating func lookup(_ address: I.Address, now: Instant) -> MACAddress? {
        // One hash per frame sent: the entry is found once and changed in place.
        guard let index = entries.index(forKey: address) else { return nil }
        let entry = entries.values[index]
        guard let mac = entry.mac, entry.state != .incomplete else { return nil }
        if entry.state == .permanent { return mac }
        entries.values[index].lastUsed = now
        if entry.state == .stale {
            entries.values[index].state = .delay
            entries.values[index].deadline = now + limits.delayFirstProbeTime
            invalidateDeadline()
        }
        return mac
    }

    /// Keeps `frame` until `address` is resolved. Returns whether to send the
    /// first solicitation now, and any frame that had to make room.
    mutating func hold(_ frame: consuming OutputFrame, for address: I.Address,
                       now: Instant) -> (solicit: Bool, dropped: OutputFrame?, refused: OutputFrame?) {
        if var entry = entries[address] {
            var dropped: OutputFrame?
            if entry.pending.count >= limits.pendingFramesPerNeighbor {
                dropped = entry.pending.removeFirst()
            }
            entry.pending.append(frame)
            entry.lastUsed = now
            entries[address] = entry
            return (false, dropped, nil)
        }
        guard makeRoom(now: now) else { return (false, nil, frame) }
        var entry = NeighborEntry(mac: nil, state: .incomplete, deadline: now + limits.retransmitTime, lastUsed: now)
        entry.solicitations = 1
        entry.pending.append(frame)
        entries[address] = entry
        invalidateDeadline()
        return (true, nil, nil)
    }

    /// Records what a neighbour said about itself (RFC 4861 §7.2.3–§7.2.5; ARP
    /// replies count as solicited and overriding, other ARP traffic as
    /// unsolicited).
    ///
    /// - `solicited`: an answer to our solicitation: the entry becomes reachable.
    /// - `override`: the link address may replace a different cached one.
    /// - `create`: make an entry if there is none (stale, RFC 4861 §7.2.3).
    /// Returns the frames that were waiting for this neighbour, now addressed.
    mutating func learn(_ address: I.Address, mac: MACAddress?, solicited: Bool, override: Bool, create: Bool,
                        isRouter: Bool?, reachableFor reachable: Duration, now: Instant) -> [OutputFrame] {
        guard var entry = entries[address] else {
            guard create, let mac, makeRoom(now: now) else { return [] }
            entries[address] = NeighborEntry(mac: mac, state: .stale, deadline: nil, isRouter: isRouter ?? false,
                                             lastUsed: now)
            invalidateDeadline()
            return []
        }
        if entry.state == .permanent { return [] }
        if let isRouter { entry.isRouter = isRouter }
        var released: [OutputFrame] = []
        if entry.state == .incomplete {
            guard let mac else { return [] }
            entry.mac = mac
            entry.state = solicited ? .reachable : .stale
            entry.deadline = solicited ? now + reachable : nil
            released = entry.pending
            entry.pending = []
            for index in released.indices { released[index].setDestination(mac) }
        } else {
            let changed = mac != nil && mac != entry.mac
            if changed && !override {
                // §7.2.5: keep the old address, but stop trusting it.
                if entry.state == .reachable {
                    entry.state = .stale
                    entry.deadline = nil
                }
            } else {
                if let mac { entry.mac = mac }
                if solicited {
                    entry.state = .reachable
                    entry.deadline = now + reachable
                    entry.solicitations = 0
                } else if changed {
                    entry.state = .stale
                    entry.deadline = nil
                }
            }
        }
        entries[address] = entry
        invalidateDeadline()
        return released
    }

    /// An upper layer saw forward progress with this neighbour (RFC 4861
    /// §7.3.1): it is reachable.
    mutating func confirm(_ address: I.Address, reachableFor reachable: Duration, now: Instant) {
        guard var entry = entries[address], entry.mac != nil, entry.state != .incomplete,
              entry.state != .permanent else { return }
        entry.state = .reachable
        entry.deadline = now + reachable
        entry.solicitations = 0
        entries[address] = entry
        invalidateDeadline()
    }

    /// Sets a permanent entry, replacing what was there (its waiting
    /// frames, now addressed, are returned to be sent).
    mutating func setPermanent(_ address: I.Address, mac: MACAddress) -> [OutputFrame] {
        var released = entries[address]?.pending ?? []
        for index in released.indices { released[index].setDestination(mac) }
        entries[address] = NeighborEntry(mac: mac, state: .permanent, deadline: nil, lastUsed: .zero)
        invalidateDeadline()
        return released
    }

    mutating func remove(_ address: I.Address) -> [OutputFrame] {
        invalidateDeadline()
        return entries.removeValue(forKey: address)?.pending ?? []
    }

    /// The earliest timer of any entry.
    mutating func nextDeadline() -> Instant? {
        if !deadlineIsCurrent {
            cachedDeadline = entries.values.reduce(nil) { earliest($0, $1.deadline) }
            deadlineIsCurrent = true
        }
        return cachedDeadline
    }

    /// Runs the timers due at `now`. Returns the solicitations to send and the
    /// frames of neighbours that never answered.
    mutating func poll(now: Instant) -> (solicitations: [NeighborSolicitation<I.Address>], dropped: [OutputFrame]) {
        var solicitations: [NeighborSolicitation<I.Address>] = []
        var dropped: [OutputFrame] = []
        let due = entries.filter { $0.value.deadline.map { $0 <= now } ?? false }.map(\.key)
        for address in due {
            guard var entry = entries[address] else { continue }
            switch entry.state {
            case .incomplete:
                if entry.solicitations >= limits.maximumMulticastSolicitations {
                    dropped += entries.removeValue(forKey: address)?.pending ?? []
                    continue
                }
                entry.solicitations += 1
                entry.deadline = now + limits.retransmitTime
                solicitations.append(.multicast(address))
            case .reachable:
                entry.state = .stale
                entry.deadline = nil
            case .delay, .probe:
                if entry.state == .probe && entry.solicitations >= limits.maximumUnicastSolicitations {
                    entries.removeValue(forKey: address)
                    continue
                }
                entry.state = .probe
                entry.solicitations += 1
                entry.deadline = now + limits.retransmitTime
                if let mac = entry.mac { solicitations.append(.unicast(address, mac)) }
            case .stale, .permanent:
                entry.deadline = nil
            }
            entries[address] = entry
        }
        invalidateDeadline()
        expireStale(now: now)
        return (solicitations, dropped)
    }

    /// Forgets stale entries unused for `staleLifetime`. Cheap unless the
    /// table is near full: only then is it worth scanning.
    private mutating func expireStale(now: Instant) {
        guard entries.count > limits.maximumEntries / 2 else { return }
        let old = entries.filter { $0.value.state == .stale && now - $0.value.lastUsed > limits.staleLifetime }
        for key in old.keys { entries.removeValue(forKey: key) }
    }

    /// Makes room for one more entry: the oldest entry still resolving goes
    /// first (its frames wait in `evicted`), else the least recently used
    /// resolved one. Addresses nobody answers for (a flood from spoofed
    /// sources on the link) then cannot push out the neighbours that answer.
    private mutating func makeRoom(now: Instant) -> Bool {
        guard entries.count >= limits.maximumEntries else { return true }
        var oldestIncomplete: (I.Address, Instant)?
        var oldestResolved: (I.Address, Instant)?
        for (address, entry) in entries where entry.state != .permanent {
            if entry.state == .incomplete {
                if oldestIncomplete.map({ entry.lastUsed < $0.1 }) ?? true { oldestIncomplete = (address, entry.lastUsed) }
            } else if oldestResolved.map({ entry.lastUsed < $0.1 }) ?? true {
                oldestResolved = (address, entry.lastUsed)
            }
        }
        guard let victim = oldestIncomplete?.0 ?? oldestResolved?.0 else { return false }
        evicted += entries.removeValue(forKey: victim)?.pending ?? []
        evictions += 1
        invalidateDeadline()
        return true
    }

    /// The entries evicted since the last call, and the frames that waited
    /// in them.
    mutating func takeEvicted() -> (entries: Int, frames: [OutputFrame]) {
        guard evictions > 0 else { return (0, []) }
        defer { (evictions, evicted) = (0, []) }
        return (evictions, evicted)
    }

    private mutating func invalidateDeadline() {
        deadlineIsCurrent = false
    }
}
