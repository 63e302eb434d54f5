import DequeModule
import NetstackWire

/// Datagrams waiting for a reader: payloads kept contiguous in one byte ring
/// (a datagram that does not fit before the end starts again at the front),
/// their metadata in a deque.
///
/// Bounded in bytes: each datagram is charged its length plus
/// `overheadPerDatagram` (so a flood of empty datagrams is bounded too), and
/// the charge never exceeds `capacity`. Storage starts small and grows (by
/// doubling, up to `capacity`) only as the queue fills, so idle sockets cost
/// little; with a `SocketMemory`, that growth is charged to it and may be
/// refused.
struct DatagramQueue<Metadata> {
    static var overheadPerDatagram: Int { 64 }

    /// Why a datagram was not queued.
    enum Refusal: Error {
        /// The queue holds its capacity's worth.
        case full
        /// The socket memory refused the storage's growth.
        case memory
    }

    private(set) var capacity: Int
    private var storage: [UInt8] = []
    private var account: MemoryAccount
    private var entries: Deque<(metadata: Metadata, offset: Int, length: Int)> = []
    /// Where the next payload goes.
    private var tail = 0
    /// Bytes charged to queued datagrams.
    private(set) var charged = 0
    /// Payload bytes queued.
    private(set) var queuedBytes = 0

    init(capacity: Int, memory: SocketMemory? = nil) {
        self.capacity = capacity
        account = MemoryAccount(memory)
    }

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    /// Changes the cap; queued datagrams stay even if they exceed the new cap.
    mutating func setCapacity(_ capacity: Int) {
        self.capacity = capacity
    }

    /// Appends a datagram, or keeps nothing and says why.
    mutating func push(_ metadata: Metadata, _ payload: RawSpan) throws(Refusal) {
        let length = payload.byteCount
        let charge = length + Self.overheadPerDatagram
        guard charged + charge <= capacity else { throw .full }
        guard let offset = placement(for: length) else { throw .memory }
        if length > 0 {
            storage.withMutableBytes(offset..<(offset + length)) { $0.copy(payload, to: 0) }
        }
        entries.append((metadata, offset, length))
        tail = offset + length
        charged += charge
        queuedBytes += length
    }

    /// Removes the oldest datagram and hands it to `body`.
    mutating func pop<R>(_ body: (Metadata, RawSpan) -> R) -> R? {
        guard let entry = entries.popFirst() else { return nil }
        charged -= entry.length + Self.overheadPerDatagram
        queuedBytes -= entry.length
        let result = storage.withSpan { body(entry.metadata, $0.extracting(entry.offset..<(entry.offset + entry.length))) }
        if entries.isEmpty {
            tail = 0
            // Under memory pressure an empty queue gives its storage back.
            if account.underPressure {
                storage = []
                account.released()
            }
        }
        return result
    }

    /// The oldest datagram's metadata and length, without removing it.
    var first: (metadata: Metadata, length: Int)? {
        entries.first.map { ($0.metadata, $0.length) }
    }

    /// Where a payload of `length` bytes can go contiguously. When the ring
    /// has no such gap, the payloads are compacted into a buffer big enough for
    /// all of them (doubling, but never past the cap, which the charge check
    /// guarantees is enough), unless the socket memory refuses that: nil.
    private mutating func placement(for length: Int) -> Int? {
        if length == 0 { return tail }
        if let offset = freeOffset(for: length) { return offset }
        let needed = queuedBytes + length
        var size = max(storage.count, 2048)
        while size < needed { size *= 2 }
        size = max(min(size, capacity), needed, storage.count)
        size = account.grow(from: storage.count, to: size)
        guard size >= needed else { return nil }
        compact(into: size)
        return freeOffset(for: length)
    }

    /// A free contiguous region of `length` bytes in the ring as it is.
    private func freeOffset(for length: Int) -> Int? {
        guard let head = entries.first?.offset else {
            return length <= storage.count ? 0 : nil
        }
        if tail > head || (tail == head && entries.allSatisfy({ $0.length == 0 })) {
            if storage.count - tail >= length { return tail }
            if head >= length { return 0 }
            return nil
        }
        return head - tail >= length ? tail : nil
    }

    /// Moves every queued payload to the start of a new buffer of `size` bytes.
    private mutating func compact(into size: Int) {
        var fresh = [UInt8](repeating: 0, count: size)
        var offset = 0
        storage.withSpan { old in
            for index in entries.indices {
                let entry = entries[index]
                if entry.length > 0 {
                    fresh.withMutableBytes(offset..<(offset + entry.length)) {
                        $0.copy(old.extracting(entry.offset..<(entry.offset + entry.length)), to: 0)
                    }
                }
                entries[index].offset = offset
                offset += entry.length
            }
        }
        storage = fresh
        tail = offset
    }
}
