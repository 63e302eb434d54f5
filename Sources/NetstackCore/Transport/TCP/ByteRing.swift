/// A ring of bytes for one direction of a TCP connection, addressed by offset
/// from its start (the oldest byte it holds).
///
/// The send side appends what the application writes and drops what the peer
/// acknowledged. The receive side also writes out of order (a segment beyond a
/// hole lands at its offset), which is why writes take an offset: the ring's
/// capacity is the receive window, so anything the peer may send fits.
///
/// Memory follows use, not capacity: the storage starts empty and doubles
/// (from 1 KiB) only when a write needs more, up to the capacity, without
/// zero-filling; a small storage is released when the ring empties. An idle
/// connection costs nothing here, a bulk one its window; growing copies what
/// is held once. With a `SocketMemory`, growth is charged to it and may be
/// refused (or cut short): writes then take what the storage holds.
struct ByteRing {
    private var storage: [UInt8] = []
    private var account: MemoryAccount
    /// Where offset 0 is in `storage`.
    private var head = 0
    /// Bytes from offset 0 that are present (contiguous).
    private(set) var count = 0
    /// The most the ring may hold.
    private(set) var capacity: Int

    /// Storage is never smaller than this once it exists.
    static let minimumStorage = 1024
    /// Storage up to this size is released when the ring empties (a large
    /// one stays: a bulk transfer empties its ring all the time).
    static let releasedWhenEmpty = 4096

    init(capacity: Int, memory: SocketMemory? = nil) {
        self.capacity = capacity
        account = MemoryAccount(memory)
    }

    /// The most bytes (from offset 0) the ring can hold now: its capacity,
    /// or less when the socket memory would refuse the growth.
    var attainable: Int {
        guard storage.count < capacity else { return capacity }
        return account.ceiling(current: storage.count, wanted: capacity)
    }

    /// Room after the contiguous bytes, as far as the ring can grow now.
    var room: Int { attainable - count }
    var isEmpty: Bool { count == 0 }
    /// Bytes of memory the ring holds now.
    var allocatedBytes: Int { storage.count }

    /// Makes room for offsets below `end` (at most the capacity, and less
    /// when the socket memory grants less), keeping every byte at its offset.
    private mutating func reserve(_ end: Int) {
        guard end > storage.count else { return }
        var size = max(storage.count * 2, Self.minimumStorage)
        while size < end { size *= 2 }
        size = account.grow(from: storage.count, to: min(size, capacity))
        guard size > storage.count else { return }
        let old = storage
        let oldHead = head
        storage = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            // What the old storage holds, unrolled so that offset 0 is first.
            old.withUnsafeBytes { source in
                let target = UnsafeMutableRawBufferPointer(buffer)
                let first = source.count - oldHead
                if source.count > 0 {
                    target.baseAddress!.copyMemory(from: source.baseAddress! + oldHead, byteCount: first)
                    (target.baseAddress! + first).copyMemory(from: source.baseAddress!, byteCount: oldHead)
                }
            }
            initialized = size
        }
        head = 0
    }

    /// Copies `bytes` to `offset` (which may be past `count`: out of order).
    /// Writes beyond the capacity, or beyond the storage the socket memory
    /// grants, are cut off. Returns the bytes written.
    @discardableResult
    mutating func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Int {
        var length = max(0, min(bytes.count, capacity - offset))
        guard length > 0, let source = bytes.baseAddress else { return 0 }
        reserve(offset + length)
        length = min(length, storage.count - offset)
        guard length > 0 else { return 0 }
        let size = storage.count
        let start = (head + offset) % size
        storage.withUnsafeMutableBytes { ring in
            let first = min(length, size - start)
            (ring.baseAddress! + start).copyMemory(from: source, byteCount: first)
            if first < length {
                ring.baseAddress!.copyMemory(from: source + first, byteCount: length - first)
            }
        }
        return length
    }

    /// Appends at the end of the contiguous bytes; returns how many fit.
    @discardableResult
    mutating func append(_ bytes: UnsafeRawBufferPointer) -> Int {
        let written = write(bytes, at: count)
        count += written
        return written
    }

    /// Appends what `produce` writes into the free space after the contiguous
    /// bytes (at most `maximum` in all, a piece at a time where the ring
    /// wraps or must grow); it returns how many bytes it wrote, and fewer than
    /// offered ends it. The storage doubles only when a piece was filled, so
    /// a producer that has little (a descriptor's read) does not make a large
    /// ring.
    mutating func append(maximum: Int, _ produce: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        var total = 0
        while total < maximum && count < capacity {
            if count == storage.count {
                reserve(count + 1)
                if count == storage.count { break }
            }
            let size = storage.count
            let start = (head + count) % size
            let piece = min(maximum - total, size - start, size - count)
            let produced = storage.withUnsafeMutableBytes { ring in
                produce(UnsafeMutableRawBufferPointer(rebasing: ring[start..<(start + piece)]))
            }
            let accepted = max(0, min(produced, piece))
            count += accepted
            total += accepted
            if produced < piece { break }
        }
        return total
    }

    /// Offers the contiguous bytes to `consume` (in at most two pieces),
    /// which returns how many it took, and drops those; fewer than offered
    /// ends it. Returns the bytes taken.
    mutating func removeFirst(consuming consume: (UnsafeRawBufferPointer) -> Int) -> Int {
        var total = 0
        while total < count {
            let size = storage.count
            let start = (head + total) % size
            let piece = min(count - total, size - start)
            let taken = storage.withUnsafeBytes { ring in
                consume(UnsafeRawBufferPointer(rebasing: ring[start..<(start + piece)]))
            }
            total += max(0, min(taken, piece))
            if taken < piece { break }
        }
        removeFirst(total)
        return total
    }

    /// Marks `length` more bytes after `count` as present (written out of
    /// order earlier, now contiguous).
    mutating func extend(by length: Int) {
        count = min(storage.count, count + length)
    }

    /// Drops `length` bytes from the start. The head only moves forward:
    /// out-of-order data beyond `count` sits at positions relative to it.
    mutating func removeFirst(_ length: Int) {
        let length = min(length, count)
        guard length > 0 else { return }
        head = (head + length) % storage.count
        count -= length
    }

    /// Frees a small storage (or any, when the socket memory is under
    /// pressure) when nothing is held. Only the caller knows
    /// whether out-of-order bytes sit past `count` (a send ring never has
    /// any); it must not call this while they do.
    mutating func releaseIfEmpty() {
        guard count == 0, !storage.isEmpty,
              storage.count <= Self.releasedWhenEmpty || account.underPressure else { return }
        storage = []
        head = 0
        account.released()
    }

    /// Calls `body` with the bytes at `range` (offsets from the start), in at
    /// most two pieces (the ring may wrap).
    func withBytes(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) -> Void) {
        guard !range.isEmpty else { return }
        precondition(range.upperBound <= storage.count, "read past the ring")
        let size = storage.count
        storage.withUnsafeBytes { ring in
            let start = (head + range.lowerBound) % size
            let first = min(range.count, size - start)
            body(UnsafeRawBufferPointer(rebasing: ring[start..<(start + first)]))
            if first < range.count {
                body(UnsafeRawBufferPointer(rebasing: ring[0..<(range.count - first)]))
            }
        }
    }

    /// Copies the bytes at `range` into `destination` (which must be big enough).
    func copy(_ range: Range<Int>, into destination: UnsafeMutableRawBufferPointer) {
        var written = 0
        withBytes(range) { piece in
            (destination.baseAddress! + written).copyMemory(from: piece.baseAddress!, byteCount: piece.count)
            written += piece.count
        }
    }

    /// Changes the capacity, keeping the contiguous bytes (not for a receive
    /// ring holding out-of-order data).
    mutating func resize(_ capacity: Int) {
        let keep = min(count, capacity)
        var fresh = ByteRing(capacity: capacity, memory: account.memory)
        if keep > 0 {
            withBytes(0..<keep) { _ = fresh.append($0) }
        }
        self = fresh
    }
}

/// Disjoint, sorted ranges of sequence offsets (relative to some base), with
/// a cap on how many: the out-of-order data a receiver holds, or the SACKed
/// data a sender knows of.
struct RangeList {
    private(set) var ranges: [Range<Int>] = []
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    var isEmpty: Bool { ranges.isEmpty }
    var first: Range<Int>? { ranges.first }
    var last: Range<Int>? { ranges.last }

    /// Adds `range`, merging with touching or overlapping ones. Returns false
    /// (and adds nothing) when that would exceed the limit of ranges.
    @discardableResult
    mutating func insert(_ range: Range<Int>) -> Bool {
        guard !range.isEmpty else { return true }
        var low = range.lowerBound
        var high = range.upperBound
        var index = 0
        while index < ranges.count, ranges[index].upperBound < low { index += 1 }
        var end = index
        while end < ranges.count, ranges[end].lowerBound <= high {
            low = min(low, ranges[end].lowerBound)
            high = max(high, ranges[end].upperBound)
            end += 1
        }
        if end == index && ranges.count >= limit { return false }
        ranges.replaceSubrange(index..<end, with: [low..<high])
        return true
    }

    /// Moves the base forward by `amount`: every offset drops by it, and what
    /// falls below zero goes.
    mutating func rebase(by amount: Int) {
        guard amount != 0, !ranges.isEmpty else { return }
        var kept = 0
        for index in ranges.indices {
            let low = ranges[index].lowerBound - amount
            let high = ranges[index].upperBound - amount
            guard high > 0 else { continue }
            ranges[kept] = max(low, 0)..<high
            kept += 1
        }
        ranges.removeLast(ranges.count - kept)
    }

    /// Removes and returns a range starting at offset 0, if there is one.
    mutating func removeLeading() -> Range<Int>? {
        guard let first = ranges.first, first.lowerBound == 0 else { return nil }
        ranges.removeFirst()
        return first
    }

    func contains(_ offset: Int) -> Bool {
        ranges.contains { $0.contains(offset) }
    }

    /// Bytes covered.
    var total: Int { ranges.reduce(0) { $0 + $1.count } }

    mutating func removeAll() { ranges.removeAll(keepingCapacity: true) }
}
