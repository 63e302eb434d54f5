/// Path MTUs learned from ICMP "fragmentation needed" and "packet too big"
/// (RFC 1191, RFC 8201), one per destination, each forgotten after
/// `lifetime` so that a path that grew is tried again (RFC 1191 §6.3, RFC
/// 8201 §4: at least 5 minutes; Linux's mtu_expires is 10).
///
/// Only a transport that has checked the ICMP message against what it sent
/// (RFC 5927 §4.1) adds entries. Users notice a change through `generation`,
/// one integer comparison per output, so the table costs nothing on the data
/// path until an entry exists.
struct PathMTUTable<Address: Hashable> {
    struct Entry {
        var mtu: Int
        var expires: Instant
        /// A router asked for less than the floor: the floor is used, and
        /// IPv4 packets to the destination go without DF so that the router
        /// may fragment them (Linux locks the MTU and clears DF the same way).
        var belowFloor = false
    }

    static var lifetime: Duration { .seconds(600) }

    private(set) var entries: [Address: Entry] = [:]
    /// Changes whenever an entry is added, lowered or forgotten.
    private(set) var generation: UInt32 = 0
    /// The earliest expiry, kept so that `nextDeadline` is O(1).
    private(set) var nextDeadline: Instant?
    /// Entries at most; past it the one closest to expiry goes (it would
    /// come back with the next "packet too big").
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    func mtu(to destination: Address) -> Int? {
        entries[destination]?.mtu
    }

    /// Whether packets to `destination` may be fragmented on the way.
    func isBelowFloor(_ destination: Address) -> Bool {
        !entries.isEmpty && entries[destination]?.belowFloor == true
    }

    /// Records `mtu` for `destination` if it is lower than what is known;
    /// returns whether it was. An estimate never grows from an ICMP message
    /// (RFC 8201 §4, RFC 1191 §6.1). `belowFloor`: the router asked for less
    /// than `mtu`, the floor.
    mutating func lower(_ destination: Address, to mtu: Int, belowFloor: Bool = false, now: Instant) -> Bool {
        if let known = entries[destination], known.mtu <= mtu {
            if belowFloor && !known.belowFloor {
                entries[destination]?.belowFloor = true
                generation &+= 1
            }
            return false
        }
        if entries[destination] == nil && entries.count >= capacity,
           let oldest = entries.min(by: { $0.value.expires < $1.value.expires })?.key {
            entries[oldest] = nil
        }
        let expires = now + Self.lifetime
        entries[destination] = Entry(mtu: mtu, expires: expires, belowFloor: belowFloor)
        nextDeadline = min(nextDeadline ?? expires, expires)
        generation &+= 1
        return true
    }

    /// Forgets the entries whose lifetime is over.
    mutating func expire(now: Instant) {
        guard let deadline = nextDeadline, deadline <= now else { return }
        entries = entries.filter { $0.value.expires > now }
        nextDeadline = entries.values.map(\.expires).min()
        generation &+= 1
    }
}

/// RFC 1191 §7's plateaus, for a router that sends "fragmentation needed"
/// with no MTU (§5, RFC 1191's older routers): the largest below the size of
/// the packet it refused.
enum MTUPlateaus {
    static let values = [32_000, 17_914, 8_166, 4_352, 2_002, 1_492, 1_006, 508, 296, 68]

    static func below(_ length: Int) -> Int {
        values.first { $0 < length } ?? 68
    }
}
