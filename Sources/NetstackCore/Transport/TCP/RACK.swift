import DequeModule
import NetstackWire

/// RACK's time-based loss detection (RFC 8985 §6): a segment is lost when a
/// segment sent after it has been delivered (ACKed or SACKed) and more than
/// one round trip plus a reordering window has passed since it was sent.
/// Where three duplicate ACKs need three later segments, RACK needs one, and
/// reordering within the window never causes a retransmission.
///
/// What was sent is kept as records of (range, time): first transmissions in
/// `originals`, in sequence and time order (a segmentation-offload burst is
/// one record), retransmissions in `resent`. Losses are reported as a point
/// below which every first transmission not SACKed is lost (`lostThrough`),
/// which the RFC 6675 machinery (`lossBoundary`, NextSeg, pipe) takes as it
/// takes the duplicate-ACK rule's boundary.
struct RACKState {
    struct Record {
        var start: SequenceNumber
        var end: SequenceNumber
        var sent: Instant
        /// A first transmission sent again since: its time says nothing of
        /// the copy that was delivered.
        var superseded = false
        /// SACKed already: the cumulative ACK that covers it later is no
        /// new delivery (and no sign of reordering).
        var delivered = false
    }

    private(set) var originals: Deque<Record> = []
    private(set) var resent: [Record] = []
    /// RACK.xmit_ts and RACK.end_seq: the most recently sent delivered data.
    private(set) var newestDelivered: (sent: Instant, end: SequenceNumber)?
    /// RACK.rtt: the round trip of that delivery, in nanoseconds.
    private var roundTrip: Int64 = 0
    /// RACK.min_RTT: the smallest round trip of the last five minutes
    /// (Linux's tcp_min_rtt_wlen), so that a path that got longer is seen.
    private var minimumFilter = WindowedMinimum(window: .seconds(300))
    /// The smallest round trip, `.max` before the first.
    var minimumRoundTrip: Int64 { minimumFilter.value ?? .max }
    /// The highest end of delivered data (RACK.fack).
    private var forwardmost: SequenceNumber?
    /// Data was delivered below data delivered before it (RFC 8985 §6.2 step 3).
    private(set) var reorderingSeen = false
    /// RACK.reo_wnd_mult, raised by D-SACKs (§6.2 step 4).
    private var windowMultiplier: Int64 = 1
    private var multiplierRaised: Instant?
    private var recoveriesSinceRaise = 0
    /// First transmissions below this and not SACKed are lost.
    private(set) var lostThrough: SequenceNumber?
    /// When to look again for data that is not yet overdue (the reordering timer).
    private(set) var deadline: Instant?

    /// Something went out: `retransmission` when it was sent before.
    mutating func sent(_ start: SequenceNumber, _ end: SequenceNumber, at now: Instant, retransmission: Bool) {
        guard end - start > 0 else { return }
        guard retransmission else {
            originals.append(Record(start: start, end: end, sent: now))
            return
        }
        resent.append(Record(start: start, end: end, sent: now))
        // The first transmissions it overlaps (binary search by start).
        var low = 0
        var high = originals.count
        while low < high {
            let middle = (low + high) / 2
            if originals[middle].end - start <= 0 { low = middle + 1 } else { high = middle }
        }
        var index = low
        while index < originals.count, originals[index].start - end < 0 {
            originals[index].superseded = true
            index += 1
        }
    }

    /// An ACK arrived: `acknowledged` is the new SND.UNA, `blocks` its SACK
    /// blocks from `firstBlock` on (a D-SACK before it is no delivery).
    /// Updates what was delivered last (RFC 8985 §6.2 steps 1–3).
    /// `echoed` is the ACK's timestamp echo, when timestamps are on, and
    /// `timestamp` our timestamp clock at a given time.
    mutating func acknowledgment(_ acknowledged: SequenceNumber, blocks: SACKBlocks, from firstBlock: Int,
                                 now: Instant, echoed: UInt32?, timestamp: (Instant) -> UInt32) {
        /// Whether a retransmission, not an earlier copy, was what arrived
        /// (§6.2 step 2): the echo is no older than the retransmission, or
        /// without timestamps, at least a smallest round trip has passed.
        func timely(_ record: Record) -> Bool {
            if let echoed { return Int32(bitPattern: echoed &- timestamp(record.sent)) >= 0 }
            return minimumRoundTrip == .max || now.nanoseconds &- record.sent.nanoseconds >= minimumRoundTrip
        }
        func deliver(_ record: Record) {
            guard !record.superseded else { return }
            let elapsed = now.nanoseconds &- record.sent.nanoseconds
            if elapsed >= 0 {
                minimumFilter.add(elapsed, at: now.nanoseconds)
            }
            if let fack = forwardmost, record.end - fack < 0 { reorderingSeen = true }
            if forwardmost.map({ record.end - $0 > 0 }) ?? true { forwardmost = record.end }
            if let newest = newestDelivered,
               newest.sent > record.sent || (newest.sent == record.sent && newest.end - record.end >= 0) { return }
            newestDelivered = (record.sent, record.end)
            roundTrip = max(elapsed, 0)
        }
        while let first = originals.first, first.end - acknowledged <= 0 {
            if !first.delivered { deliver(first) }
            originals.removeFirst()
        }
        if !resent.isEmpty {
            for record in resent where record.end - acknowledged <= 0 && timely(record) { deliver(record) }
            resent.removeAll { $0.end - acknowledged <= 0 }
        }
        for index in firstBlock..<max(firstBlock, blocks.count) {
            let block = (left: SequenceNumber(blocks[index].left), right: SequenceNumber(blocks[index].right))
            // The record holding the block's last byte (originals by binary
            // search; a retransmission that covers it, if sent later).
            let last = block.right - 1
            var low = 0
            var high = originals.count
            while low < high {
                let middle = (low + high) / 2
                if originals[middle].end - last <= 0 { low = middle + 1 } else { high = middle }
            }
            // A burst sent at once, partly SACKed, was delivered at its time.
            if low < originals.count, originals[low].start - last <= 0, !originals[low].delivered {
                deliver(originals[low])
                originals[low].delivered = true
            }
            for record in resent where record.start - block.left >= 0 && block.right - record.end >= 0
                && timely(record) {
                deliver(record)
            }
        }
        if let lost = lostThrough, lost - acknowledged <= 0 { lostThrough = nil }
    }

    /// The reordering window (§6.2 step 4): none until reordering was seen
    /// while recovering or with three segments SACKed (the duplicate-ACK
    /// rule then holds), else a quarter of the smallest round trip times the
    /// multiplier, at most the smoothed RTT.
    private func reorderingWindow(smoothed: Int64, inRecovery: Bool, sackedSegments: Int) -> Int64 {
        if !reorderingSeen && (inRecovery || sackedSegments >= 3) { return 0 }
        guard minimumRoundTrip != .max else { return 0 }
        return min(windowMultiplier * minimumRoundTrip / 4, smoothed)
    }

    /// §6.2 step 5: marks as lost the first transmissions sent before the
    /// newest delivered data whose round trip plus the reordering window has
    /// passed, and sets the timer for the rest. `isSACKed` tells whether a
    /// range was SACKed entirely.
    mutating func detectLoss(now: Instant, smoothed: Int64, inRecovery: Bool, sackedSegments: Int,
                             isSACKed: (SequenceNumber, SequenceNumber) -> Bool) {
        deadline = nil
        guard let newest = newestDelivered else { return }
        let window = reorderingWindow(smoothed: smoothed, inRecovery: inRecovery, sackedSegments: sackedSegments)
        var latestWait: Int64 = 0
        for record in originals {
            guard record.sent < newest.sent || (record.sent == newest.sent && record.end - newest.end < 0) else { break }
            if let lost = lostThrough, record.end - lost <= 0 { continue }
            if record.superseded || isSACKed(record.start, record.end) { continue }
            let wait = record.sent.nanoseconds &+ roundTrip &+ window &- now.nanoseconds
            if wait <= 0 {
                lostThrough = record.end
            } else {
                latestWait = max(latestWait, wait)
            }
        }
        if latestWait > 0 { deadline = now + .nanoseconds(latestWait) }
    }

    /// A D-SACK: the reordering window was too small (§6.2 step 4: at most
    /// once a round trip); after 16 recoveries without one it comes back.
    mutating func duplicateReported(now: Instant, smoothed: Int64) {
        reorderingSeen = true
        if let raised = multiplierRaised, now.nanoseconds &- raised.nanoseconds < smoothed { return }
        windowMultiplier = min(windowMultiplier + 1, 16)
        multiplierRaised = now
        recoveriesSinceRaise = 0
    }

    mutating func recoveryEnded() {
        recoveriesSinceRaise += 1
        if recoveriesSinceRaise >= 16 { windowMultiplier = 1 }
    }

    /// After a retransmission timeout everything in flight is sent again.
    mutating func forgetLosses() {
        lostThrough = nil
        deadline = nil
    }
}
