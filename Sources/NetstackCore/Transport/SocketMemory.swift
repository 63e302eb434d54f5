/// The memory every socket buffer of a stack holds, against one cap: Linux's
/// tcp_mem and udp_mem, in bytes rather than pages.
///
/// Buffers grow with use (`ByteRing`, `DatagramQueue`), so the cap acts on
/// growth: a buffer may always grow to `guaranteedPerBuffer`, whatever the
/// total (as Linux guarantees tcp_rmem[0] and tcp_wmem[0], 4 KiB, to every
/// socket), so that each connection can still make progress; past that, only
/// while the total stays under the cap. The total is thus bounded by the cap
/// plus 4 KiB per buffer, and the connection limits bound the buffers.
///
/// What a refused buffer does: a TCP receiver drops what does not fit
/// (`tcp.bufferMemory`) and stops widening its window (it never shrinks it,
/// RFC 9293 §3.8.6.2.2, so a peer may still send into space that cannot be
/// had; it retransmits); a TCP sender takes fewer bytes from its application,
/// which waits until acknowledgments empty the ring; a UDP socket drops the
/// datagram (`udp.bufferMemory`).
final class SocketMemory {
    /// The cap, in bytes.
    let limit: Int
    /// Bytes the buffers hold now.
    fileprivate(set) var inUse = 0

    /// What every buffer may hold whatever the total.
    static var guaranteedPerBuffer: Int { 4096 }

    init(limit: Int) {
        self.limit = limit
    }

    /// Past three quarters of the cap (as Linux's tcp_mem[1] starts its
    /// pressure mode), a buffer that empties gives its storage back whatever
    /// its size, so that memory moves to the buffers in use rather than stay
    /// with the ones that grew first.
    var underPressure: Bool { inUse > limit - limit / 4 }

    /// The size a buffer of `current` bytes may grow to, up to `wanted`: all
    /// of it within the guarantee or the room left, else what room is left
    /// (at least the guarantee, never less than `current`).
    func ceiling(current: Int, wanted: Int) -> Int {
        guard wanted > current else { return wanted }
        if wanted <= Self.guaranteedPerBuffer || wanted - current <= limit - inUse { return wanted }
        return max(current, Self.guaranteedPerBuffer, current + max(0, limit - inUse))
    }

    /// A growth from `current` to `wanted` bytes asked for: the size granted
    /// (`ceiling`), noting when that is less than asked.
    func grant(current: Int, wanted: Int) -> Int {
        let granted = ceiling(current: current, wanted: wanted)
        if granted < wanted { refused = true }
        return granted
    }

    /// Whether a growth was cut short since the last call (for the stack's
    /// limit notice).
    func takeRefused() -> Bool {
        defer { refused = false }
        return refused
    }

    private var refused = false
}

/// A buffer's account with a `SocketMemory` (or with none: then every
/// growth is granted and nothing is counted). `ByteRing` and `DatagramQueue`
/// each hold one and ask it before their storage grows.
struct MemoryAccount {
    let memory: SocketMemory?
    /// The storage's share, made on the first growth (an idle buffer costs
    /// no allocation).
    private var charge: MemoryCharge?

    init(_ memory: SocketMemory?) {
        self.memory = memory
    }

    /// The size storage of `current` bytes could grow to now, up to `wanted`.
    func ceiling(current: Int, wanted: Int) -> Int {
        memory?.ceiling(current: current, wanted: wanted) ?? wanted
    }

    /// Storage of `current` bytes asks to grow to `wanted`: the size granted,
    /// now charged (never less than `current`).
    mutating func grow(from current: Int, to wanted: Int) -> Int {
        guard let memory, wanted > current else { return wanted }
        let size = memory.grant(current: current, wanted: wanted)
        guard size > current else { return current }
        if charge == nil { charge = MemoryCharge(memory) }
        charge?.set(size)
        return size
    }

    /// The storage was let go.
    func released() {
        charge?.set(0)
    }

    /// Whether an emptied buffer should let go of its storage whatever its size.
    var underPressure: Bool { memory?.underPressure ?? false }
}

/// One buffer's share of a `SocketMemory`: set as the buffer's storage
/// changes, returned when the buffer (its last copy) goes, whichever way it
/// goes, so no path that closes a socket has to remember it.
final class MemoryCharge {
    let memory: SocketMemory
    private(set) var bytes = 0

    init(_ memory: SocketMemory) {
        self.memory = memory
    }

    /// The buffer holds `bytes` now.
    func set(_ bytes: Int) {
        memory.inUse += bytes - self.bytes
        self.bytes = bytes
    }

    deinit {
        memory.inUse -= bytes
    }
}
