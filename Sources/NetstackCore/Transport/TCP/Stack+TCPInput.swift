import NetstackWire

extension Stack {
    /// TCP input: verify, find the connection (or listener), and run RFC 9293
    /// §3.10.7's "SEGMENT ARRIVES".
    func receiveTCP<I: IPVersion>(_ datagram: IPDatagram<I>) {
        let segment: TCPSegment
        let options: TCPSegmentOptions
        do {
            segment = try TCPSegment(datagram.payload)
            if !datagram.offload.checksumTrusted {
                var checksum = I.pseudoHeader(source: datagram.source, destination: datagram.destination,
                                              protocol: .tcp, length: segment.bytes.byteCount)
                checksum.add(segment.bytes)
                guard checksum.value == 0 else { return counters.drop(WireError(.tcp, .badChecksum)) }
            }
            options = try TCPSegmentOptions(segment)
        } catch {
            return counters.drop(error)
        }
        // RFC 1122 §4.2.3.10: nothing to or from a group address.
        guard datagram.isUnicast, !datagram.source.isUnspecified else { return counters.drop(.tcpRejected) }
        counters.count(.tcpSegmentsReceived)
        let incoming = IncomingSegment(
            sequence: SequenceNumber(segment.sequenceNumber), acknowledgment: SequenceNumber(segment.acknowledgmentNumber),
            flags: segment.flags, window: segment.window, options: options, payload: segment.payload,
            congestionExperienced: datagram.ecn == 3, urgentPointer: segment.urgentPointer)
        let tuple = FourTuple(local: Endpoint<I>(datagram.destination, segment.destinationPort),
                              remote: Endpoint<I>(datagram.source, segment.sourcePort))
        let layer = I.layer(of: self)
        if let connection = layer.tcp.connections[tuple] {
            if connection.state == .timeWait, reopens(connection, incoming),
               let listener = layer.tcp.listener(for: tuple.local) {
                // A new incarnation of the four-tuple (RFC 1122 §4.2.2.13,
                // RFC 6191): the old one goes, the listener takes the SYN,
                // and the new ISN lies well past the old sequence space, as
                // Linux makes it.
                let initialSequence = connection.sendMaximum + 65_537
                destroy(connection)
                counters.count(.tcpTimeWaitReopened)
                listenerReceives(listener, incoming, tuple, initialSequence: initialSequence)
                return
            }
            segmentArrives(connection, incoming)
            if connection.state != .closed {
                tcpOutput(connection)
                schedule(connection)
            }
            return
        }
        if let listener = layer.tcp.listener(for: tuple.local) {
            listenerReceives(listener, incoming, tuple)
            return
        }
        counters.drop(.tcpNoSocket)
        sendReset(I.self, answering: incoming, tuple)
    }

    /// RFC 9293 §3.10.7.1: a segment for no connection is answered by a reset
    /// that the sender will accept (never a reset for a reset).
    func sendReset<I: IPVersion>(_ version: I.Type, answering segment: IncomingSegment, _ tuple: FourTuple<I>) {
        guard !segment.hasRST else { return }
        if segment.hasACK {
            sendBareSegment(I.self, tuple, sequence: segment.acknowledgment, acknowledgment: SequenceNumber(0),
                            flags: .rst)
        } else {
            sendBareSegment(I.self, tuple, sequence: SequenceNumber(0),
                            acknowledgment: segment.sequence + segment.length, flags: [.rst, .ack])
        }
        counters.count(.tcpResetsSent)
    }

    // MARK: LISTEN (RFC 9293 §3.10.7.2)

    /// Whether a SYN may open a new connection over `connection`, in
    /// TIME-WAIT: with timestamps on both, its TSval is newer than the last
    /// one seen (RFC 6191 §2); without, its sequence number lies past
    /// RCV.NXT (RFC 1122 §4.2.2.13), so no old duplicate can be taken for it.
    /// Otherwise the SYN gets TIME-WAIT's answer (an ACK, RFC 5961).
    private func reopens<I: IPVersion>(_ connection: TCPConnection<I>, _ segment: IncomingSegment) -> Bool {
        guard segment.hasSYN, !segment.hasACK, !segment.hasRST, !segment.hasFIN else { return false }
        if connection.timestampsEnabled, let timestamp = segment.options.timestamp {
            return Int32(bitPattern: timestamp.value &- connection.recentTimestamp) > 0
        }
        return segment.sequence - connection.receiveNext > 0
    }

    private func listenerReceives<I: IPVersion>(_ listener: TCPListener<I>, _ segment: IncomingSegment,
                                                _ tuple: FourTuple<I>, initialSequence: SequenceNumber? = nil) {
        if segment.hasRST { return }
        if segment.hasACK {
            // Only a SYN cookie's completing ACK is welcome here, and only
            // within the connection limits (past them it is dropped: the
            // peer's retransmission may find room).
            if !segment.hasSYN, configuration.tcp.synCookies,
               !I.layer(of: self).tcp.admits(tuple.remote.address, configuration.tcp) {
                reachedLimit(.tcpConnections)
                return counters.drop(.tcpConnectionLimit)
            }
            if !segment.hasSYN, configuration.tcp.synCookies {
                switch acceptCookie(listener, segment, tuple) {
                case .accepted(let connection):
                    counters.count(.tcpSynCookiesAccepted)
                    segmentArrives(connection, segment)
                    if connection.state != .closed {
                        tcpOutput(connection)
                        schedule(connection)
                    }
                    return
                case .ahead:
                    // Our cookie, but the segment comes after data that was
                    // lost with the handshake's ACK (under a flood, the
                    // TAP's queue drops both): a reset would kill a
                    // connection the peer's retransmission from its first
                    // byte completes. Linux resets it; we wait for that.
                    return counters.drop(.tcpCookieAhead)
                case .notOurs: break
                }
            }
            counters.drop(.tcpNoSocket)
            return sendReset(I.self, answering: segment, tuple)
        }
        guard segment.hasSYN else { return counters.drop(.tcpRejected) }
        guard !segment.hasFIN else { return counters.drop(.tcpSynWithFin) }
        guard listener.acceptQueue.count < listener.backlog else {
            reachedLimit(.listenQueue)
            return counters.drop(.tcpListenOverflow)
        }
        let layer = I.layer(of: self)
        guard layer.tcp.admits(tuple.remote.address, configuration.tcp) else {
            reachedLimit(.tcpConnections)
            return counters.drop(.tcpConnectionLimit)
        }
        guard listener.halfOpen < configuration.tcp.synQueueLimit else {
            reachedLimit(.synQueue)
            guard configuration.tcp.synCookies else { return counters.drop(.tcpListenOverflow) }
            counters.count(.tcpSynCookiesSent)
            return sendCookie(listener, segment, tuple)
        }
        let connection = makeConnection(I.self, id: makeSocketID(), state: .synReceived, local: tuple.local,
                                        remote: tuple.remote, options: listener.options,
                                        initialSequence: initialSequence)
        connection.parent = listener.id
        acceptSYN(connection, segment)
        // RFC 3168 §6.1.1: an ECN-setup SYN has ECE and CWR; the SYN-ACK
        // agrees with ECE alone. (A SYN cookie's SYN-ACK does not: the
        // cookie has no room to remember it.)
        if configuration.tcp.ecn != .off && segment.flags.contains([.ece, .cwr]) {
            connection.ecnEnabled = true
            counters.count(.tcpECNNegotiated)
        }
        listener.halfOpen += 1
        layer.tcp.entries[connection.id] = .connection(connection)
        layer.tcp.insert(connection)
        tcpOutput(connection)
        schedule(connection)
    }

    /// Takes the peer's initial sequence number and options from its SYN
    /// (RFC 9293 §3.7.1, RFC 7323 §2.2 and §3.2, RFC 2018 §2).
    func acceptSYN<I: IPVersion>(_ connection: TCPConnection<I>, _ segment: IncomingSegment) {
        connection.initialReceiveSequence = segment.sequence
        connection.receiveNext = segment.sequence + 1
        connection.lastAcknowledgmentSent = connection.receiveNext
        let options = segment.options
        // Without an MSS option: 536 bytes (IPv4) or 1220 (IPv6).
        let peerMSS = Int(options.maximumSegmentSize ?? UInt16(I.minimumMTU == 68 ? 536 : 1220))
        if let shift = options.windowScale, connection.receiveWindowShift > 0 {
            connection.sendWindowShift = min(shift, 14)
        } else {
            connection.sendWindowShift = 0
            connection.receiveWindowShift = 0
        }
        connection.sackPermitted = connection.sackPermitted && options.sackPermitted
        if let timestamp = options.timestamp, connection.timestampsEnabled {
            connection.recentTimestamp = timestamp.value
            connection.recentTimestampTime = now
        } else {
            connection.timestampsEnabled = false
        }
        setSendMSS(connection, peerMSS: peerMSS)
        // The window of a SYN is never scaled (RFC 7323 §2.2).
        connection.sendWindow = Int(segment.window)
        connection.maximumSendWindow = connection.sendWindow
        connection.sendWindowUpdateSequence = segment.sequence
    }

    /// The payload of one segment: the smaller MSS less the options every
    /// segment carries (RFC 9293 §3.7.1); 1448 with timestamps on Ethernet.
    func setSendMSS<I: IPVersion>(_ connection: TCPConnection<I>, peerMSS: Int) {
        connection.peerMSS = peerMSS
        updateSendMSS(connection)
        connection.congestion = CongestionControl(configuration.tcp.congestionControl, mss: connection.sendMSS)
        // A connect's buffers exist already: whole segments now. (An
        // accepted connection gets its buffers, rounded, once established.)
        if connection.receiveCapacity > 0 {
            connection.roundReceiveBufferToSegments(limit: configuration.tcp.maximumBuffer)
        }
    }

    /// Recomputes the send MSS from the peer's MSS and the path MTU to it
    /// (which ICMP lowers, RFC 1191 §6.2, and expiry raises again, §6.3).
    func updateSendMSS<I: IPVersion>(_ connection: TCPConnection<I>) {
        let layer = I.layer(of: self)
        connection.pathMTUGeneration = layer.pathMTUs.generation
        let path = layer.pathMTU(to: connection.remote.address) - I.headerLength - TCPSegment.minimumHeaderLength
        let optionBytes = connection.timestampsEnabled ? 12 : 0
        connection.sendMSS = max(64, min(path, connection.peerMSS) - optionBytes)
    }

    // MARK: SYN-SENT (RFC 9293 §3.10.7.3)

    private func synSentArrives<I: IPVersion>(_ connection: TCPConnection<I>, _ segment: IncomingSegment) {
        var acceptableACK = false
        if segment.hasACK {
            let ack = segment.acknowledgment
            guard ack - connection.initialSendSequence > 0, connection.sendNext - ack >= 0 else {
                if !segment.hasRST {
                    sendBareSegment(I.self, FourTuple(local: connection.local, remote: connection.remote),
                                    sequence: ack, acknowledgment: SequenceNumber(0), flags: .rst)
                }
                return counters.drop(.tcpRejected)
            }
            acceptableACK = true
        }
        if segment.hasRST {
            if acceptableACK {
                connection.error = .connectionRefused
                destroy(connection)
            }
            return
        }
        guard segment.hasSYN else { return counters.drop(.tcpRejected) }
        acceptSYN(connection, segment)
        // An ECN-setup SYN-ACK has ECE without CWR (RFC 3168 §6.1.1).
        if acceptableACK && connection.ecnRequested && segment.flags.contains(.ece) && !segment.flags.contains(.cwr) {
            connection.ecnEnabled = true
            counters.count(.tcpECNNegotiated)
        }
        if acceptableACK {
            connection.sendUnacknowledged = segment.acknowledgment
            if connection.retransmissions == 0 {
                connection.rtt.sample(now - connection.lastSent)
            }
            establish(connection, segment: segment)
            connection.acknowledgeNow = true
        } else {
            // Simultaneous open (RFC 9293 §3.5, figure 7): answer with SYN-ACK.
            connection.state = .synReceived
            connection.sendNext = connection.initialSendSequence
        }
    }

    /// The handshake is complete: ESTABLISHED, buffers, and the waiting
    /// application (or listener) is told.
    private func establish<I: IPVersion>(_ connection: TCPConnection<I>, segment: IncomingSegment) {
        let layer = I.layer(of: self)
        let wasHalfOpen = connection.state == .synReceived
        connection.state = .established
        // A SYN's window is never scaled (RFC 7323 §2.2).
        connection.sendWindow = Int(segment.window) << (segment.hasSYN ? 0 : connection.sendWindowShift)
        connection.maximumSendWindow = max(connection.maximumSendWindow, connection.sendWindow)
        connection.sendWindowUpdateSequence = segment.sequence
        connection.sendWindowUpdateAcknowledgment = segment.acknowledgment
        connection.retransmissions = 0
        connection.retransmitDeadline = nil
        connection.unacknowledgedSince = nil
        if connection.sendBuffer.capacity == 0 || connection.receiveBuffer.capacity == 0 {
            let options = connection.parent.flatMap { layer.tcp.listener($0)?.options }
                ?? TCPSocketOptions(configuration.tcp)
            connection.allocateBuffers(send: options.sendBuffer, receive: options.receiveBuffer)
        }
        connection.roundReceiveBufferToSegments(limit: configuration.tcp.maximumBuffer)
        if connection.keepalive { connection.keepaliveDeadline = now + connection.keepaliveTiming.idle }
        if let parent = connection.parent, let listener = layer.tcp.listener(parent) {
            if wasHalfOpen { listener.halfOpen -= 1 }
            counters.count(.tcpConnectionsAccepted)
            listener.acceptQueue.append(connection.id)
            signal(listener.id)
        }
        signal(connection.id)
    }

    // MARK: Synchronized states and SYN-RECEIVED (RFC 9293 §3.10.7.4)

    func segmentArrives<I: IPVersion>(_ connection: TCPConnection<I>, _ segment: IncomingSegment) {
        connection.lastReceived = now
        if connection.keepalive && connection.state == .established {
            connection.keepaliveProbes = 0
            connection.keepaliveDeadline = now + connection.keepaliveTiming.idle
        }
        switch connection.state {
        case .closed, .listen:
            return
        case .synSent:
            return synSentArrives(connection, segment)
        case .synReceived where segment.hasSYN && segment.sequence == connection.initialReceiveSequence:
            if segment.hasACK && acknowledgesOurSYN(connection, segment) {
                // The peer's SYN-ACK in a simultaneous open: its SYN we have.
                connection.sendUnacknowledged = segment.acknowledgment
                establish(connection, segment: segment)
                return
            }
            // A retransmitted SYN: our SYN-ACK was lost.
            connection.sendNext = connection.initialSendSequence
            return
        case .timeWait where !segment.hasACK && !segment.hasRST && !segment.hasSYN
            && sequenceAcceptance(connection, segment) != .unacceptable:
            // An acceptable segment with the ACK bit off is dropped (RFC 9293
            // §3.10.7.4, fifth check), a FIN among them, as FreeBSD does;
            // only an unacceptable one is answered (first check, below).
            return counters.drop(.tcpRejected)
        case .timeWait where segment.hasFIN && !segment.hasRST:
            // A retransmitted FIN: acknowledge it again and restart the 2·MSL wait.
            connection.acknowledgeNow = true
            connection.closeDeadline = now + configuration.tcp.timeWait
            return
        case .timeWait where !segment.hasRST && !segment.hasSYN
            && (segment.sequence != connection.receiveNext || segment.length > 0):
            // Anything else but a bare ACK at RCV.NXT is answered with an ACK
            // and restarts the wait (RFC 9293 §3.10.7.4, TIME-WAIT: "acknowledge
            // it, and restart the 2 MSL timeout"), as Linux's TIME-WAIT does,
            // at most one ACK per 500 ms (its tcp_invalid_ratelimit).
            if now - connection.lastChallenge >= .milliseconds(500) {
                connection.lastChallenge = now
                connection.acknowledgeNow = true
            }
            if segment.hasACK { connection.closeDeadline = now + configuration.tcp.timeWait }
            return
        default:
            break
        }

        // First: PAWS (RFC 7323 §5.3), then the sequence number check.
        if connection.timestampsEnabled, !segment.hasRST, let timestamp = segment.options.timestamp,
           Int32(bitPattern: timestamp.value &- connection.recentTimestamp) < 0,
           now - connection.recentTimestampTime < .seconds(24 * 24 * 3600) {
            connection.acknowledgeNow = true
            if segment.sequence + segment.payload.byteCount - connection.receiveNext <= 0 {
                noteDuplicate(connection, segment.sequence, length: segment.payload.byteCount)
            }
            return counters.drop(.tcpPAWS)
        }
        let acceptance = sequenceAcceptance(connection, segment)
        if acceptance == .unacceptable {
            if !segment.hasRST {
                connection.acknowledgeNow = true
                // Old data sent again (not data past the window): a D-SACK.
                if segment.sequence + segment.payload.byteCount - connection.receiveNext <= 0 {
                    noteDuplicate(connection, segment.sequence, length: segment.payload.byteCount)
                }
            }
            return counters.drop(.tcpOutOfWindow)
        }
        // RFC 7323 §4.3: remember the timestamp of the segment the next ACK is for.
        if connection.timestampsEnabled, let timestamp = segment.options.timestamp,
           Int32(bitPattern: timestamp.value &- connection.recentTimestamp) >= 0,
           connection.lastAcknowledgmentSent - segment.sequence >= 0 {
            connection.recentTimestamp = timestamp.value
            connection.recentTimestampTime = now
        }

        // Second: RST (RFC 5961 §3.2): exactly at RCV.NXT resets, elsewhere in
        // the window earns a challenge ACK (unless RFC 793's rule is asked
        // for: anywhere in the window resets).
        if segment.hasRST {
            guard segment.sequence == connection.receiveNext || !configuration.tcp.challengeResets else {
                return challengeAcknowledgment(connection)
            }
            switch connection.state {
            case .synReceived where connection.parent != nil:
                destroy(connection)
            case .synReceived:
                connection.error = .connectionRefused
                destroy(connection)
            case .established, .finWait1, .finWait2, .closeWait:
                connection.error = .connectionReset
                destroy(connection)
            default:
                destroy(connection)
            }
            return
        }

        // Fourth: SYN in a synchronized state (RFC 5961 §4.2): challenge ACK;
        // by RFC 793's rule (page 71) it is an error that resets.
        if segment.hasSYN {
            guard configuration.tcp.challengeSyns else {
                return abort(connection, sendReset: true, error: .connectionReset)
            }
            return challengeAcknowledgment(connection)
        }

        // Fifth: ACK.
        guard segment.hasACK else { return counters.drop(.tcpRejected) }
        if connection.state == .synReceived {
            guard acknowledgesOurSYN(connection, segment) else {
                sendBareSegment(I.self, FourTuple(local: connection.local, remote: connection.remote),
                                sequence: segment.acknowledgment, acknowledgment: SequenceNumber(0), flags: .rst)
                return counters.drop(.tcpRejected)
            }
            // A full accept queue: ignore the ACK and stay half-open (the
            // SYN-ACK is retransmitted, and a later ACK gets in), as Linux does.
            if let parent = connection.parent, let listener = I.layer(of: self).tcp.listener(parent),
               listener.acceptQueue.count >= listener.backlog {
                reachedLimit(.listenQueue)
                return counters.drop(.tcpListenOverflow)
            }
            connection.sendUnacknowledged = connection.initialSendSequence + 1
            if connection.retransmissions == 0 { connection.rtt.sample(now - connection.lastSent) }
            establish(connection, segment: segment)
        }
        // RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA − MAX.SND.WND, SND.NXT].
        let ack = segment.acknowledgment
        if ack - connection.sendMaximum > 0 {
            connection.acknowledgeNow = true
            return counters.drop(.tcpAcknowledgesUnsent)
        }
        if connection.sendUnacknowledged - ack > max(connection.maximumSendWindow, connection.sendMSS) {
            return challengeAcknowledgment(connection)
        }
        processAcknowledgment(connection, segment)
        if connection.ecnEnabled {
            // RFC 3168 §6.1.3: a CE mark is echoed on every ACK until the
            // peer says it reduced (CWR); a CE with the CWR starts again.
            if segment.flags.contains(.cwr) { connection.ecnEchoPending = false }
            if segment.congestionExperienced {
                connection.ecnEchoPending = true
                connection.acknowledgeNow = true
                counters.count(.tcpCongestionExperienced)
            }
        }
        switch connection.state {
        case .finWait1 where connection.finAcknowledged:
            connection.state = .finWait2
            if connection.isOrphan { connection.closeDeadline = now + configuration.tcp.finWait2Timeout }
            signal(connection.id)
        case .closing where connection.finAcknowledged:
            enterTimeWait(connection)
        case .lastAck where connection.finAcknowledged:
            destroy(connection)
            return
        default:
            break
        }

        // Sixth: the URG bit (RFC 9293 §3.10.7.4).
        if acceptance == .acceptable, segment.flags.contains(.urg), connection.state.canReceive {
            noteUrgent(connection, segment)
        }
        // Seventh: segment text.
        if acceptance == .acceptable, segment.payload.byteCount > 0 {
            if connection.state.canReceive {
                receiveData(connection, segment)
            } else {
                connection.acknowledgeNow = true
            }
        }

        // Eighth: FIN, once everything before it has arrived.
        if acceptance == .acceptable, segment.hasFIN {
            let finSequence = segment.sequence + segment.payload.byteCount
            if finSequence == connection.receiveNext && !connection.finReceived {
                receiveFIN(connection)
            } else {
                connection.acknowledgeNow = true
            }
        }
    }

    private func acknowledgesOurSYN<I: IPVersion>(_ connection: TCPConnection<I>, _ segment: IncomingSegment) -> Bool {
        let ack = segment.acknowledgment
        return ack - connection.initialSendSequence > 0 && connection.sendMaximum - ack >= 0
    }

    enum Acceptance { case acceptable, controlOnly, unacceptable }

    /// RFC 9293 §3.10.7.4's four cases. With a closed window a segment at
    /// RCV.NXT is still read for its ACK and RST ("special allowance").
    private func sequenceAcceptance<I: IPVersion>(_ connection: TCPConnection<I>,
                                                  _ segment: IncomingSegment) -> Acceptance {
        let window = connection.advertisedWindow
        let next = connection.receiveNext
        let sequence = segment.sequence
        let length = segment.length
        if length == 0 {
            if window == 0 { return sequence == next ? .acceptable : .unacceptable }
            return within(sequence, from: next, to: next + window) ? .acceptable : .unacceptable
        }
        if window == 0 { return sequence == next ? .controlOnly : .unacceptable }
        let startsInside = within(sequence, from: next, to: next + window)
        let endsInside = within(sequence + length - 1, from: next, to: next + window)
        return startsInside || endsInside ? .acceptable : .unacceptable
    }

    /// An ACK that tells an off-path attacker nothing it could use (RFC 5961
    /// §3.2 and §7: rate-limited, here to one per 500 ms per connection, as
    /// Linux's tcp_invalid_ratelimit).
    private func challengeAcknowledgment<I: IPVersion>(_ connection: TCPConnection<I>) {
        if now - connection.lastChallenge >= .milliseconds(500) {
            connection.lastChallenge = now
            connection.acknowledgeNow = true
        }
        counters.drop(.tcpChallenged)
    }

    /// RFC 9293 §3.10.7.4 fifth check, with RFC 6298 timing, RFC 5681/6675
    /// loss detection, and RFC 2018 scoreboard updates.
    private func processAcknowledgment<I: IPVersion>(_ connection: TCPConnection<I>, _ segment: IncomingSegment) {
        let ack = segment.acknowledgment
        let acked = ack - connection.sendUnacknowledged
        let blocks = segment.options.sack
        // RFC 2883 §4: a first block below the cumulative ACK, or inside the
        // second, reports a duplicate, not new data.
        let duplicateReport = connection.sackPermitted && !blocks.isEmpty
            && (SequenceNumber(blocks[0].right) - ack <= 0
                || (blocks.count > 1 && SequenceNumber(blocks[0].left) - SequenceNumber(blocks[1].left) >= 0
                    && SequenceNumber(blocks[1].right) - SequenceNumber(blocks[0].right) >= 0))
        var windowChanged = false
        // The window is taken from the newest segment (SND.WL1/WL2 rule).
        if connection.sendWindowUpdateSequence - segment.sequence < 0
            || (connection.sendWindowUpdateSequence == segment.sequence
                && ack - connection.sendWindowUpdateAcknowledgment >= 0) {
            let window = Int(segment.window) << connection.sendWindowShift
            windowChanged = window != connection.sendWindow
            connection.sendWindow = window
            connection.maximumSendWindow = max(connection.maximumSendWindow, window)
            connection.sendWindowUpdateSequence = segment.sequence
            connection.sendWindowUpdateAcknowledgment = ack
            if window > 0 {
                connection.persistDeadline = nil
                connection.persistProbes = 0
            }
        }
        if acked > 0 {
            if connection.timeoutUndo != nil { detectSpuriousTimeout(connection, segment) }
            let sample = takeRTTSample(connection, segment)
            connection.rtt.resetBackoff()
            connection.retransmissions = 0
            connection.keepaliveProbes = 0
            // Drop the acknowledged data (SYN and FIN take sequence space, not buffer).
            let dataAcked = min(max(0, ack - connection.sendBase), connection.sendBuffer.count)
            connection.sendBuffer.removeFirst(dataAcked)
            connection.sendBuffer.releaseIfEmpty()
            connection.sendBase += dataAcked
            connection.sendUnacknowledged = ack
            if connection.sendNext - ack < 0 { connection.sendNext = ack }
            connection.scoreboard.rebase(by: acked)
            if connection.highRetransmitted - ack < 0 { connection.highRetransmitted = ack }
            // An ECN echo (RFC 3168 §6.1.2): the window is reduced once per
            // window of data, and never grows on an ACK that carries one.
            let ecnEcho = connection.ecnEnabled && segment.flags.contains(.ece) && !segment.hasSYN
            if connection.inRecovery {
                if ack - connection.recoveryPoint >= 0 {
                    connection.inRecovery = false
                    connection.congestion.exitRecovery(mss: connection.sendMSS)
                    connection.rack.recoveryEnded()
                    undoNeedlessRecovery(connection)
                } else {
                    // A partial acknowledgment (RFC 6582 §3.2 step 5).
                    connection.retransmitImmediately = true
                }
            } else if ecnEcho {
                if ack - connection.ecnReductionPoint > 0 {
                    connection.congestion.congestionSignalled(flightSize: connection.flightSize + acked,
                                                              mss: connection.sendMSS, now: now)
                    connection.ecnReductionPoint = connection.sendMaximum
                    connection.congestionWindowReducedPending = true
                    counters.count(.tcpECNReductions)
                }
            } else {
                var growth = acked
                if configuration.tcp.hyStart, connection.congestion.slowStartThreshold == .max {
                    switch connection.hyStart.acknowledged(ack, sendNext: connection.sendNext, sample: sample) {
                    case .slowStart:
                        break
                    case .conservative:
                        growth = max(1, min(acked, 2 * connection.sendMSS) / HyStart.growthDivisor)
                    case .endSlowStart:
                        connection.congestion.endSlowStart()
                        counters.count(.tcpHyStartExits)
                    }
                }
                connection.congestion.acknowledged(growth, mss: connection.sendMSS, now: now,
                                                   rtt: connection.rtt.smoothed)
            }
            connection.duplicateAcknowledgments = 0
            if let probe = connection.probeOutstanding, ack - probe >= 0 { connection.probeOutstanding = nil }
            if connection.sendUnacknowledged == connection.sendMaximum {
                connection.retransmitDeadline = nil
                connection.unacknowledgedSince = nil
                connection.probeDeadline = nil
                connection.probeOutstanding = nil
            } else {
                connection.retransmitDeadline = now + connection.rtt.timeout
                connection.unacknowledgedSince = now
                armProbe(connection)
            }
            signal(connection.id)
        } else if acked == 0, connection.flightSize > 0, segment.payload.byteCount == 0,
                  !segment.hasSYN, !segment.hasFIN, !windowChanged || !segment.options.sack.isEmpty,
                  !(duplicateReport && blocks.count == 1) {
            // A duplicate acknowledgment (RFC 5681 §2); one that only reports
            // a duplicate says nothing of loss.
            connection.duplicateAcknowledgments += 1
        }
        if duplicateReport {
            receivedDuplicateReport(connection, SequenceNumber(blocks[0].left), SequenceNumber(blocks[0].right))
        }
        // RFC 6675 Update(): SACK blocks within (SND.UNA, SND.MAX].
        if connection.sackPermitted {
            for index in (duplicateReport ? 1 : 0)..<blocks.count {
                let left = SequenceNumber(blocks[index].left) - connection.sendUnacknowledged
                let right = SequenceNumber(blocks[index].right) - connection.sendUnacknowledged
                let flight = connection.flightSize
                guard right > 0, left < flight, left < right else { continue }
                connection.scoreboard.insert(max(left, 0)..<min(right, flight))
            }
        }
        if connection.inRecovery { detectLostRetransmissions(connection) }
        if connection.sackPermitted && configuration.tcp.rack {
            let echoed = connection.timestampsEnabled ? segment.options.timestamp?.echoReply : nil
            connection.rack.acknowledgment(connection.sendUnacknowledged, blocks: blocks, from: duplicateReport ? 1 : 0,
                                           now: now, echoed: echoed) { connection.timestampValue($0) }
            if duplicateReport {
                connection.rack.duplicateReported(now: now, smoothed: (connection.rtt.smoothed ?? .zero).nanoseconds)
            }
            detectLossByTime(connection)
        }
        startRecoveryIfLost(connection)
    }

    /// RACK's pass over what is in flight (RFC 8985 §6.2 step 5).
    func detectLossByTime<I: IPVersion>(_ connection: TCPConnection<I>) {
        let una = connection.sendUnacknowledged
        let scoreboard = connection.scoreboard
        let sacked = scoreboard.ranges.reduce(0) { $0 + $1.count }
        connection.rack.detectLoss(now: now, smoothed: (connection.rtt.smoothed ?? connection.rtt.timeout).nanoseconds,
                                   inRecovery: connection.inRecovery,
                                   sackedSegments: sacked / max(connection.sendMSS, 1)) { start, end in
            let low = start - una
            let high = end - una
            return scoreboard.ranges.contains { $0.lowerBound <= low && high <= $0.upperBound }
        }
    }

    /// Loss detection: DupThresh duplicate ACKs, or enough SACKed above
    /// SND.UNA, or RACK's time rule: fast recovery begins.
    func startRecoveryIfLost<I: IPVersion>(_ connection: TCPConnection<I>) {
        let rack = connection.sackPermitted && configuration.tcp.rack
        if !connection.inRecovery, connection.state.isSynchronized, connection.flightSize > 0,
           connection.sendUnacknowledged - connection.recoveryPoint >= 0,
           (!rack && connection.duplicateAcknowledgments >= duplicateThreshold(connection)) || lossBoundary(connection) > 0 {
            connection.inRecovery = true
            connection.probeDeadline = nil
            connection.probeOutstanding = nil
            connection.recoveryPoint = connection.sendMaximum
            connection.highRetransmitted = connection.sendUnacknowledged
            connection.recoveryUndo = connection.sackPermitted ? RecoveryUndo(before: connection.congestion) : nil
            connection.congestion.enterRecovery(flightSize: connection.flightSize, mss: connection.sendMSS, now: now)
            counters.count(.tcpFastRecoveries)
            connection.timedSegment = nil
            connection.retransmitImmediately = true
            connection.recoveryRetransmissions.removeAll()
        }
    }

    /// The first ACK of new data after a timeout (RFC 3522 §3.2): if its
    /// timestamp echo is older than the retransmission's TSval, the original
    /// got through and the timeout was spurious. The response (RFC 4015
    /// §3, as Linux's undo): the congestion state from before the timeout,
    /// and sending goes on from SND.MAX instead of going back over what the
    /// peer already has.
    private func detectSpuriousTimeout<I: IPVersion>(_ connection: TCPConnection<I>, _ segment: IncomingSegment) {
        guard let check = connection.timeoutUndo else { return }
        connection.timeoutUndo = nil
        guard let echo = segment.options.timestamp?.echoReply,
              Int32(bitPattern: echo &- check.retransmitTimestamp) < 0 else { return }
        if check.before.window > connection.congestion.window { connection.congestion = check.before }
        if connection.sendMaximum - connection.sendNext > 0 { connection.sendNext = connection.sendMaximum }
        counters.count(.tcpTimeoutsUndone)
    }

    /// A D-SACK arrived (RFC 2883): if it shows a retransmission of the last
    /// fast recovery arrived twice, that one was needless; when all were,
    /// the recovery is undone.
    private func receivedDuplicateReport<I: IPVersion>(_ connection: TCPConnection<I>, _ left: SequenceNumber,
                                                       _ right: SequenceNumber) {
        counters.count(.tcpDSACKReceived)
        guard var undo = connection.recoveryUndo,
              let index = undo.retransmitted.firstIndex(where: { left - $0.start >= 0 && $0.end - right >= 0 })
        else { return }
        undo.retransmitted.remove(at: index)
        undo.duplicated += 1
        connection.recoveryUndo = undo
        if !connection.inRecovery { undoNeedlessRecovery(connection) }
    }

    /// RFC 3708 §3: every retransmission of the recovery was received twice,
    /// so nothing was lost (the segments were reordered): the window cut is
    /// taken back, as Linux's DSACK undo does, unless the window has since
    /// grown past it.
    private func undoNeedlessRecovery<I: IPVersion>(_ connection: TCPConnection<I>) {
        guard let undo = connection.recoveryUndo, undo.isSpurious else { return }
        connection.recoveryUndo = nil
        if undo.before.window > connection.congestion.window { connection.congestion = undo.before }
        counters.count(.tcpRecoveriesUndone)
    }

    /// A retransmission is lost when data sent after it has been SACKed and
    /// it has not: then it may go again (NextSeg sees it as not retransmitted).
    private func detectLostRetransmissions<I: IPVersion>(_ connection: TCPConnection<I>) {
        guard let highestSACKed = connection.scoreboard.last.map({ connection.sendUnacknowledged + $0.upperBound })
        else { return }
        var lostFrom: SequenceNumber?
        connection.recoveryRetransmissions.removeAll { entry in
            if connection.sendUnacknowledged - entry.end >= 0 { return true }   // acknowledged
            guard highestSACKed - entry.mark > 0 else { return false }
            let start = max(0, entry.start - connection.sendUnacknowledged)
            let end = entry.end - connection.sendUnacknowledged
            let delivered = connection.scoreboard.ranges.contains { $0.lowerBound <= start && $0.upperBound >= end }
            if !delivered {
                lostFrom = lostFrom.map { min($0, entry.start) } ?? entry.start
            }
            return true
        }
        if let start = lostFrom, connection.highRetransmitted - start > 0 {
            connection.highRetransmitted = max(start, connection.sendUnacknowledged)
            connection.retransmitImmediately = true
        }
    }

    /// RTT from the echoed timestamp (RFC 7323 §4), or from the one segment
    /// timed when timestamps are off (Karn: never a retransmitted one).
    private func takeRTTSample<I: IPVersion>(_ connection: TCPConnection<I>,
                                             _ segment: IncomingSegment) -> Duration? {
        if connection.timestampsEnabled, let timestamp = segment.options.timestamp, timestamp.echoReply != 0 {
            let elapsed = Int32(bitPattern: connection.timestampValue(now) &- timestamp.echoReply)
            guard elapsed >= 0 else { return nil }
            let sample = Duration.milliseconds(Int(elapsed))
            connection.rtt.sample(sample)
            return sample
        } else if let timed = connection.timedSegment, segment.acknowledgment - timed.end >= 0 {
            let sample = now - timed.sent
            connection.rtt.sample(sample)
            connection.timedSegment = nil
            return sample
        }
        return nil
    }

    /// RFC 9293 §3.8.5 with RFC 6093's reading: the pointer names the byte
    /// after the urgent data, so the last urgent byte is one before it (what
    /// Linux does with tcp_stdurg off). The mark moves only forward, never to
    /// bytes already received, and the data stays in the stream (RFC 6093
    /// §5: inline, as SO_OOBINLINE); the application is told (an event) and
    /// may ask where the mark is (`tcpUrgentMark`).
    private func noteUrgent<I: IPVersion>(_ connection: TCPConnection<I>, _ segment: IncomingSegment) {
        guard segment.urgentPointer > 0 else { return }
        let urgent = segment.sequence + Int(segment.urgentPointer) - 1
        guard urgent - connection.receiveNext >= 0 else { return }
        if let known = connection.receiveUrgent, urgent - known <= 0 { return }
        connection.receiveUrgent = urgent
        counters.count(.tcpUrgentReceived)
        signal(connection.id)
    }

    /// Data that arrived before (below RCV.NXT, or inside what is held out of
    /// order): the next ACK reports it in a D-SACK block (RFC 2883 §4), so
    /// that the sender can tell a needless retransmission.
    private func noteDuplicate<I: IPVersion>(_ connection: TCPConnection<I>, _ start: SequenceNumber, length: Int) {
        guard connection.sackPermitted, length > 0 else { return }
        connection.duplicateReport = (start, start + length)
    }

    /// Data of an acceptable segment (RFC 9293 §3.10.7.4 seventh check):
    /// trimmed to the window; in order it becomes readable (with any
    /// out-of-order data it now joins), out of order it is kept at its offset.
    private func receiveData<I: IPVersion>(_ connection: TCPConnection<I>, _ segment: IncomingSegment) {
        var sequence = segment.sequence
        var payload = segment.payload
        let early = connection.receiveNext - sequence
        if early > 0 {
            noteDuplicate(connection, sequence, length: min(early, payload.byteCount))
            guard early < payload.byteCount else {
                connection.acknowledgeNow = true
                return
            }
            payload = payload.extracting(early...)
            sequence = connection.receiveNext
        }
        if connection.readShutdown {
            // Shut down for reading: acknowledge and drop, so the window stays open.
            if sequence == connection.receiveNext { connection.receiveNext += payload.byteCount }
            connection.acknowledgeNow = true
            return
        }
        let offset = sequence - connection.receiveNext
        // What fits the ring (the window, rounded up to the scale, fits it).
        let length = min(payload.byteCount, connection.receiveBuffer.capacity - connection.receiveBuffer.count - offset)
        guard length > 0 else {
            connection.acknowledgeNow = true
            return counters.drop(.tcpReceiveBufferFull)
        }
        let written = payload.extracting(0..<length).withUnsafeBytes { bytes in
            connection.receiveBuffer.write(bytes, at: connection.receiveBuffer.count + offset)
        }
        noteSocketMemory()
        if written < length {
            // The socket memory refused the ring's growth: what did not fit
            // is dropped, and the peer sends it again.
            counters.drop(.tcpBufferMemory)
            guard written > 0 else {
                connection.acknowledgeNow = true
                return
            }
        }
        // Bytes this segment repeats of data held out of order are a
        // duplicate, reported in a D-SACK block (RFC 2883 §4), as Linux does;
        // one block per segment, the first repeated bytes (those below
        // RCV.NXT, when some were).
        let arrived = offset..<(offset + written)
        let repeated = connection.outOfOrder.ranges.first { $0.overlaps(arrived) }?.clamped(to: arrived)
        if let repeated, early <= 0 {
            noteDuplicate(connection, connection.receiveNext + repeated.lowerBound, length: repeated.count)
        }
        if offset == 0 {
            let hadHoles = !connection.outOfOrder.isEmpty
            advanceReceive(connection, by: written)
            if hadHoles {
                // Filling a hole: acknowledge at once (RFC 5681 §4.2).
                connection.acknowledgeNow = true
            } else if connection.quickAcknowledgments > 0 && written >= connection.sendMSS {
                // Full-sized segments early on: a sender in slow start,
                // which each ACK lets send more (Linux's quick-ACK mode).
                // A smaller one is more likely a request, whose answer will
                // carry the ACK: it waits as delayed ACKs do (RFC 1122
                // §4.2.3.2), as FreeBSD delays from the first segment.
                connection.quickAcknowledgments -= 1
                acknowledgeAtFlush(connection)
            } else {
                // Delayed ACK: at least every second full-sized segment
                // (RFC 5681 §4.2), counted in bytes as Linux does. Segments
                // that arrived together are one: their ACK leaves with the
                // rest of what the stack sends after them, and ACKs of
                // every second one would leave back to back with it.
                connection.segmentsSinceAcknowledgment += written
                if connection.segmentsSinceAcknowledgment >= 2 * connection.sendMSS {
                    acknowledgeAtFlush(connection)
                } else if connection.delayedAckDeadline == nil {
                    connection.delayedAckDeadline = now + configuration.tcp.delayedAckTimeout
                }
            }
            signal(connection.id)
        } else {
            if repeated == arrived || connection.outOfOrder.insert(arrived) {
                // Its block (the one it repeats, or the one it joined) is now
                // the one last received.
                connection.noteOutOfOrderArrival(sequence)
            }
            // Out of order: a duplicate ACK at once (RFC 5681 §4.2), with SACK.
            connection.acknowledgeNow = true
        }
    }

    private func acknowledgeAtFlush<I: IPVersion>(_ connection: TCPConnection<I>) {
        guard !connection.acknowledgeAtFlush else { return }
        connection.acknowledgeAtFlush = true
        I.layer(of: self).tcp.acknowledgeAtFlush.append(connection.id)
    }

    /// `count` more bytes are in order: make them readable and pull in the
    /// out-of-order data that now follows.
    private func advanceReceive<I: IPVersion>(_ connection: TCPConnection<I>, by count: Int) {
        var advance = count
        while advance > 0 {
            connection.receiveBuffer.extend(by: advance)
            connection.receiveNext += advance
            connection.outOfOrder.rebase(by: advance)
            advance = connection.outOfOrder.removeLeading()?.count ?? 0
        }
        if connection.outOfOrder.isEmpty { connection.recentOutOfOrder.removeAll(keepingCapacity: true) }
    }

    /// The peer's FIN (RFC 9293 §3.10.7.4 eighth check).
    private func receiveFIN<I: IPVersion>(_ connection: TCPConnection<I>) {
        connection.receiveNext += 1
        // The FIN takes sequence space, not buffer: the offered edge moves
        // with it, so the window it is acknowledged with is the one offered
        // before (as Linux and FreeBSD answer), not one byte smaller.
        if connection.receiveAdvertisedEdge - connection.receiveNext >= 0 { connection.receiveAdvertisedEdge += 1 }
        connection.finReceived = true
        switch connection.state {
        case .synReceived, .established:
            connection.state = .closeWait
            // The ACK waits a moment (RFC 9293 §3.8.6.3 lets ACKs wait): an
            // application that closes when it reads the end of stream, in
            // the same round of work, sends its FIN with it, one segment
            // instead of two, as Linux's echo does in the fixtures. Otherwise
            // it leaves at the next turn of the engine, within a millisecond.
            let soon = now + .microseconds(1)
            if connection.delayedAckDeadline.map({ $0 > soon }) ?? true { connection.delayedAckDeadline = soon }
        case .finWait1:
            connection.acknowledgeNow = true
            if connection.finAcknowledged {
                enterTimeWait(connection)
            } else {
                connection.state = .closing
            }
        case .finWait2:
            connection.acknowledgeNow = true
            enterTimeWait(connection)
        default:
            connection.acknowledgeNow = true
        }
        signal(connection.id)
    }

    func enterTimeWait<I: IPVersion>(_ connection: TCPConnection<I>) {
        let layer = I.layer(of: self)
        connection.state = .timeWait
        connection.retransmitDeadline = nil
        connection.persistDeadline = nil
        connection.keepaliveDeadline = nil
        connection.delayedAckDeadline = nil
        connection.closeDeadline = now + configuration.tcp.timeWait
        layer.tcp.retire(connection)
        layer.tcp.timeWaitCount += 1
        signal(connection.id)
        if layer.tcp.timeWaitCount > configuration.tcp.timeWaitLimit {
            // Too many: let this one go at once (Linux does the same past tcp_max_tw_buckets).
            connection.acknowledgeNow = false
            tcpOutputFinalAcknowledgment(connection)
            destroy(connection)
        }
    }

    /// Sends the last ACK of a connection that skips TIME-WAIT.
    private func tcpOutputFinalAcknowledgment<I: IPVersion>(_ connection: TCPConnection<I>) {
        sendSegment(connection, flags: .ack, sequence: connection.sendNext, payload: 0..<0)
    }

    // MARK: SYN cookies (RFC 4987 §3.6)

    /// MSS values a cookie can carry (3 bits).
    private static let cookieMSS: [Int] = [216, 536, 1220, 1280, 1400, 1440, 1460, 8960]

    /// The cookie: 5 bits of a 64-second counter, 3 bits of MSS, then two
    /// 12-bit keyed hashes: one over the endpoints and the counter, one that
    /// adds the peer's initial sequence number. Accepting needs all 24 bits
    /// (as strong as one 24-bit hash); the first half alone tells a segment
    /// of a handshake we answered, sent after data that was lost, from a
    /// stray one (see `acceptCookie`).
    private func cookie<I: IPVersion>(_ tuple: FourTuple<I>, peerSequence: SequenceNumber, counter: UInt32,
                                      mssIndex: Int) -> UInt32 {
        var endpoints = SipHash(key: (tcpSecret.0 ^ 0x5c5c_5c5c, tcpSecret.1))
        hashEndpoints(&endpoints, tuple.local, tuple.remote)
        endpoints.add(counter)
        var sequence = endpoints
        sequence.add(peerSequence.rawValue)
        let high = UInt32(truncatingIfNeeded: endpoints.finalize()) & 0xfff
        let low = UInt32(truncatingIfNeeded: sequence.finalize()) & 0xfff
        return (counter & 0x1f) << 27 | UInt32(mssIndex) << 24 | high << 12 | low
    }

    private var cookieCounter: UInt32 { UInt32(truncatingIfNeeded: now.nanoseconds / 64_000_000_000) }

    /// A SYN-ACK whose sequence number is the cookie; nothing is kept. With
    /// timestamps, the window scale and SACK-permitted ride in TSval's low
    /// bits (as Linux does), so the ACK brings them back.
    private func sendCookie<I: IPVersion>(_ listener: TCPListener<I>, _ segment: IncomingSegment,
                                          _ tuple: FourTuple<I>) {
        let peerMSS = Int(segment.options.maximumSegmentSize ?? 536)
        let index = Self.cookieMSS.lastIndex { $0 <= peerMSS } ?? 0
        let isn = cookie(tuple, peerSequence: segment.sequence, counter: cookieCounter, mssIndex: index)
        let connection = makeConnection(I.self, id: SocketID(rawValue: 0), state: .synReceived, local: tuple.local,
                                        remote: tuple.remote, options: listener.options,
                                        initialSequence: SequenceNumber(isn))
        acceptSYN(connection, segment)
        // Bits 0–3: the peer's window shift (15: no scaling); bit 4: SACK permitted.
        let shiftBits = connection.receiveWindowShift == 0 ? 15 : UInt32(connection.sendWindowShift)
        connection.cookieOptions = connection.timestampsEnabled ? shiftBits | (connection.sackPermitted ? 0x10 : 0) : nil
        sendSegment(connection, flags: [.syn, .ack], sequence: connection.initialSendSequence, payload: 0..<0)
    }

    private enum CookieCheck<I: IPVersion> {
        case accepted(TCPConnection<I>)
        /// The endpoints' half matches, the sequence half does not: the
        /// segment's sequence number is past the peer's first byte.
        case ahead
        case notOurs
    }

    /// Checks the ACK of a cookie SYN-ACK and, if it is one of ours from the
    /// last two minutes, makes the connection ESTABLISHED.
    private func acceptCookie<I: IPVersion>(_ listener: TCPListener<I>, _ segment: IncomingSegment,
                                            _ tuple: FourTuple<I>) -> CookieCheck<I> {
        guard listener.acceptQueue.count < listener.backlog else { return .notOurs }
        let isn = (segment.acknowledgment - 1).rawValue
        let peerSequence = segment.sequence - 1
        let counter = isn >> 27
        let index = Int(isn >> 24 & 0x7)
        let current = cookieCounter
        let candidate: UInt32
        if current & 0x1f == counter {
            candidate = current
        } else if (current &- 1) & 0x1f == counter {
            candidate = current &- 1
        } else {
            return .notOurs
        }
        let expected = cookie(tuple, peerSequence: peerSequence, counter: candidate, mssIndex: index)
        guard expected == isn else {
            return expected >> 12 == isn >> 12 && (segment.length > 0) ? .ahead : .notOurs
        }
        let layer = I.layer(of: self)
        let connection = makeConnection(I.self, id: makeSocketID(), state: .synReceived, local: tuple.local,
                                        remote: tuple.remote, options: listener.options,
                                        initialSequence: SequenceNumber(isn))
        connection.parent = listener.id
        connection.initialReceiveSequence = peerSequence
        connection.receiveNext = segment.sequence
        connection.lastAcknowledgmentSent = segment.sequence
        connection.sendNext = segment.acknowledgment
        connection.sendMaximum = segment.acknowledgment
        connection.sendUnacknowledged = segment.acknowledgment
        if let timestamp = segment.options.timestamp, connection.timestampsEnabled {
            let bits = timestamp.echoReply & 0x1f
            let shift = UInt8(bits & 0xf)
            connection.sendWindowShift = shift == 15 ? 0 : shift
            if shift == 15 { connection.receiveWindowShift = 0 }
            connection.sackPermitted = connection.sackPermitted && bits & 0x10 != 0
            connection.recentTimestamp = timestamp.value
            connection.recentTimestampTime = now
        } else {
            // Without timestamps the cookie carries no options.
            connection.timestampsEnabled = false
            connection.sendWindowShift = 0
            connection.receiveWindowShift = 0
            connection.sackPermitted = false
        }
        setSendMSS(connection, peerMSS: Self.cookieMSS[index])
        connection.receiveAdvertisedEdge = segment.sequence + min(listener.options.receiveBuffer, 65_535)
        layer.tcp.entries[connection.id] = .connection(connection)
        layer.tcp.insert(connection)
        // Not counted as half-open: it completes right now.
        listener.halfOpen += 1
        return .accepted(connection)
    }
}
