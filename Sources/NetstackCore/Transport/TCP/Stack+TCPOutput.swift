import NetstackWire

extension Stack {
    /// Sends what the connection may send now: the SYN or SYN-ACK, data and
    /// FIN within the windows (or as loss recovery picks them), and an ACK if
    /// one is owed and nothing else carried it.
    func tcpOutput<I: IPVersion>(_ connection: TCPConnection<I>) {
        switch connection.state {
        case .closed, .listen:
            return
        case .synSent, .synReceived:
            if connection.sendNext == connection.initialSendSequence {
                let flags: TCPFlags = connection.state == .synSent ? .syn : [.syn, .ack]
                sendSegment(connection, flags: flags, sequence: connection.initialSendSequence, payload: 0..<0)
                connection.sendNext = connection.initialSendSequence + 1
                if connection.sendMaximum - connection.sendNext < 0 { connection.sendMaximum = connection.sendNext }
                armRetransmission(connection)
            } else if connection.acknowledgeNow && connection.state == .synReceived {
                connection.acknowledgeNow = false
            }
            return
        case .timeWait:
            if connection.acknowledgeNow {
                sendSegment(connection, flags: .ack, sequence: connection.sendNext, payload: 0..<0)
            }
            return
        default:
            break
        }
        if connection.pathMTUGeneration != I.layer(of: self).pathMTUs.generation { updateSendMSS(connection) }
        // RFC 5681 §4.1: after an idle period longer than the RTO, start again
        // from the initial window.
        if connection.flightSize == 0, now - connection.lastSent > connection.rtt.timeout {
            connection.congestion.restartAfterIdle(mss: connection.sendMSS)
        }
        var acknowledged = false
        // Stop when no frame is left for a full segment: the connection goes
        // on once the device has taken what is queued (`transmit`).
        let largestFrame = offloads.tcpSegmentation ? FrameOutput.largeFrameSize : output.smallFrameSize
        while output.canMakeFrame(length: largestFrame) || blockOutput(connection) {
            guard let next = nextSegment(connection) else { break }
            transmit(connection, next)
            acknowledged = true
        }
        connection.sendWhatFits = false
        // Data waiting, nothing in flight, and nothing could go: the window
        // is closed (probe it, RFC 9293 §3.8.6.1) or too small for sender
        // silly window avoidance (send what fits when the timer fires,
        // RFC 9293 §3.8.6.2.1). Either way no ACK would come to move things.
        if !acknowledged, connection.sendBufferEnd - connection.sendNext > 0,
           connection.flightSize == 0, connection.persistDeadline == nil {
            connection.persistDeadline = now + connection.rtt.timeout
        }
        if !acknowledged && (connection.acknowledgeNow || connection.windowUpdateOwed) {
            sendSegment(connection, flags: .ack, sequence: connection.sendNext, payload: 0..<0)
        }
    }

    /// One segment to send: where it starts, how many data bytes, whether it
    /// carries the FIN.
    struct SegmentPlan {
        var sequence: SequenceNumber
        var length: Int
        var fin: Bool
    }

    /// Records that a connection could not send for want of output buffers,
    /// so that `transmit` resumes it once the device took the queued frames.
    /// Returns false (the loop stops).
    private func blockOutput<I: IPVersion>(_ connection: TCPConnection<I>) -> Bool {
        if !connection.outputBlocked {
            connection.outputBlocked = true
            I.layer(of: self).tcp.blockedOutput.append(connection.id)
        }
        return false
    }

    /// The acknowledgments owed to in-order data that arrived since the
    /// last call and that nothing sent since has carried.
    func sendOwedAcknowledgments<I: IPVersion>(_ version: I.Type) {
        let layer = I.layer(of: self)
        guard !layer.tcp.acknowledgeAtFlush.isEmpty else { return }
        // The list and a spare trade places, so neither is copied or
        // allocated again: this runs every time the engine transmits.
        var owed = layer.tcp.spareSocketList
        swap(&owed, &layer.tcp.acknowledgeAtFlush)
        for id in owed {
            guard let connection = layer.tcp.connection(id), connection.acknowledgeAtFlush else { continue }
            connection.acknowledgeAtFlush = false
            connection.acknowledgeNow = true
            tcpOutput(connection)
            schedule(connection)
        }
        owed.removeAll(keepingCapacity: true)
        layer.tcp.spareSocketList = owed
    }

    /// Sends for the connections that `blockOutput` stopped. Returns whether
    /// there were any.
    func resumeBlockedOutput<I: IPVersion>(_ version: I.Type) -> Bool {
        let layer = I.layer(of: self)
        guard !layer.tcp.blockedOutput.isEmpty else { return false }
        let blocked = layer.tcp.blockedOutput
        layer.tcp.blockedOutput.removeAll(keepingCapacity: true)
        for id in blocked {
            guard let connection = layer.tcp.connection(id) else { continue }
            connection.outputBlocked = false
            tcpOutput(connection)
            schedule(connection)
        }
        return true
    }

    /// Payload bytes one frame may carry: a segment, or with TCP segmentation
    /// offload as many whole segments as fit a 64 KiB packet.
    func segmentBurst<I: IPVersion>(_ connection: TCPConnection<I>) -> Int {
        let mss = connection.segmentPayloadLimit
        guard offloads.tcpSegmentation else { return mss }
        let room = LinkOffloads.segmentationLimit - I.headerLength - TCPSegment.maximumHeaderLength
        return max(1, room / mss) * mss
    }

    /// What to send next, if anything: in loss recovery, RFC 6675's NextSeg
    /// within `cwnd − pipe`; otherwise data within min(cwnd, rwnd), held back
    /// by Nagle's algorithm and sender silly window avoidance (RFC 9293
    /// §3.7.4, §3.8.6.2.1); then the FIN. With segmentation offload a plan
    /// may span many segments (the link cuts them); retransmissions stay one
    /// segment each.
    private func nextSegment<I: IPVersion>(_ connection: TCPConnection<I>) -> SegmentPlan? {
        switch connection.state {
        case .established, .closeWait, .finWait1, .closing, .lastAck: break
        default: return nil
        }
        let mss = connection.segmentPayloadLimit
        var budget = connection.congestion.window - (connection.sendNext - connection.sendUnacknowledged)
        if !connection.inRecovery && connection.duplicateAcknowledgments > 0 {
            // Limited Transmit (RFC 3042): a new segment for each of the first
            // two duplicate ACKs, so a small window still gets enough of them.
            budget += min(connection.duplicateAcknowledgments, 2) * mss
        }
        if connection.inRecovery {
            let pipe = self.pipe(connection)
            let allowance = connection.congestion.window - pipe
            let forced = connection.retransmitImmediately
            guard allowance >= mss || forced else { return nil }
            if let lost = firstLostRange(connection) {
                connection.retransmitImmediately = false
                let start = connection.sendUnacknowledged + lost.lowerBound
                var length = min(mss, lost.count)
                // A lost FIN takes sequence space, not data: the plan
                // carries it as the flag, never as a byte past the data.
                if let fin = connection.finSequence, start + length - fin > 0 { length = max(0, fin - start) }
                return plan(connection, from: start, length: length)
            }
            connection.retransmitImmediately = false
            budget = allowance
        }
        // Skip what the receiver already has (SACKed) when resending after a timeout.
        if connection.sendMaximum - connection.sendNext > 0 {
            let offset = connection.sendNext - connection.sendUnacknowledged
            if let covering = connection.scoreboard.ranges.first(where: { $0.contains(offset) }) {
                connection.sendNext = connection.sendUnacknowledged + covering.upperBound
                if connection.sendNext - connection.sendMaximum > 0 { connection.sendNext = connection.sendMaximum }
            }
        }
        let windowBudget = connection.sendUnacknowledged + connection.sendWindow - connection.sendNext
        let dataOffset = connection.sendNext - connection.sendBase
        let available = connection.sendBuffer.count - max(dataOffset, 0)
        if dataOffset >= 0, available > 0 {
            let resending = connection.sendMaximum - connection.sendNext > 0
            var length = min(resending ? mss : segmentBurst(connection), available, budget, windowBudget)
            if resending {
                // Stop at the next SACKed range.
                let offset = connection.sendNext - connection.sendUnacknowledged
                if let next = connection.scoreboard.ranges.first(where: { $0.lowerBound > offset }) {
                    length = min(length, next.lowerBound - offset)
                }
            }
            guard length > 0 else { return nil }
            let everythingQueued = length == available
            let nothingInFlight = connection.sendNext == connection.sendUnacknowledged
            // Nagle (RFC 9293 §3.7.4): a short segment goes alone only when
            // it ends what is queued and nothing is in flight (or no-delay).
            // Urgent data is not held back either (Linux's tcp_nagle_test).
            let urgentPending = connection.sendUrgent.map { $0 - connection.sendNext > 0 } ?? false
            let shortMayGo = everythingQueued && (connection.noDelay || nothingInFlight || urgentPending)
            if connection.sendWhatFits {
                connection.sendWhatFits = false
            } else if !resending && length < mss {
                let halfWindow = connection.maximumSendWindow > 0 && length >= connection.maximumSendWindow / 2
                guard shortMayGo || halfWindow else { return nil }
            } else if length > mss && length % mss != 0 && !shortMayGo {
                // A multi-segment frame whose last segment would be short:
                // the short one waits, as it would without the offload.
                length -= length % mss
            }
            return plan(connection, from: connection.sendNext, length: length)
        }
        if let fin = connection.finSequence, connection.sendNext == fin {
            return SegmentPlan(sequence: fin, length: 0, fin: true)
        }
        return nil
    }

    private func plan<I: IPVersion>(_ connection: TCPConnection<I>, from start: SequenceNumber,
                                    length: Int) -> SegmentPlan {
        let end = start + length
        let fin = connection.finSequence.map { end == $0 } ?? false
        return SegmentPlan(sequence: start, length: length, fin: fin)
    }

    /// Sends one planned segment and does the bookkeeping: sequence
    /// variables, timing, state on FIN, the retransmission timer.
    func transmit<I: IPVersion>(_ connection: TCPConnection<I>, _ plan: SegmentPlan) {
        var plan = plan
        var flags: TCPFlags = .ack
        // After an ECN reduction, the next new data says so (CWR, RFC 3168
        // §6.1.2), in one segment: an offloaded frame's cut would copy the
        // flag to every segment of it.
        if connection.congestionWindowReducedPending && plan.length > 0 && connection.sendMaximum - plan.sequence <= 0 {
            connection.congestionWindowReducedPending = false
            flags.insert(.cwr)
            if plan.length > connection.segmentPayloadLimit {
                plan = SegmentPlan(sequence: plan.sequence, length: connection.segmentPayloadLimit, fin: false)
            }
        }
        // Urgent mode (RFC 9293 §3.8.5): every segment before SND.UP says
        // where it ends, one segment per frame for the same reason as CWR;
        // past 64 KiB ahead the pointer says as far as it can.
        var urgentPointer: UInt16 = 0
        if let urgent = connection.sendUrgent {
            if urgent - connection.sendUnacknowledged <= 0 {
                connection.sendUrgent = nil
            } else if urgent - plan.sequence > 0 {
                flags.insert(.urg)
                urgentPointer = UInt16(min(urgent - plan.sequence, 0xffff))
                if plan.length > connection.segmentPayloadLimit {
                    plan = SegmentPlan(sequence: plan.sequence, length: connection.segmentPayloadLimit, fin: false)
                }
            }
        }
        if plan.fin { flags.insert(.fin) }
        let offset = plan.sequence - connection.sendBase
        if plan.length > 0 && plan.sequence + plan.length == connection.sendBufferEnd { flags.insert(.psh) }
        sendSegment(connection, flags: flags, sequence: plan.sequence, payload: offset..<(offset + plan.length),
                    urgentPointer: urgentPointer)
        let end = plan.sequence + plan.length + (plan.fin ? 1 : 0)
        if connection.sackPermitted && configuration.tcp.rack {
            connection.rack.sent(plan.sequence, end, at: now, retransmission: connection.sendMaximum - plan.sequence > 0)
        }
        if connection.sendMaximum - plan.sequence > 0 {
            counters.count(.tcpRetransmissions)
            if connection.inRecovery, var undo = connection.recoveryUndo {
                if undo.retransmitted.count < RecoveryUndo.tracked {
                    undo.retransmitted.append((plan.sequence, end))
                } else {
                    undo.overflowed = true
                }
                connection.recoveryUndo = undo
            }
            if connection.inRecovery {
                if end - connection.highRetransmitted > 0 { connection.highRetransmitted = end }
                if connection.recoveryRetransmissions.count < 64 {
                    connection.recoveryRetransmissions.append((plan.sequence, end, connection.sendMaximum))
                }
            }
        } else if !connection.timestampsEnabled, connection.timedSegment == nil, connection.retransmissions == 0 {
            connection.timedSegment = (end, now)
        }
        if plan.sequence == connection.sendNext || end - connection.sendNext > 0 {
            if end - connection.sendNext > 0 { connection.sendNext = end }
        }
        if end - connection.sendMaximum > 0 { connection.sendMaximum = end }
        if plan.fin {
            switch connection.state {
            case .established: connection.state = .finWait1
            case .closeWait: connection.state = .lastAck
            default: break
            }
        }
        armRetransmission(connection)
    }

    func armRetransmission<I: IPVersion>(_ connection: TCPConnection<I>) {
        if connection.retransmitDeadline == nil {
            connection.retransmitDeadline = now + connection.rtt.timeout
        }
        if connection.unacknowledgedSince == nil { connection.unacknowledgedSince = now }
        armProbe(connection)
    }

    /// RFC 8985 §7.2: with data in flight, no recovery under way and SACK on,
    /// a probe goes out after two round trips without acknowledgment (plus a
    /// worst-case delayed ACK when only one segment is out), before the RTO.
    func armProbe<I: IPVersion>(_ connection: TCPConnection<I>) {
        guard connection.sackPermitted, connection.state.isSynchronized, !connection.inRecovery,
              connection.probeOutstanding == nil, connection.retransmissions == 0, connection.flightSize > 0,
              let srtt = connection.rtt.smoothed else {
            connection.probeDeadline = nil
            return
        }
        var timeout = srtt * 2
        if connection.flightSize <= connection.sendMSS { timeout += .milliseconds(200) }
        timeout = max(timeout, .milliseconds(10))
        let deadline = now + timeout
        if let retransmit = connection.retransmitDeadline, deadline >= retransmit {
            connection.probeDeadline = nil
        } else {
            connection.probeDeadline = deadline
        }
    }

    /// RFC 8985 §7.3: send one new segment if the receiver window allows,
    /// else retransmit the last segment sent, so that an ACK (with SACK)
    /// comes back and loss recovery can start without the timer.
    func sendProbe<I: IPVersion>(_ connection: TCPConnection<I>) {
        connection.probeDeadline = nil
        guard connection.flightSize > 0, !connection.inRecovery else { return }
        let mss = connection.segmentPayloadLimit
        let unsent = connection.sendBufferEnd - connection.sendMaximum
        let windowRoom = connection.sendUnacknowledged + connection.sendWindow - connection.sendMaximum
        let start: SequenceNumber
        let length: Int
        connection.probeRetransmitTimestamp = nil
        if unsent > 0 && windowRoom > 0, connection.sendNext == connection.sendMaximum {
            start = connection.sendMaximum
            length = min(mss, unsent, windowRoom)
        } else {
            connection.probeRetransmitTimestamp = connection.timestampValue(now)
            let dataEnd = connection.finSent ? connection.sendMaximum - 1 : connection.sendMaximum
            length = min(mss, max(0, dataEnd - connection.sendBase))
            start = dataEnd - length
            if length == 0 && !connection.finSent { return }
        }
        let fin = connection.finSequence.map { start + length == $0 } ?? false
        transmit(connection, SegmentPlan(sequence: start, length: length, fin: fin))
        connection.probeOutstanding = start + length + (fin ? 1 : 0)
        // The retransmission timer restarts after a probe (RFC 8985 §7.3).
        connection.retransmitDeadline = now + connection.rtt.timeout
    }

    // MARK: RFC 6675 loss recovery

    /// The duplicate-ACK threshold: 3 (RFC 5681), lowered by Early
    /// Retransmit (RFC 5827) to one less than the segments outstanding when
    /// fewer than four are and no new data can go out, so that a small flight
    /// recovers without waiting for the retransmission timer.
    func duplicateThreshold<I: IPVersion>(_ connection: TCPConnection<I>) -> Int {
        let mss = connection.sendMSS
        let outstanding = (connection.flightSize + mss - 1) / mss
        let canSendMore = connection.sendBufferEnd - connection.sendMaximum > 0
            && connection.sendUnacknowledged + connection.sendWindow - connection.sendMaximum > 0
        guard outstanding < 4, !canSendMore else { return 3 }
        return max(1, outstanding - 1)
    }

    /// Offsets from SND.UNA below which un-SACKed data counts as lost
    /// (RFC 6675 IsLost): more than (DupThresh − 1)·SMSS bytes, or DupThresh
    /// separate ranges, SACKed above. Without SACK (NewReno), the first
    /// segment is presumed lost after DupThresh duplicate ACKs and during recovery.
    func lossBoundary<I: IPVersion>(_ connection: TCPConnection<I>) -> Int {
        let mss = connection.sendMSS
        let threshold = duplicateThreshold(connection)
        guard connection.sackPermitted else {
            let presumed = connection.inRecovery || connection.duplicateAcknowledgments >= threshold
            return presumed ? min(mss, connection.flightSize) : 0
        }
        let ranges = connection.scoreboard.ranges
        // With RACK (RFC 8985), its time rule replaces the duplicate
        // threshold, as in Linux: first transmissions below its point are lost.
        if configuration.tcp.rack {
            return connection.rack.lostThrough.map { min(max(0, $0 - connection.sendUnacknowledged),
                                                         connection.flightSize) } ?? 0
        }
        guard !ranges.isEmpty else { return 0 }
        var need = (threshold - 1) * mss + 1
        var boundary = 0
        for range in ranges.reversed() {
            if range.count >= need {
                boundary = range.upperBound - need
                break
            }
            need -= range.count
        }
        if ranges.count >= threshold { boundary = max(boundary, ranges[ranges.count - threshold].lowerBound) }
        return boundary
    }

    /// RFC 6675 SetPipe: bytes believed in the network. Without SACK, each
    /// duplicate ACK stands for one segment that left it.
    func pipe<I: IPVersion>(_ connection: TCPConnection<I>) -> Int {
        let flight = connection.flightSize
        guard connection.sackPermitted else {
            return max(0, flight - connection.duplicateAcknowledgments * connection.sendMSS)
        }
        let boundary = lossBoundary(connection)
        let retransmitted = max(0, connection.highRetransmitted - connection.sendUnacknowledged)
        var total = 0
        var position = 0
        func count(_ hole: Range<Int>) {
            guard !hole.isEmpty else { return }
            // Above the loss boundary: still in flight.
            total += max(0, hole.upperBound - max(hole.lowerBound, boundary))
            // Below it: lost, but in flight again if retransmitted.
            let lostEnd = min(hole.upperBound, boundary)
            if lostEnd > hole.lowerBound {
                total += max(0, min(lostEnd, retransmitted) - hole.lowerBound)
            }
        }
        for range in connection.scoreboard.ranges {
            count(position..<min(range.lowerBound, flight))
            position = range.upperBound
        }
        count(position..<flight)
        return total
    }

    /// RFC 6675 NextSeg rule (1): the first lost range not yet retransmitted
    /// in this recovery, as offsets from SND.UNA.
    private func firstLostRange<I: IPVersion>(_ connection: TCPConnection<I>) -> Range<Int>? {
        let boundary = lossBoundary(connection)
        guard boundary > 0 else { return nil }
        let retransmitted = max(0, connection.highRetransmitted - connection.sendUnacknowledged)
        var position = 0
        for range in connection.scoreboard.ranges + [Int.max..<Int.max] {
            let hole = position..<min(range.lowerBound, boundary)
            let start = max(hole.lowerBound, retransmitted)
            if start < hole.upperBound { return start..<hole.upperBound }
            position = range.upperBound
            if position >= boundary { break }
        }
        return nil
    }

    // MARK: Segments on the wire

    /// Builds and sends one segment of a connection, with its options (RFC
    /// 7323 timestamps, RFC 2018 SACK blocks; on SYNs MSS, SACK-permitted and
    /// window scale, in Linux's order) and the window to advertise.
    func sendSegment<I: IPVersion>(_ connection: TCPConnection<I>, flags: TCPFlags, sequence: SequenceNumber,
                                   payload: Range<Int>, urgentPointer: UInt16 = 0) {
        var flags = flags
        let isSYN = flags.contains(.syn)
        let acknowledges = flags.contains(.ack)
        // ECN (RFC 3168 §6.1.1, §6.1.3): the SYN asks (ECE and CWR), the
        // SYN-ACK agrees (ECE), ACKs echo a CE mark (ECE). New data is
        // ECN-capable (ECT(0)); SYNs, pure ACKs and retransmissions are not
        // (§6.1.5).
        if isSYN {
            if !acknowledges && connection.ecnRequested { flags.formUnion([.ece, .cwr]) }
            if acknowledges && connection.ecnEnabled { flags.insert(.ece) }
        } else if connection.ecnEnabled && acknowledges && connection.ecnEchoPending && !flags.contains(.rst) {
            flags.insert(.ece)
        }
        let ecn: UInt8 = connection.ecnEnabled && !isSYN && !payload.isEmpty
            && connection.sendMaximum - sequence <= 0 ? 2 : 0
        var window: Int
        if isSYN {
            window = min(connection.receiveCapacity > 0 ? connection.receiveCapacity : connection.initialWindow, 65_535)
        } else {
            // Never left of the edge already advertised (RFC 9293 §3.8.6.2.2):
            // the scaled field rounds up, into the ring's slack, unless that
            // would offer more than the ring holds. Rounding up again and
            // again would creep the edge past the ring (every ACK of a filling
            // window adds up to 2^shift − 1), so then it rounds down: the
            // offered edge lies left of the one recorded by less than 2^shift,
            // the retraction RFC 7323 §2.4 (and its Appendix F) says scaling
            // causes and senders must tolerate. The recorded edge, which the
            // acceptance test uses, does not move left.
            let bytes = max(connection.windowToAdvertise(), connection.advertisedWindow)
            let shift = Int(connection.receiveWindowShift)
            let ringRoom = connection.receiveBuffer.capacity - connection.receiveBuffer.count
            var units = (bytes + (1 << shift) - 1) >> shift
            if units << shift > ringRoom { units = ringRoom >> shift }
            window = min(units, 65_535)
        }
        if flags.contains(.rst) { window = 0 }
        var header = TCPHeader(sourcePort: connection.local.port, destinationPort: connection.remote.port,
                               sequenceNumber: sequence.rawValue,
                               acknowledgmentNumber: acknowledges ? connection.receiveNext.rawValue : 0,
                               flags: flags, window: UInt16(window), payloadLength: payload.count)
        header.urgentPointer = urgentPointer
        var timestamp = connection.timestampValue(now)
        if isSYN, let bits = connection.cookieOptions { timestamp = timestamp & ~0x1f | bits }
        let echo = connection.state == .synSent ? 0 : connection.recentTimestamp
        if isSYN {
            header.options.append(.maximumSegmentSize(UInt16(clamping: maximumSegmentSize(I.self))))
            // Laid out as Linux does: SACK-permitted beside the timestamps,
            // or after two no-ops without them; wscale after one.
            if connection.sackPermitted {
                if !connection.timestampsEnabled {
                    header.options.append(.noOperation)
                    header.options.append(.noOperation)
                }
                header.options.append(.sackPermitted)
            } else if connection.timestampsEnabled {
                header.options.append(.noOperation)
                header.options.append(.noOperation)
            }
            if connection.timestampsEnabled { header.options.append(.timestamps(value: timestamp, echoReply: echo)) }
            if connection.receiveWindowShift > 0 {
                header.options.append(.noOperation)
                header.options.append(.windowScale(connection.receiveWindowShift))
            }
        } else if !flags.contains(.rst) {
            if connection.timestampsEnabled {
                header.options.append(.noOperation)
                header.options.append(.noOperation)
                header.options.append(.timestamps(value: timestamp, echoReply: echo))
            }
            if acknowledges {
                let blocks = connection.sackBlocks(limit: connection.sackBlockLimit)
                if !blocks.isEmpty {
                    header.options.append(.noOperation)
                    header.options.append(.noOperation)
                    header.options.append(.sack(blocks))
                }
                if connection.duplicateReport != nil {
                    // Each duplicate is reported once (RFC 2883 §4).
                    connection.duplicateReport = nil
                    counters.count(.tcpDSACKSent)
                }
            }
        }
        let length = header.length
        let headerLength = header.headerLength
        let pseudo = I.pseudoHeader(source: connection.local.address, destination: connection.remote.address,
                                    protocol: .tcp, length: length)
        let frozenHeader = header
        // The link finishes the checksum, and cuts a segment longer than one
        // MSS into MSS-sized ones (each with these options).
        let partial = offloads.transmitChecksum
        let segmentSize = connection.segmentPayloadLimit
        let offload: TransmitOffload = payload.count > segmentSize
            ? .tcpSegmentation(segmentSize: segmentSize, headerLength: headerLength)
            : partial ? .checksum(fieldOffset: TCPSegment.checksumFieldOffset) : .none
        let sent = sendIP(I.self, source: connection.local.address, destination: connection.remote.address,
                          protocol: .tcp, payloadLength: length, offload: offload, ecn: ecn) { span in
            if !payload.isEmpty {
                var written = headerLength
                connection.sendBuffer.withBytes(payload) { piece in
                    span.copy(RawSpan(_unsafeBytes: piece), to: written)
                    written += piece.count
                }
            }
            frozenHeader.emit(into: &span, pseudoHeader: pseudo, partialChecksum: partial)
        }
        if sent { counters.count(.tcpSegmentsSent) }
        connection.lastSent = now
        if acknowledges {
            connection.lastAcknowledgmentSent = connection.receiveNext
            let scaled = isSYN ? window : window << Int(connection.receiveWindowShift)
            let edge = connection.receiveNext + scaled
            if edge - connection.receiveAdvertisedEdge > 0 || isSYN { connection.receiveAdvertisedEdge = edge }
            connection.acknowledgeNow = false
            connection.acknowledgeAtFlush = false
            connection.windowUpdateOwed = false
            connection.delayedAckDeadline = nil
            connection.segmentsSinceAcknowledgment = 0
        }
    }

    /// A segment with no connection behind it (resets): no options, no window.
    func sendBareSegment<I: IPVersion>(_ version: I.Type, _ tuple: FourTuple<I>, sequence: SequenceNumber,
                                       acknowledgment: SequenceNumber, flags: TCPFlags) {
        let header = TCPHeader(sourcePort: tuple.local.port, destinationPort: tuple.remote.port,
                               sequenceNumber: sequence.rawValue, acknowledgmentNumber: acknowledgment.rawValue,
                               flags: flags, window: 0)
        let pseudo = I.pseudoHeader(source: tuple.local.address, destination: tuple.remote.address, protocol: .tcp,
                                    length: header.length)
        if sendIP(I.self, source: tuple.local.address, destination: tuple.remote.address, protocol: .tcp,
                  payloadLength: header.length, build: { header.emit(into: &$0, pseudoHeader: pseudo) }) {
            counters.count(.tcpSegmentsSent)
        }
    }
}
