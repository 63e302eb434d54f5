import NetstackWire

/// The connection states of RFC 9293 §3.3.2.
public enum TCPState: String, Sendable, CaseIterable {
    case closed, listen, synSent, synReceived, established, finWait1, finWait2, closeWait, closing, lastAck, timeWait

    /// Past the handshake: sequence numbers of both sides are known.
    var isSynchronized: Bool {
        switch self {
        case .closed, .listen, .synSent, .synReceived: false
        default: true
        }
    }

    /// The application may still queue data.
    var canSend: Bool { self == .established || self == .closeWait }

    /// Data from the peer is still accepted.
    var canReceive: Bool { self == .established || self == .finWait1 || self == .finWait2 }
}

/// The options of a received segment that TCP acts on.
struct TCPSegmentOptions {
    var maximumSegmentSize: UInt16?
    var windowScale: UInt8?
    var sackPermitted = false
    var timestamp: (value: UInt32, echoReply: UInt32)?
    var sack = SACKBlocks()

    init(_ segment: TCPSegment) throws(WireError) {
        var parsed = TCPSegmentOptions()
        try segment.forEachOption { option in
            switch option {
            case .maximumSegmentSize(let mss): parsed.maximumSegmentSize = mss
            case .windowScale(let shift): parsed.windowScale = shift
            case .sackPermitted: parsed.sackPermitted = true
            case .timestamps(let value, let echo): parsed.timestamp = (value, echo)
            case .sack(let blocks): parsed.sack = blocks
            case .endOfList, .noOperation, .unknown: break
            }
        }
        self = parsed
    }

    private init() {}
}

/// A received segment, parsed once, with its payload.
struct IncomingSegment: ~Escapable {
    let sequence: SequenceNumber
    let acknowledgment: SequenceNumber
    let flags: TCPFlags
    let window: UInt16
    let options: TCPSegmentOptions
    let payload: RawSpan
    /// Its IP header was marked CE (congestion experienced, RFC 3168 §5).
    let congestionExperienced: Bool
    /// The urgent pointer field (meaningful with URG).
    let urgentPointer: UInt16

    @_lifetime(copy payload)
    init(sequence: SequenceNumber, acknowledgment: SequenceNumber, flags: TCPFlags, window: UInt16,
         options: TCPSegmentOptions, payload: RawSpan, congestionExperienced: Bool = false, urgentPointer: UInt16 = 0) {
        self.congestionExperienced = congestionExperienced
        self.urgentPointer = urgentPointer
        self.sequence = sequence
        self.acknowledgment = acknowledgment
        self.flags = flags
        self.window = window
        self.options = options
        self.payload = payload
    }

    var hasSYN: Bool { flags.contains(.syn) }
    var hasFIN: Bool { flags.contains(.fin) }
    var hasACK: Bool { flags.contains(.ack) }
    var hasRST: Bool { flags.contains(.rst) }

    /// Sequence space used: data, plus SYN and FIN (RFC 9293 §3.4).
    var length: Int { payload.byteCount + (hasSYN ? 1 : 0) + (hasFIN ? 1 : 0) }
}

/// A connection's control block (RFC 9293 §3.3.1): state, the send and
/// receive sequence spaces, buffers, timers, options, congestion state.
/// A class, so the table's entry is updated in place.
final class TCPConnection<I: IPVersion> {
    let id: SocketID
    var state: TCPState
    let local: Endpoint<I>
    let remote: Endpoint<I>
    /// The listener this connection came from, until it is accepted.
    var parent: SocketID?
    /// Closed by its application; the stack finishes it alone.
    var isOrphan = false

    // MARK: Send sequence space (RFC 9293 §3.3.1)

    let initialSendSequence: SequenceNumber
    var sendUnacknowledged: SequenceNumber
    var sendNext: SequenceNumber
    /// The highest sequence number sent so far (sendNext goes back on a timeout).
    var sendMaximum: SequenceNumber
    /// The sequence number of the first byte in `sendBuffer`.
    var sendBase: SequenceNumber
    /// The peer's window, in bytes (already scaled).
    var sendWindow = 0
    /// The largest window the peer ever offered (RFC 5961's MAX.SND.WND).
    var maximumSendWindow = 0
    var sendWindowUpdateSequence: SequenceNumber
    var sendWindowUpdateAcknowledgment: SequenceNumber
    var sendBuffer: ByteRing
    /// The application shut down writing: a FIN follows the buffered data.
    var finQueued = false
    /// Payload bytes per segment: the peer's MSS and the path MTU, less options.
    var sendMSS: Int
    /// The MSS the peer announced (RFC 9293 §3.7.1's default without one).
    var peerMSS = 536
    /// The path MTU table's generation `sendMSS` was last computed from.
    var pathMTUGeneration: UInt32 = 0

    // MARK: Receive sequence space

    var initialReceiveSequence = SequenceNumber(0)
    var receiveNext = SequenceNumber(0)
    /// Bytes the application has not read yet (in order), then room for more;
    /// out-of-order data sits beyond the in-order bytes at its offset. It holds
    /// `receiveCapacity` plus slack for a window rounded up by the scale.
    var receiveBuffer: ByteRing
    /// The receive buffer size the window is computed from.
    var receiveCapacity = 0
    /// Out-of-order data held, as offsets from `receiveNext`.
    var outOfOrder: RangeList
    /// Where the latest out-of-order segments began, the newest first, one
    /// per block: the order SACK blocks are reported in (RFC 2018 §4).
    var recentOutOfOrder: [SequenceNumber] = []
    /// The right edge of the window last advertised; it never moves left.
    var receiveAdvertisedEdge = SequenceNumber(0)
    /// The peer's FIN has been received (in order).
    var finReceived = false
    /// The application shut down reading.
    var readShutdown = false

    // MARK: Options (RFC 7323, RFC 2018)

    var sendWindowShift: UInt8 = 0
    var receiveWindowShift: UInt8 = 0
    var timestampsEnabled = false
    /// TS.Recent: the timestamp to echo.
    var recentTimestamp: UInt32 = 0
    var recentTimestampTime = Instant.zero
    /// Added to our clock in TSval, per connection (RFC 7323 §5.4).
    let timestampOffset: UInt32
    var lastAcknowledgmentSent: SequenceNumber
    var sackPermitted = false

    // MARK: Timers and retransmission

    var rtt: RTTEstimator
    /// The segment being timed for an RTT sample when timestamps are off
    /// (Karn: never a retransmitted one).
    var timedSegment: (end: SequenceNumber, sent: Instant)?
    var retransmitDeadline: Instant?
    /// When to send a tail loss probe (RFC 8985 §7).
    var probeDeadline: Instant?
    /// The end of the probe in flight; one at a time.
    var probeOutstanding: SequenceNumber?
    /// The TSval of the outstanding probe when it sent old data again (a
    /// retransmission, for the Eifel check of a timeout that follows it).
    var probeRetransmitTimestamp: UInt32?
    /// Consecutive retransmission timeouts.
    var retransmissions = 0
    var delayedAckDeadline: Instant?
    var persistDeadline: Instant?
    var keepaliveDeadline: Instant?
    var keepaliveProbes = 0
    /// End of TIME-WAIT, or of an orphan's FIN-WAIT-2.
    var closeDeadline: Instant?
    /// When the oldest unacknowledged data was first sent (for the user timeout).
    var unacknowledgedSince: Instant?
    var lastReceived: Instant
    var lastSent: Instant
    /// The deadline this connection has in the table's timer heap.
    var scheduledDeadline: Instant?
    /// Waiting in the table's `blockedOutput` for output buffers.
    var outputBlocked = false

    // MARK: Acknowledgments

    /// Send an acknowledgment now rather than delaying it.
    var acknowledgeNow = false
    /// In-order data is owed an acknowledgment, sent when the frames that
    /// arrived together have all been taken in (`Stack.transmit`): one ACK
    /// for all of them, as Linux's GRO makes one of a burst.
    var acknowledgeAtFlush = false
    /// Full-sized segments received since the last acknowledgment sent.
    var segmentsSinceAcknowledgment = 0
    /// A window update is owed (the application drained a closed window).
    var windowUpdateOwed = false
    /// Data segments still to be acknowledged at once, not delayed: a new
    /// connection's first ones, so the peer's slow start is not held back
    /// (Linux's quick-ACK mode).
    var quickAcknowledgments = 16

    // MARK: Congestion control and loss recovery (RFC 5681, 6582, 6675)

    var congestion: CongestionControl
    var duplicateAcknowledgments = 0
    var inRecovery = false
    var recoveryPoint: SequenceNumber
    /// The highest sequence number retransmitted in this recovery (HighRxt).
    var highRetransmitted: SequenceNumber
    /// SACKed data, as offsets from `sendUnacknowledged`.
    var scoreboard: RangeList
    /// Retransmissions in this recovery, each with the highest sequence sent
    /// when it went out: if data beyond that is SACKed while the
    /// retransmission is still missing, it was lost too (Linux's lost
    /// retransmit detection, which RFC 6675 alone cannot do).
    var recoveryRetransmissions: [(start: SequenceNumber, end: SequenceNumber, mark: SequenceNumber)] = []

    // MARK: Socket options and errors

    var noDelay = false
    var keepalive = false
    /// SND.UP (RFC 9293 §3.8.5): the sequence number after the last urgent
    /// byte sent with `urgent`, until it is acknowledged.
    var sendUrgent: SequenceNumber?
    /// HyStart++'s state in the initial slow start (RFC 9406).
    var hyStart = HyStart()
    /// A duplicate segment received, to report in the next ACK's first SACK
    /// block (a D-SACK, RFC 2883 §4).
    var duplicateReport: (left: SequenceNumber, right: SequenceNumber)?
    /// What a fast recovery changed, to undo it if every retransmission of
    /// it turns out to have been needless (RFC 2883 §5, RFC 3708).
    var recoveryUndo: RecoveryUndo?
    /// The Eifel algorithm's state after a first retransmission timeout
    /// (RFC 3522 §3.2): the congestion state before it, and the TSval of the
    /// retransmission. An ACK of new data that echoes an older TSval was
    /// caused by the original: the timeout was spurious.
    var timeoutUndo: (before: CongestionControl, retransmitTimestamp: UInt32)?
    /// RACK's record of what was sent and what was delivered (RFC 8985).
    var rack = RACKState()
    /// The last urgent byte the peer marked (its pointer less one, RFC 6093
    /// §4), until the application reads past it; the data stays inline.
    var receiveUrgent: SequenceNumber?
    var keepaliveTiming = KeepaliveTiming()
    var userTimeout: Duration?
    /// The error the application learns next (reset, refused, timed out).
    var error: SocketError?
    /// An ICMP error that does not abort (RFC 5927); reported if the
    /// connection then times out.
    var softError: SocketError?
    /// When the last challenge ACK was owed (they are rate-limited).
    var lastChallenge = Instant(nanoseconds: .min / 2)
    // MARK: ECN (RFC 3168)

    /// Our SYN asked for ECN.
    var ecnRequested = false
    /// Both ends agreed on ECN: data goes out ECN-capable (ECT(0)).
    var ecnEnabled = false
    /// A segment arrived marked CE: every ACK carries ECE until the peer's
    /// CWR (§6.1.3).
    var ecnEchoPending = false
    /// The window was reduced for an ECE: the next new data carries CWR.
    var congestionWindowReducedPending = false
    /// ECEs are answered once per window of data (§6.1.2): until this is
    /// acknowledged, more are ignored.
    var ecnReductionPoint = SequenceNumber(0)

    /// For a SYN cookie's SYN-ACK: the options encoded in TSval's low bits.
    var cookieOptions: UInt32?
    /// The window a SYN or SYN-ACK offers before the buffers exist.
    var initialWindow = 65_535
    /// Loss recovery must retransmit the first lost segment now, whatever the
    /// pipe (on entering recovery, and after a partial acknowledgment).
    var retransmitImmediately = false
    /// Zero-window probes sent since the window closed.
    var persistProbes = 0
    /// The persist timer found a window open but smaller than a segment, with
    /// nothing in flight: send what fits (RFC 9293 §3.8.6.2.1's override of
    /// sender silly window avoidance).
    var sendWhatFits = false

    init(id: SocketID, state: TCPState, local: Endpoint<I>, remote: Endpoint<I>, initialSequence: SequenceNumber,
         timestampOffset: UInt32, settings: TCPSettings, sendMSS: Int, memory: SocketMemory?, now: Instant) {
        self.id = id
        self.state = state
        self.local = local
        self.remote = remote
        initialSendSequence = initialSequence
        sendUnacknowledged = initialSequence
        sendNext = initialSequence
        sendMaximum = initialSequence
        sendBase = initialSequence + 1
        sendWindowUpdateSequence = initialSequence
        sendWindowUpdateAcknowledgment = initialSequence
        recoveryPoint = initialSequence
        ecnReductionPoint = initialSequence
        highRetransmitted = initialSequence
        lastAcknowledgmentSent = initialSequence
        self.timestampOffset = timestampOffset
        // Buffers are small until the handshake completes (half-open
        // connections must be cheap); `allocateBuffers` sizes them.
        sendBuffer = ByteRing(capacity: 0, memory: memory)
        receiveBuffer = ByteRing(capacity: 0, memory: memory)
        outOfOrder = RangeList(limit: settings.outOfOrderRanges)
        scoreboard = RangeList(limit: 4 * settings.outOfOrderRanges)
        self.sendMSS = sendMSS
        rtt = RTTEstimator(initial: settings.initialRTO, minimum: settings.minimumRTO, maximum: settings.maximumRTO)
        congestion = CongestionControl(settings.congestionControl, mss: sendMSS)
        lastReceived = now
        lastSent = now
    }

    /// Gives the connection its buffers (once established, or on connect,
    /// when nothing has been received yet).
    func allocateBuffers(send: Int, receive: Int) {
        if sendBuffer.capacity != send { sendBuffer.resize(send) }
        if receiveCapacity != receive {
            receiveCapacity = receive
            receiveBuffer.resize(receive + Self.windowRoundingSlack)
        }
    }

    /// Rounds the receive buffer up to a whole number of segments of the
    /// connection's MSS, once that is known (at establishment, as FreeBSD's
    /// tcp_mss does), up to `limit`: a window of whole segments leaves no
    /// tail that a full-sized segment cannot use (the receiver's side of
    /// silly window avoidance, RFC 9293 §3.8.6.2.2). Nothing is buffered yet,
    /// and an empty ring holds no storage, so this allocates nothing.
    func roundReceiveBufferToSegments(limit: Int) {
        guard sendMSS > 0, receiveBuffer.isEmpty, outOfOrder.isEmpty else { return }
        let rounded = (receiveCapacity + sendMSS - 1) / sendMSS * sendMSS
        guard rounded != receiveCapacity, rounded <= limit else { return }
        receiveCapacity = rounded
        receiveBuffer.resize(rounded + Self.windowRoundingSlack)
    }

    /// A window field rounds up to a multiple of 2^shift (at most 2^7 here)
    /// rather than shrink the window; the ring has room for that much more.
    static var windowRoundingSlack: Int { 128 }

    // MARK: Derived values

    /// Bytes sent and not acknowledged (sequence space, SYN and FIN included).
    var flightSize: Int { sendMaximum - sendUnacknowledged }

    /// Sequence number just past the last byte the application queued.
    var sendBufferEnd: SequenceNumber { sendBase + sendBuffer.count }

    /// The sequence number of our FIN, once queued.
    var finSequence: SequenceNumber? { finQueued ? sendBufferEnd : nil }

    /// Whether our FIN has been sent.
    var finSent: Bool {
        guard let fin = finSequence else { return false }
        return sendMaximum - fin > 0
    }

    /// Whether our FIN has been acknowledged.
    var finAcknowledged: Bool {
        guard let fin = finSequence else { return false }
        return sendUnacknowledged - fin > 0
    }

    /// Data the application may still read.
    var readable: Int { receiveBuffer.count }

    /// Room in the receive buffer beyond the unread data, as far as the
    /// socket memory lets the ring grow.
    var receiveSpace: Int { max(0, min(receiveCapacity, receiveBuffer.attainable) - receiveBuffer.count) }

    /// How far the advertised window reaches past `receiveNext`.
    var advertisedWindow: Int { max(0, receiveAdvertisedEdge - receiveNext) }

    /// The window to put in the next segment, in bytes before scaling. The
    /// right edge never moves left (RFC 9293 §3.8.6.2.2). Silly window
    /// avoidance on the receiver's side: a small window (under min(half the
    /// buffer, one MSS)) moves its edge right only by at least that much, so
    /// that a nearly closed window opens by whole segments; a window of that
    /// size or more moves its edge with every segment that goes, by whatever
    /// was read, as Linux and FreeBSD do (a window that large is not silly,
    /// and holding its edge back only shrinks what the sender may send).
    func windowToAdvertise() -> Int {
        let offered = min(receiveSpace, 65_535 << Int(receiveWindowShift))
        let growth = receiveNext + offered - receiveAdvertisedEdge
        let threshold = min(receiveCapacity / 2, sendMSS)
        if growth >= threshold || (growth > 0 && offered >= threshold) || receiveAdvertisedEdge - receiveNext < 0 {
            return offered
        }
        return advertisedWindow
    }

    /// Whether a window update should go out: the advertised window is
    /// below one MSS (or closed) and reading opened at least that much.
    var windowUpdateIsDue: Bool {
        advertisedWindow < sendMSS && receiveSpace - advertisedWindow >= min(receiveCapacity / 2, sendMSS)
    }

    /// This connection's earliest timer.
    var nextDeadline: Instant? {
        var deadline = earliest(retransmitDeadline, delayedAckDeadline)
        deadline = earliest(deadline, rack.deadline)
        deadline = earliest(deadline, probeDeadline)
        deadline = earliest(deadline, persistDeadline)
        deadline = earliest(deadline, keepaliveDeadline)
        return earliest(deadline, closeDeadline)
    }

    /// How many SACK blocks fit in a segment beside the other options
    /// (RFC 2018 §3: four, three with timestamps).
    var sackBlockLimit: Int { timestampsEnabled ? 3 : 4 }

    /// The most data one segment may carry now: the send MSS less the SACK
    /// option the segment will hold while data is out of order here, so that
    /// header and options never push a segment past the path MTU (RFC 9293
    /// §3.7.1: the MSS counts data only; options come out of it).
    var segmentPayloadLimit: Int {
        guard sackPermitted, !outOfOrder.isEmpty || duplicateReport != nil else { return sendMSS }
        let blocks = min(outOfOrder.ranges.count + (duplicateReport == nil ? 0 : 1), sackBlockLimit)
        return sendMSS - (2 + 2 + 8 * blocks)
    }

    /// An out-of-order segment starting at `start` was just stored: its
    /// block becomes the most recent (one entry per block; four kept).
    func noteOutOfOrderArrival(_ start: SequenceNumber) {
        let block = outOfOrder.ranges.first { $0.contains(start - receiveNext) }
        recentOutOfOrder.removeAll { earlier in block?.contains(earlier - receiveNext) ?? false }
        recentOutOfOrder.insert(start, at: 0)
        if recentOutOfOrder.count > Self.recentBlocksKept { recentOutOfOrder.removeLast() }
    }

    static var recentBlocksKept: Int { 4 }

    /// Up to `limit` SACK blocks for what is held out of order (RFC 2018 §4):
    /// the block of the segment that arrived last first, then the blocks of
    /// earlier arrivals, most recent first (the blocks most recently
    /// reported, repeated), then any others from the lowest.
    func sackBlocks(limit: Int) -> SACKBlocks {
        var blocks = SACKBlocks()
        guard sackPermitted, limit > 0 else { return blocks }
        // A D-SACK goes first (RFC 2883 §4).
        if let duplicate = duplicateReport { blocks.append(left: duplicate.left.rawValue, right: duplicate.right.rawValue) }
        guard !outOfOrder.isEmpty else { return blocks }
        let firstHeld = blocks.count
        func add(_ range: Range<Int>) {
            let left = (receiveNext + range.lowerBound).rawValue
            guard blocks.count < limit, !(firstHeld..<blocks.count).contains(where: { blocks[$0].left == left }) else {
                return
            }
            blocks.append(left: left, right: (receiveNext + range.upperBound).rawValue)
        }
        for start in recentOutOfOrder {
            let offset = start - receiveNext
            if let range = outOfOrder.ranges.first(where: { $0.contains(offset) }) { add(range) }
        }
        for range in outOfOrder.ranges where blocks.count < limit { add(range) }
        return blocks
    }

    /// The current TSval: milliseconds on the stack clock plus the offset.
    func timestampValue(_ now: Instant) -> UInt32 {
        UInt32(truncatingIfNeeded: now.nanoseconds / 1_000_000) &+ timestampOffset
    }
}

/// A fast recovery's undo record (RFC 2883 §5, RFC 3708): the congestion
/// state before it cut the window, and the retransmissions it made that no
/// D-SACK has yet shown to be duplicates. When each has been reported as
/// received twice, the original arrived after all (reordering, not loss),
/// and the cut is undone.
struct RecoveryUndo {
    var before: CongestionControl
    var retransmitted: [(start: SequenceNumber, end: SequenceNumber)] = []
    /// More retransmissions than are tracked: no undo for this recovery.
    var overflowed = false
    var duplicated = 0

    static let tracked = 64

    var isSpurious: Bool { !overflowed && duplicated > 0 && retransmitted.isEmpty }
}
