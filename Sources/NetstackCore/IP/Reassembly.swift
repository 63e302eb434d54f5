import DequeModule
import NetstackWire

/// What identifies the fragments of one datagram (RFC 791 §3.2: source,
/// destination, protocol and identification; RFC 8200 §4.5: source,
/// destination and identification).
struct FragmentKey<I: IPVersion>: Hashable {
    var source: I.Address
    var destination: I.Address
    var identification: UInt32
    /// The IPv4 protocol; zero for IPv6, whose key does not include it.
    var protocolNumber: UInt8
}

/// One fragment as the IP input hands it over.
struct Fragment: ~Escapable {
    /// The headers of the packet that carried it, up to and including the
    /// fragment header (IPv6) or the IPv4 header.
    var headers: RawSpan
    /// The fragment's data.
    var data: RawSpan
    /// Where the data goes in the datagram, in bytes.
    var offset: Int
    var moreFragments: Bool
    /// The protocol of the reassembled payload.
    var payloadProtocol: IPProtocol

    @_lifetime(copy headers, copy data)
    init(headers: RawSpan, data: RawSpan, offset: Int, moreFragments: Bool, payloadProtocol: IPProtocol) {
        self.headers = headers
        self.data = data
        self.offset = offset
        self.moreFragments = moreFragments
        self.payloadProtocol = payloadProtocol
    }
}

/// A datagram being put back together.
private struct PendingDatagram {
    /// Data bytes, indexed by fragment offset; grows as fragments arrive.
    var data: [UInt8]
    /// Received byte ranges, sorted, disjoint and not adjacent (merged).
    var received: [Range<Int>]
    /// Known once the last fragment (M = 0) has arrived.
    var totalLength: Int?
    /// The headers of the fragment at offset zero, once it has arrived.
    var firstHeaders: [UInt8]?
    var payloadProtocol = IPProtocol(rawValue: 0)
    /// Order of arrival among all datagrams (eviction takes the lowest).
    var sequence: UInt64
    var expires: Instant

    /// Memory charged to this datagram.
    var charge: Int { data.capacity + (firstHeaders?.capacity ?? 0) + 128 }

    var isComplete: Bool {
        guard let totalLength, firstHeaders != nil else { return false }
        return received.count == 1 && received[0] == 0..<totalLength
    }
}

/// The outcome of adding one fragment.
enum ReassemblyResult {
    /// Waiting for more fragments.
    case incomplete
    /// The datagram is complete: `headers` of the first fragment and `length`
    /// bytes of data are ready in the reassembler's output buffer.
    case complete(headersLength: Int, dataLength: Int, payloadProtocol: IPProtocol)
    /// The fragment (and, for an overlap, the whole datagram) was dropped.
    case dropped(DropReason)
}

/// Fragment reassembly for one IP version (RFC 791 §3.2, RFC 815, RFC 8200
/// §4.5), with overlapping fragments discarding the whole datagram (RFC 5722,
/// also applied to IPv4 as Linux does) and hard caps on memory and count.
///
/// A completed datagram is copied once into a reusable output buffer (first
/// fragment's headers, then the data), so the upper layers see one contiguous
/// packet and ICMP errors can quote it.
struct Reassembler<I: IPVersion> {
    let limits: ReassemblyLimits
    let timeout: Duration
    private var pending: [FragmentKey<I>: PendingDatagram] = [:]
    /// Datagrams in order of arrival. Entries whose datagram is gone (or was
    /// replaced by a newer one with the same key) are skipped when reached.
    private var arrivals: Deque<(key: FragmentKey<I>, sequence: UInt64)> = []
    private var nextSequence: UInt64 = 0
    private(set) var memoryInUse = 0
    /// Buffers of finished datagrams, reused so that steady fragmented traffic
    /// allocates nothing.
    private var spareBuffers: [[UInt8]] = []
    private var spareRangeLists: [[Range<Int>]] = []
    private static var maximumSpareBuffers: Int { 32 }
    /// The last completed datagram: headers then data.
    private(set) var output: [UInt8] = []
    /// The disjoint ranges a datagram may have at once; more holes than this
    /// is a pathological sender and the datagram is dropped.
    static var maximumHoles: Int { 64 }

    init(limits: ReassemblyLimits) {
        self.limits = limits
        timeout = limits.timeout ?? I.reassemblyTimeout
    }

    var count: Int { pending.count }

    /// Adds a fragment. Overlaps with already received data other than an
    /// exact duplicate drop the datagram (RFC 5722).
    mutating func add(_ fragment: Fragment, key: FragmentKey<I>, now: Instant,
                      evicted: (DropReason) -> Void) -> ReassemblyResult {
        let start = fragment.offset
        let length = fragment.data.byteCount
        let end = start + length
        guard end <= limits.maximumDatagramBytes else { return .dropped(.fragmentTooLarge) }
        guard !fragment.moreFragments || length % 8 == 0 else { return .dropped(.fragmentBadLength) }
        guard length > 0 || !fragment.moreFragments else { return .dropped(.fragmentBadLength) }

        // Taken out of the table while it changes, so its buffer is never
        // shared (and copied) on write; put back unless it is done or dropped.
        var datagram: PendingDatagram
        if let existing = pending.removeValue(forKey: key) {
            datagram = existing
            memoryInUse -= existing.charge
        } else {
            while pending.count >= limits.maximumDatagrams { evictOldest(evicted) }
            var ranges = spareRangeLists.popLast() ?? []
            ranges.removeAll(keepingCapacity: true)
            datagram = PendingDatagram(data: takeBuffer(), received: ranges, sequence: nextSequence,
                                       expires: now + timeout)
            arrivals.append((key, nextSequence))
            nextSequence += 1
        }

        // The last fragment fixes the length; everything must fit inside it.
        if !fragment.moreFragments {
            if let known = datagram.totalLength, known != end { return drop(datagram, .fragmentOverlap) }
            if let last = datagram.received.last, last.upperBound > end { return drop(datagram, .fragmentOverlap) }
            datagram.totalLength = end
        } else if let known = datagram.totalLength, end > known {
            return drop(datagram, .fragmentOverlap)
        }

        // Exact duplicates are ignored; any other overlap discards the datagram.
        var insertAt = datagram.received.count
        for (index, range) in datagram.received.enumerated() {
            if range.lowerBound >= end {
                insertAt = index
                break
            }
            if range.upperBound <= start { continue }
            if range.contains(start) && end <= range.upperBound && length > 0 && isDuplicate(fragment, datagram) {
                pending[key] = datagram
                memoryInUse += datagram.charge
                return .incomplete
            }
            return drop(datagram, .fragmentOverlap)
        }

        if datagram.data.count < end {
            datagram.data.append(contentsOf: repeatElement(0, count: end - datagram.data.count))
        }
        datagram.data.withMutableBytes(start..<end) { $0.copy(fragment.data, to: 0) }
        datagram.received.insert(start..<end, at: insertAt)
        merge(&datagram.received)
        guard datagram.received.count <= Self.maximumHoles else { return drop(datagram, .reassemblyEvicted) }
        if start == 0 {
            var headers = datagram.firstHeaders ?? takeBuffer()
            headers.removeAll(keepingCapacity: true)
            fragment.headers.withUnsafeBytes { headers.append(contentsOf: $0) }
            datagram.firstHeaders = headers
            datagram.payloadProtocol = fragment.payloadProtocol
        }

        if datagram.isComplete, let headers = datagram.firstHeaders {
            output.removeAll(keepingCapacity: true)
            output.append(contentsOf: headers)
            output.append(contentsOf: datagram.data)
            let result = ReassemblyResult.complete(headersLength: headers.count, dataLength: datagram.data.count,
                                                   payloadProtocol: datagram.payloadProtocol)
            recycle(datagram)
            return result
        }
        pending[key] = datagram
        memoryInUse += datagram.charge
        while memoryInUse > limits.totalBytes, !pending.isEmpty { evictOldest(evicted) }
        return .incomplete
    }

    /// The earliest expiry of any incomplete datagram: the oldest one's, as
    /// every datagram gets the same timeout.
    mutating func nextDeadline() -> Instant? {
        dropStaleArrivals()
        return arrivals.first.flatMap { pending[$0.key]?.expires }
    }

    /// Drops datagrams whose time is up. For each whose first fragment had
    /// arrived, `timedOut` gets its first fragment's headers and data, for the
    /// ICMP time-exceeded message (RFC 792, RFC 8200 §4.5).
    mutating func expire(now: Instant, timedOut: (_ key: FragmentKey<I>, _ firstPacket: RawSpan) -> Void) -> Int {
        var count = 0
        while true {
            dropStaleArrivals()
            guard let oldest = arrivals.first, let datagram = pending[oldest.key], datagram.expires <= now else {
                return count
            }
            arrivals.removeFirst()
            pending.removeValue(forKey: oldest.key)
            memoryInUse -= datagram.charge
            count += 1
            if var first = datagram.firstHeaders, let range = datagram.received.first, range.lowerBound == 0 {
                first.append(contentsOf: datagram.data[range])
                first.withSpan { timedOut(oldest.key, $0) }
            }
        }
    }

    /// Takes an empty buffer from the spares (or a new one).
    private mutating func takeBuffer() -> [UInt8] {
        guard var buffer = spareBuffers.popLast() else { return [] }
        buffer.removeAll(keepingCapacity: true)
        return buffer
    }

    /// Keeps a finished datagram's buffers for reuse.
    private mutating func recycle(_ datagram: consuming PendingDatagram) {
        if spareRangeLists.count < Self.maximumSpareBuffers { spareRangeLists.append(datagram.received) }
        guard spareBuffers.count + 2 <= Self.maximumSpareBuffers else { return }
        spareBuffers.append(datagram.data)
        if let headers = datagram.firstHeaders { spareBuffers.append(headers) }
    }

    private mutating func drop(_ datagram: consuming PendingDatagram, _ reason: DropReason) -> ReassemblyResult {
        recycle(datagram)
        return .dropped(reason)
    }

    /// Removes arrival records whose datagram completed or was dropped.
    private mutating func dropStaleArrivals() {
        while let first = arrivals.first, pending[first.key]?.sequence != first.sequence {
            arrivals.removeFirst()
        }
    }

    private func isDuplicate(_ fragment: Fragment, _ datagram: PendingDatagram) -> Bool {
        let start = fragment.offset
        for i in 0..<fragment.data.byteCount where datagram.data[start + i] != fragment.data.u8(i) {
            return false
        }
        return true
    }

    private mutating func evictOldest(_ evicted: (DropReason) -> Void) {
        dropStaleArrivals()
        guard let oldest = arrivals.popFirst(), let datagram = pending.removeValue(forKey: oldest.key) else { return }
        memoryInUse -= datagram.charge
        recycle(datagram)
        evicted(.reassemblyEvicted)
    }

    /// Joins touching or overlapping ranges (the list is short and sorted).
    private func merge(_ ranges: inout [Range<Int>]) {
        var i = 0
        while i + 1 < ranges.count {
            if ranges[i].upperBound >= ranges[i + 1].lowerBound {
                ranges[i] = ranges[i].lowerBound..<max(ranges[i].upperBound, ranges[i + 1].upperBound)
                ranges.remove(at: i + 1)
            } else {
                i += 1
            }
        }
    }
}

extension RawSpan {
    /// One byte (bounds-checked).
    func u8(_ offset: Int) -> UInt8 {
        unsafeLoadUnaligned(fromByteOffset: offset, as: UInt8.self)
    }
}
