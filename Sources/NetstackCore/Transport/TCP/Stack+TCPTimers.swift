import NetstackWire

extension Stack {
    /// Runs the TCP timers of one version that are due: each connection's
    /// entry in the heap is checked against its current deadline (stale
    /// entries are skipped), and the connection's timers run.
    func pollTCP<I: IPVersion>(_ version: I.Type) {
        let layer = I.layer(of: self)
        while let entry = layer.tcp.timers.min, entry.deadline <= now {
            _ = layer.tcp.timers.popMin()
            guard let connection = layer.tcp.connection(entry.socket),
                  connection.scheduledDeadline == entry.deadline else { continue }
            connection.scheduledDeadline = nil
            runTimers(connection)
            if connection.state != .closed {
                tcpOutput(connection)
                schedule(connection)
            }
        }
    }

    private func runTimers<I: IPVersion>(_ connection: TCPConnection<I>) {
        if let deadline = connection.closeDeadline, deadline <= now {
            // The end of TIME-WAIT, or of an orphan's wait in FIN-WAIT-2.
            destroy(connection)
            return
        }
        if let deadline = connection.retransmitDeadline, deadline <= now {
            retransmissionTimeout(connection)
            if connection.state == .closed { return }
        }
        if let deadline = connection.rack.deadline, deadline <= now {
            // The reordering timer (RFC 8985 §6.3): what was waiting for
            // the window may be overdue now.
            detectLossByTime(connection)
            startRecoveryIfLost(connection)
        }
        if let deadline = connection.probeDeadline, deadline <= now {
            sendProbe(connection)
        }
        if let deadline = connection.persistDeadline, deadline <= now {
            windowProbe(connection)
        }
        if let deadline = connection.delayedAckDeadline, deadline <= now {
            connection.delayedAckDeadline = nil
            connection.acknowledgeNow = true
        }
        if let deadline = connection.keepaliveDeadline, deadline <= now {
            keepaliveProbe(connection)
        }
    }

    /// RFC 6298 §5.4–§5.7: back off, collapse the congestion window, and go
    /// back to the first unacknowledged byte (skipping what the peer SACKed).
    /// Too many retransmissions, or the user timeout, end the connection.
    private func retransmissionTimeout<I: IPVersion>(_ connection: TCPConnection<I>) {
        connection.retransmitDeadline = nil
        let settings = configuration.tcp
        let limit = switch connection.state {
        case .synSent: settings.synRetries
        case .synReceived: settings.synAckRetries
        default: settings.maximumRetransmissions
        }
        if let timeout = connection.userTimeout, let since = connection.unacknowledgedSince, now - since >= timeout {
            return abort(connection, sendReset: connection.state.isSynchronized, error: .timedOut)
        }
        guard connection.retransmissions < limit else {
            if connection.state == .synReceived && connection.parent != nil { return destroy(connection) }
            return abort(connection, sendReset: connection.state.isSynchronized,
                         error: connection.softError ?? .timedOut)
        }
        connection.retransmissions += 1
        // A probe that sent old data again was this episode's first
        // retransmission: the Eifel check below compares with it.
        let firstRetransmission = connection.probeOutstanding != nil ? connection.probeRetransmitTimestamp : nil
        connection.probeDeadline = nil
        connection.probeOutstanding = nil
        counters.count(.tcpTimeouts)
        connection.rtt.backOff()
        connection.timedSegment = nil
        if connection.state.isSynchronized {
            // Eifel (RFC 3522 §3.2 step 1): only the first timeout of an
            // episode can be told spurious; the retransmission leaves now.
            connection.timeoutUndo = connection.timestampsEnabled && connection.retransmissions == 1
                ? (connection.congestion, firstRetransmission ?? connection.timestampValue(now)) : nil
            connection.congestion.timedOut(flightSize: connection.flightSize, mss: connection.sendMSS, now: now)
            // A timeout is no reordering: the last recovery stays done.
            connection.recoveryUndo = nil
            connection.rack.forgetLosses()
            connection.inRecovery = false
            connection.duplicateAcknowledgments = 0
            connection.recoveryPoint = connection.sendMaximum
            connection.highRetransmitted = connection.sendUnacknowledged
        }
        connection.sendNext = connection.sendUnacknowledged
        connection.retransmitDeadline = now + connection.rtt.timeout
    }

    /// Data waits and nothing is in flight. A window open but smaller than a
    /// segment gets what fits. A closed one is asked for with a segment just
    /// below it (the peer answers with an ACK), backing off each time; the
    /// connection never gives up on a peer that answers (RFC 1122 §4.2.2.17).
    private func windowProbe<I: IPVersion>(_ connection: TCPConnection<I>) {
        connection.persistDeadline = nil
        guard connection.sendBufferEnd - connection.sendNext > 0, connection.flightSize == 0 else {
            connection.persistProbes = 0
            return
        }
        guard connection.sendWindow == 0 else {
            connection.persistProbes = 0
            connection.sendWhatFits = true
            return
        }
        sendSegment(connection, flags: .ack, sequence: connection.sendUnacknowledged - 1, payload: 0..<0)
        connection.persistProbes += 1
        let backoff = connection.rtt.timeout * (1 << min(connection.persistProbes, 10))
        connection.persistDeadline = now + min(backoff, configuration.tcp.maximumRTO)
    }

    /// RFC 9293 §3.8.4 / RFC 1122 §4.2.3.6: after the idle time, probes with a
    /// sequence number the peer must acknowledge; too many unanswered end the
    /// connection.
    private func keepaliveProbe<I: IPVersion>(_ connection: TCPConnection<I>) {
        let timing = connection.keepaliveTiming
        guard connection.keepalive, connection.state == .established else {
            connection.keepaliveDeadline = nil
            return
        }
        if now - connection.lastReceived < timing.idle && connection.keepaliveProbes == 0 {
            connection.keepaliveDeadline = connection.lastReceived + timing.idle
            return
        }
        guard connection.keepaliveProbes < timing.probes else {
            return abort(connection, sendReset: true, error: .timedOut)
        }
        sendSegment(connection, flags: .ack, sequence: connection.sendUnacknowledged - 1, payload: 0..<0)
        connection.keepaliveProbes += 1
        connection.keepaliveDeadline = now + timing.interval
    }

    /// An ICMP error about one of our segments (RFC 5927, RFC 1122 §4.2.3.9):
    /// packet too big lowers the MSS and resends; any other error ends a
    /// connection still opening, as in Linux (RFC 5461 §4 discusses aborting
    /// connection attempts on soft errors); later they are soft.
    func deliverTCPError<I: IPVersion>(_ version: I.Type, _ error: ICMPError, local: Endpoint<I>,
                                       remote: Endpoint<I>, sequence: SequenceNumber) {
        guard let connection = I.layer(of: self).tcp.connections[FourTuple(local: local, remote: remote)],
              connection.state != .closed else { return }
        // The quoted sequence number must be one in flight (RFC 5927 §4.1:
        // SND.UNA ≤ SEG.SEQ < SND.NXT; SND.MAX, since a timeout rewinds SND.NXT).
        guard sequence - connection.sendUnacknowledged >= 0, connection.sendMaximum - sequence > 0 else { return }
        switch error {
        case .packetTooBig(let reported):
            // RFC 1191 §6.2 / RFC 8201 §5.2: the path takes smaller packets;
            // never below the version's floor, never raised by a message.
            lowerPathMTU(I.self, to: remote.address, reported: reported)
            let before = connection.sendMSS
            updateSendMSS(connection)
            guard connection.sendMSS < before else { return }
            // What is in flight was too big: send it again at the new size
            // (RFC 1191 §6.5). Not a congestion signal, so the window stays.
            connection.sendNext = connection.sendUnacknowledged
            tcpOutput(connection)
            schedule(connection)
        case _ where connection.state == .synSent:
            // A connect fails at once ("no route to host", "connection
            // refused") rather than after its SYN retries.
            abort(connection, sendReset: false, error: error.socketError)
        default:
            connection.softError = error.socketError
        }
    }
}
