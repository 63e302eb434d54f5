import NetstackWire

/// The socket interface of TCP, called by the bindings on the engine thread.
extension Stack {
    /// Creates a socket that is neither bound nor connected.
    public func tcpOpen<I: IPVersion>(_ version: I.Type) -> SocketID {
        let id = makeSocketID()
        I.layer(of: self).tcp.entries[id] = .open(TCPOpenSocket(options: TCPSocketOptions(configuration.tcp)))
        return id
    }

    /// Binds to one of our addresses (or the wildcard) and a port (0: ephemeral).
    public func tcpBind<I: IPVersion>(_ version: I.Type, _ id: SocketID, to local: Endpoint<I>) throws(SocketError) {
        let layer = I.layer(of: self)
        guard case .open(let socket)? = layer.tcp.entries[id] else {
            throw layer.tcp.entries[id] == nil ? .closed : .invalidArgument("already bound")
        }
        guard socket.local == nil else { throw .invalidArgument("already bound") }
        guard local.address.isUnspecified || layer.state(of: local.address) != nil else { throw .addressNotAvailable }
        var endpoint = local
        if endpoint.port == 0 {
            guard let port = ephemeralPort({ !layer.tcp.conflicts(Endpoint(local.address, $0)) }) else {
                throw .addressInUse
            }
            endpoint.port = port
        } else if layer.tcp.conflicts(endpoint) {
            throw .addressInUse
        }
        socket.local = endpoint
        layer.tcp.hold(endpoint.port, by: id)
    }

    /// Starts listening (binding to an ephemeral port first if unbound).
    /// The backlog is clamped to 1...maximumBacklog.
    public func tcpListen<I: IPVersion>(_ version: I.Type, _ id: SocketID, backlog: Int) throws(SocketError) {
        let layer = I.layer(of: self)
        if case .listener(let listener)? = layer.tcp.entries[id] {
            listener.backlog = min(max(backlog, 1), configuration.tcp.maximumBacklog)
            return
        }
        guard case .open(let socket)? = layer.tcp.entries[id] else {
            throw layer.tcp.entries[id] == nil ? .closed : .invalidArgument("connected")
        }
        if socket.local == nil { try tcpBind(I.self, id, to: .any()) }
        guard let local = socket.local else { throw .closed }
        let listener = TCPListener<I>(id: id, local: local, backlog: min(max(backlog, 1), configuration.tcp.maximumBacklog),
                                      options: socket.options)
        layer.tcp.entries[id] = .listener(listener)
        layer.tcp.listeners[local.port, default: []].append(listener)
    }

    /// The next established connection of a listener, now a socket of its
    /// own; nil when none is waiting.
    public func tcpAccept<I: IPVersion>(_ version: I.Type, _ id: SocketID) throws(SocketError) -> SocketID? {
        let layer = I.layer(of: self)
        guard let listener = layer.tcp.listener(id) else {
            throw layer.tcp.entries[id] == nil ? .closed : .invalidArgument("not listening")
        }
        while let child = listener.acceptQueue.popFirst() {
            guard let connection = layer.tcp.connection(child) else { continue }
            connection.parent = nil
            return child
        }
        return nil
    }

    /// Starts an active open (RFC 9293 §3.10.1): SYN-SENT, first SYN queued.
    public func tcpConnect<I: IPVersion>(_ version: I.Type, _ id: SocketID, to remote: Endpoint<I>) throws(SocketError) {
        let layer = I.layer(of: self)
        guard case .open(let socket)? = layer.tcp.entries[id] else {
            if layer.tcp.entries[id] == nil { throw .closed }
            throw layer.tcp.listener(id) != nil ? .invalidArgument("listening") : .alreadyConnected
        }
        guard remote.port != 0, !remote.address.isUnspecified, !remote.address.isMulticast,
              !I.isBroadcast(remote.address, in: layer) else { throw .invalidArgument("bad peer address") }
        guard route(I.self, to: remote.address) != nil,
              let source = socket.local.flatMap({ $0.address.isUnspecified ? nil : $0.address })
                ?? sourceAddress(I.self, for: remote.address) else { throw .networkUnreachable }
        var local: Endpoint<I>
        if let bound = socket.local {
            local = Endpoint(source, bound.port)
            guard layer.tcp.connections[FourTuple(local: local, remote: remote)] == nil else { throw .addressInUse }
        } else {
            guard let port = ephemeralPort({ port in
                !layer.tcp.conflicts(Endpoint(source, port))
                    && layer.tcp.connections[FourTuple(local: Endpoint(source, port), remote: remote)] == nil
            }) else { throw .addressNotAvailable }
            local = Endpoint(source, port)
            layer.tcp.hold(port, by: id)
        }
        guard layer.tcp.admits(remote.address, configuration.tcp) else {
            if socket.local == nil { layer.tcp.release(local.port, by: id) }
            counters.drop(.tcpConnectionLimit)
            reachedLimit(.tcpConnections)
            throw .noBufferSpace
        }
        let connection = makeConnection(I.self, id: id, state: .synSent, local: local, remote: remote,
                                        options: socket.options)
        connection.ecnRequested = configuration.tcp.ecn == .active
        connection.allocateBuffers(send: socket.options.sendBuffer, receive: socket.options.receiveBuffer)
        layer.tcp.entries[id] = .connection(connection)
        layer.tcp.insert(connection)
        counters.count(.tcpConnectionsOpened)
        tcpOutput(connection)
        schedule(connection)
    }

    /// Where a connect stands.
    public func tcpConnectStatus<I: IPVersion>(_ version: I.Type, _ id: SocketID) -> TCPConnectStatus {
        guard let connection = I.layer(of: self).tcp.connection(id) else { return .failed(.closed) }
        if let error = connection.error { return .failed(error) }
        switch connection.state {
        case .synSent, .synReceived: return .inProgress
        case .closed: return .failed(connection.softError ?? .connectionAborted)
        default: return .established
        }
    }

    /// Queues up to `bytes.count` bytes for sending; returns how many fit
    /// (0 when the buffer is full: wait for an event).
    /// With `urgent` (MSG_OOB) the last byte queued is urgent data: the
    /// segments up to it carry URG and a pointer to the byte after it (RFC
    /// 9293 §3.8.5, RFC 6093 §4).
    public func tcpSend<I: IPVersion>(_ version: I.Type, _ id: SocketID, _ bytes: RawSpan,
                                      urgent: Bool = false) throws(SocketError) -> Int {
        try bytes.withUnsafeBytes { source throws(SocketError) in
            var offset = 0
            return try tcpSend(I.self, id, maximum: source.count, urgent: urgent) { space in
                let count = min(space.count, source.count - offset)
                space.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: count)
                offset += count
                return count
            }
        }
    }

    /// Queues bytes that `produce` writes straight into the send buffer: it
    /// is given free space (in at most a few pieces, `maximum` bytes in all)
    /// and returns how many bytes it wrote there; fewer than offered ends the
    /// call. The way a driver moves bytes from a descriptor into the stack
    /// with no copy of its own. Returns the bytes queued (0 when the buffer
    /// is full: wait for an event).
    public func tcpSend<I: IPVersion>(_ version: I.Type, _ id: SocketID, maximum: Int, urgent: Bool = false,
                                      producing produce: (UnsafeMutableRawBufferPointer) -> Int) throws(SocketError) -> Int {
        guard let connection = I.layer(of: self).tcp.connection(id) else {
            throw I.layer(of: self).tcp.entries[id] == nil ? .closed : .notConnected
        }
        if let error = connection.error { throw error }
        switch connection.state {
        case .synSent, .synReceived:
            return 0
        case .established, .closeWait:
            guard !connection.finQueued else { throw .shutDown }
        default:
            throw .shutDown
        }
        let accepted = connection.sendBuffer.append(maximum: maximum, produce)
        noteSocketMemory()
        if urgent && accepted > 0 { connection.sendUrgent = connection.sendBufferEnd }
        if accepted > 0 {
            tcpOutput(connection)
            schedule(connection)
        }
        return accepted
    }

    /// Copies received bytes into `buffer`: the count, 0 at the end of the
    /// stream, nil when nothing is there yet.
    public func tcpReceive<I: IPVersion>(_ version: I.Type, _ id: SocketID,
                                         into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> Int? {
        var written = 0
        return try tcpReceive(I.self, id) { piece in
            let count = min(piece.count, buffer.count - written)
            (buffer.baseAddress! + written).copyMemory(from: piece.baseAddress!, byteCount: count)
            written += count
            return count
        }
    }

    /// Hands received bytes to `consume` where they lie (in at most two
    /// pieces), which returns how many it took; fewer than offered ends the
    /// call. The way a driver writes them to a descriptor with no copy of its
    /// own. Returns the bytes taken, 0 at the end of the stream, nil when
    /// nothing is there yet.
    public func tcpReceive<I: IPVersion>(_ version: I.Type, _ id: SocketID,
                                         consuming consume: (UnsafeRawBufferPointer) -> Int) throws(SocketError) -> Int? {
        guard let connection = I.layer(of: self).tcp.connection(id) else {
            throw I.layer(of: self).tcp.entries[id] == nil ? .closed : .notConnected
        }
        if connection.readable == 0 {
            if let error = connection.error { throw error }
            if connection.finReceived || connection.readShutdown || connection.state == .closed { return 0 }
            return nil
        }
        let count: Int
        if let mark = connection.receiveUrgent {
            // A read stops before the urgent byte, so that the application
            // can tell it is at the mark (SIOCATMARK), as BSD and Linux do.
            let readStart = connection.receiveNext - connection.readable
            var limit = mark - readStart > 0 ? mark - readStart : Int.max
            count = connection.receiveBuffer.removeFirst { piece in
                let taken = consume(UnsafeRawBufferPointer(rebasing: piece.prefix(limit)))
                limit -= taken
                return taken
            }
            if (readStart + count) - mark > 0 { connection.receiveUrgent = nil }
        } else {
            count = connection.receiveBuffer.removeFirst(consuming: consume)
        }
        if connection.outOfOrder.isEmpty { connection.receiveBuffer.releaseIfEmpty() }
        // The window may have reopened: say so at once (not after a timeout).
        if connection.windowUpdateIsDue && connection.state.isSynchronized {
            connection.windowUpdateOwed = true
            tcpOutput(connection)
            schedule(connection)
        }
        return count
    }

    /// Unread bytes before the urgent mark (0: the next byte read is the
    /// urgent one, SIOCATMARK), or nil when no urgent data is pending.
    public func tcpUrgentMark<I: IPVersion>(_ version: I.Type, _ id: SocketID) -> Int? {
        guard let connection = I.layer(of: self).tcp.connection(id), let mark = connection.receiveUrgent else {
            return nil
        }
        return mark - (connection.receiveNext - connection.readable)
    }

    /// Whether a send would take bytes now (or fail at once).
    public func tcpIsWritable<I: IPVersion>(_ version: I.Type, _ id: SocketID) -> Bool {
        guard let connection = I.layer(of: self).tcp.connection(id) else { return true }
        if connection.error != nil || connection.finQueued { return true }
        switch connection.state {
        case .synSent, .synReceived: return false
        case .established, .closeWait: return connection.sendBuffer.room > 0
        default: return true
        }
    }

    /// Bytes waiting to be read.
    public func tcpReadable<I: IPVersion>(_ version: I.Type, _ id: SocketID) -> Int {
        I.layer(of: self).tcp.connection(id)?.readable ?? 0
    }

    /// Shuts down reading (later data is acknowledged and dropped) and/or
    /// writing (a FIN follows the queued data).
    public func tcpShutdown<I: IPVersion>(_ version: I.Type, _ id: SocketID, read: Bool,
                                          write: Bool) throws(SocketError) {
        guard let connection = I.layer(of: self).tcp.connection(id) else {
            throw I.layer(of: self).tcp.entries[id] == nil ? .closed : .notConnected
        }
        if read {
            connection.readShutdown = true
            connection.receiveBuffer.removeFirst(connection.receiveBuffer.count)
        }
        if write && !connection.finQueued {
            switch connection.state {
            case .synSent:
                // Nothing was sent; the FIN goes after the handshake.
                connection.finQueued = true
            case .synReceived, .established, .closeWait:
                connection.finQueued = true
            default:
                break
            }
        }
        tcpOutput(connection)
        schedule(connection)
        signal(id)
    }

    /// The application is done with the socket. A connection closes
    /// gracefully (FIN), or is reset when received data went unread (RFC 2525
    /// §2.17); the stack finishes the connection alone. Listeners reset the
    /// connections nobody accepted.
    public func tcpClose<I: IPVersion>(_ version: I.Type, _ id: SocketID) {
        let layer = I.layer(of: self)
        switch layer.tcp.entries[id] {
        case .open(let socket)?:
            if let port = socket.local?.port { layer.tcp.release(port, by: id) }
            layer.tcp.entries.removeValue(forKey: id)
        case .listener(let listener)?:
            layer.tcp.listeners[listener.local.port]?.removeAll { $0 === listener }
            if layer.tcp.listeners[listener.local.port]?.isEmpty == true {
                layer.tcp.listeners.removeValue(forKey: listener.local.port)
            }
            layer.tcp.release(listener.local.port, by: id)
            layer.tcp.entries.removeValue(forKey: id)
            // Connections still in the queues belonged to nobody else.
            let children = layer.tcp.connections.values.filter { $0.parent == id }
            for child in children { abort(child, sendReset: child.state.isSynchronized, error: .connectionAborted) }
        case .connection(let connection)?:
            connection.isOrphan = true
            if connection.readable > 0 {
                abort(connection, sendReset: true, error: .connectionAborted)
            } else {
                switch connection.state {
                case .synSent, .closed:
                    destroy(connection)
                case .synReceived, .established, .closeWait:
                    connection.finQueued = true
                    tcpOutput(connection)
                    schedule(connection)
                case .finWait2:
                    connection.closeDeadline = now + configuration.tcp.finWait2Timeout
                    schedule(connection)
                default:
                    break
                }
            }
        case nil:
            break
        }
        signal(id)
    }

    /// Resets the connection (RFC 9293 ABORT) and forgets the socket.
    public func tcpAbort<I: IPVersion>(_ version: I.Type, _ id: SocketID) {
        guard let connection = I.layer(of: self).tcp.connection(id) else {
            tcpClose(I.self, id)
            return
        }
        connection.isOrphan = true
        abort(connection, sendReset: connection.state.isSynchronized || connection.state == .synReceived,
              error: .connectionAborted)
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    public func tcpSetNoDelay<I: IPVersion>(_ version: I.Type, _ id: SocketID, _ noDelay: Bool) throws(SocketError) {
        try withOptions(I.self, id) { $0.noDelay = noDelay } connection: { connection in
            connection.noDelay = noDelay
            tcpOutput(connection)
        }
    }

    /// Turns keepalive probes on or off (RFC 9293 §3.8.4; the timing is the
    /// socket's, `tcpSetKeepaliveTiming`).
    public func tcpSetKeepalive<I: IPVersion>(_ version: I.Type, _ id: SocketID, _ on: Bool) throws(SocketError) {
        try withOptions(I.self, id) { $0.keepalive = on } connection: { connection in
            connection.keepalive = on
            restartKeepalive(connection)
        }
    }

    /// Changes when this socket's keepalive probes go (TCP_KEEPIDLE,
    /// TCP_KEEPINTVL, TCP_KEEPCNT); nil leaves a value as it is. Seconds must
    /// be in 1...32767 and probes in 1...127, as Linux asks. A connection
    /// waiting to probe starts its idle time again with the new values.
    public func tcpSetKeepaliveTiming<I: IPVersion>(_ version: I.Type, _ id: SocketID, idle: Duration? = nil,
                                                    interval: Duration? = nil,
                                                    probes: Int? = nil) throws(SocketError) {
        for duration in [idle, interval].compactMap({ $0 }) {
            let seconds = duration.components.seconds
            guard duration.components.attoseconds == 0,
                  KeepaliveTiming.secondsRange.contains(Int(clamping: seconds)) else {
                throw .invalidArgument("keepalive time \(duration) outside 1...32767 whole seconds")
            }
        }
        if let probes, !KeepaliveTiming.probesRange.contains(probes) {
            throw .invalidArgument("keepalive probes \(probes) outside 1...127")
        }
        func change(_ timing: inout KeepaliveTiming) {
            if let idle { timing.idle = idle }
            if let interval { timing.interval = interval }
            if let probes { timing.probes = probes }
        }
        try withOptions(I.self, id) { change(&$0.keepaliveTiming) } connection: { connection in
            change(&connection.keepaliveTiming)
            restartKeepalive(connection)
        }
    }

    /// The receive buffer's size (what SO_RCVBUF reads): the size set, and
    /// for a connection the size it has (rounded up to whole segments once
    /// established).
    public func tcpReceiveBufferSize<I: IPVersion>(_ version: I.Type, _ id: SocketID) throws(SocketError) -> Int {
        switch I.layer(of: self).tcp.entries[id] {
        case .open(let socket)?: socket.options.receiveBuffer
        case .listener(let listener)?: listener.options.receiveBuffer
        case .connection(let connection)?: connection.receiveCapacity
        case nil: throw .closed
        }
    }

    /// This socket's keepalive timing (what TCP_KEEPIDLE and friends read).
    public func tcpKeepaliveTiming<I: IPVersion>(_ version: I.Type, _ id: SocketID) throws(SocketError)
        -> KeepaliveTiming {
        switch I.layer(of: self).tcp.entries[id] {
        case .open(let socket)?: socket.options.keepaliveTiming
        case .listener(let listener)?: listener.options.keepaliveTiming
        case .connection(let connection)?: connection.keepaliveTiming
        case nil: throw .closed
        }
    }

    private func restartKeepalive<I: IPVersion>(_ connection: TCPConnection<I>) {
        connection.keepaliveProbes = 0
        connection.keepaliveDeadline = connection.keepalive && connection.state == .established
            ? connection.lastReceived + connection.keepaliveTiming.idle : nil
    }

    /// Aborts a connection whose data stays unacknowledged this long
    /// (RFC 9293 §3.8.3's user timeout; nil: the retransmission count decides).
    public func tcpSetUserTimeout<I: IPVersion>(_ version: I.Type, _ id: SocketID,
                                                _ timeout: Duration?) throws(SocketError) {
        try withOptions(I.self, id) { $0.userTimeout = timeout } connection: { $0.userTimeout = timeout }
    }

    /// Sets the buffer sizes (before connecting or listening; later, only the
    /// send buffer can grow).
    public func tcpSetBufferSizes<I: IPVersion>(_ version: I.Type, _ id: SocketID, send: Int?,
                                                receive: Int?) throws(SocketError) {
        let range = 1024...configuration.tcp.maximumBuffer
        for size in [send, receive].compactMap({ $0 }) where !range.contains(size) {
            throw .invalidArgument("buffer size \(size) outside \(range)")
        }
        try withOptions(I.self, id) { options in
            if let send { options.sendBuffer = send }
            if let receive { options.receiveBuffer = receive }
        } connection: { connection in
            if let send, send > connection.sendBuffer.capacity { connection.sendBuffer.resize(send) }
        }
    }

    private func withOptions<I: IPVersion>(_ version: I.Type, _ id: SocketID, _ change: (inout TCPSocketOptions) -> Void,
                                           connection: (TCPConnection<I>) -> Void) throws(SocketError) {
        let layer = I.layer(of: self)
        switch layer.tcp.entries[id] {
        case .open(let socket)?: change(&socket.options)
        case .listener(let listener)?: change(&listener.options)
        case .connection(let tcb)?:
            connection(tcb)
            schedule(tcb)
        case nil: throw .closed
        }
    }

    public func tcpLocalEndpoint<I: IPVersion>(_ version: I.Type, _ id: SocketID) throws(SocketError) -> Endpoint<I>? {
        let table = I.layer(of: self).tcp
        guard table.entries[id] != nil else { throw .closed }
        return table.boundEndpoint(id)
    }

    public func tcpRemoteEndpoint<I: IPVersion>(_ version: I.Type, _ id: SocketID) throws(SocketError) -> Endpoint<I>? {
        let table = I.layer(of: self).tcp
        guard table.entries[id] != nil else { throw .closed }
        return table.connection(id)?.remote
    }

    /// Every TCP socket of one version (orphans included), for queries.
    public func tcpSockets<I: IPVersion>(_ version: I.Type) -> [TCPSocketInfo<I>] {
        I.layer(of: self).tcp.entries.map { id, entry in
            switch entry {
            case .open(let socket):
                TCPSocketInfo(id: id, state: .closed, local: socket.local, remote: nil, receiveQueue: 0, sendQueue: 0,
                              smoothedRTT: nil, congestionWindow: nil, orphan: false)
            case .listener(let listener):
                TCPSocketInfo(id: id, state: .listen, local: listener.local, remote: nil,
                              receiveQueue: listener.acceptQueue.count, sendQueue: listener.backlog,
                              smoothedRTT: nil, congestionWindow: nil, orphan: false)
            case .connection(let c):
                TCPSocketInfo(id: id, state: c.state, local: c.local, remote: c.remote, receiveQueue: c.readable,
                              sendQueue: c.sendBufferEnd - c.sendUnacknowledged, smoothedRTT: c.rtt.smoothed,
                              congestionWindow: c.congestion.window, orphan: c.isOrphan,
                              bufferMemory: c.sendBuffer.allocatedBytes + c.receiveBuffer.allocatedBytes,
                              sendMSS: c.sendMSS)
            }
        }.sorted { $0.id < $1.id }
    }

    // MARK: Connection life

    /// A new control block with this stack's settings: RFC 6528 initial
    /// sequence number, the MSS our MTU allows, a random timestamp offset.
    func makeConnection<I: IPVersion>(_ version: I.Type, id: SocketID, state: TCPState, local: Endpoint<I>,
                                      remote: Endpoint<I>, options: TCPSocketOptions,
                                      initialSequence: SequenceNumber? = nil) -> TCPConnection<I> {
        let connection = TCPConnection<I>(
            id: id, state: state, local: local, remote: remote,
            initialSequence: initialSequence ?? initialSequenceNumber(local: local, remote: remote),
            timestampOffset: timestampOffset(local: local, remote: remote), settings: configuration.tcp,
            sendMSS: maximumSegmentSize(I.self), memory: socketMemory, now: now)
        connection.noDelay = options.noDelay
        connection.keepalive = options.keepalive
        connection.keepaliveTiming = options.keepaliveTiming
        connection.userTimeout = options.userTimeout
        connection.timestampsEnabled = configuration.tcp.timestamps
        connection.sackPermitted = configuration.tcp.selectiveAcknowledgments
        connection.receiveWindowShift = configuration.tcp.windowScaling ? Self.receiveWindowShift : 0
        connection.initialWindow = min(options.receiveBuffer, 65_535)
        return connection
    }

    /// The window scale we offer: 7 covers buffers up to 8 MiB (Linux offers 7
    /// by default too).
    static var receiveWindowShift: UInt8 { 7 }

    /// The MSS our link allows: MTU less the IP and TCP headers.
    func maximumSegmentSize<I: IPVersion>(_ version: I.Type) -> Int {
        I.layer(of: self).linkMTU - I.headerLength - TCPSegment.minimumHeaderLength
    }

    /// RFC 6528: a 4-microsecond clock plus a keyed hash of the connection's
    /// endpoints, so numbers are unpredictable yet increase per connection.
    func initialSequenceNumber<I: IPVersion>(local: Endpoint<I>, remote: Endpoint<I>) -> SequenceNumber {
        var hash = SipHash(key: tcpSecret)
        hashEndpoints(&hash, local, remote)
        let clock = UInt32(truncatingIfNeeded: now.nanoseconds / 4000)
        return SequenceNumber(clock &+ UInt32(truncatingIfNeeded: hash.finalize()))
    }

    /// RFC 7323 §5.4: a per-connection offset for TSval, from a keyed hash.
    func timestampOffset<I: IPVersion>(local: Endpoint<I>, remote: Endpoint<I>) -> UInt32 {
        var hash = SipHash(key: (tcpSecret.1, tcpSecret.0))
        hashEndpoints(&hash, local, remote)
        return UInt32(truncatingIfNeeded: hash.finalize())
    }

    func hashEndpoints<I: IPVersion>(_ hash: inout SipHash, _ local: Endpoint<I>, _ remote: Endpoint<I>) {
        hash.add(local.address.words.high)
        hash.add(local.address.words.low)
        hash.add(remote.address.words.high)
        hash.add(remote.address.words.low)
        hash.add(local.port)
        hash.add(remote.port)
    }

    /// Ends a connection at once: optionally a RST to the peer, the error for
    /// the application, and the control block goes.
    func abort<I: IPVersion>(_ connection: TCPConnection<I>, sendReset: Bool, error: SocketError) {
        if sendReset && connection.state != .closed && connection.state != .listen {
            sendSegment(connection, flags: [.rst, .ack], sequence: connection.sendNext, payload: 0..<0)
            counters.count(.tcpResetsSent)
        }
        connection.error = connection.error ?? error
        destroy(connection)
    }

    /// Removes a connection from the tables (CLOSED). If its application
    /// still holds the socket, the socket stays, closed, to report its error.
    func destroy<I: IPVersion>(_ connection: TCPConnection<I>) {
        let layer = I.layer(of: self)
        switch connection.state {
        case .timeWait: layer.tcp.timeWaitCount -= 1
        case .closed: break
        default: layer.tcp.retire(connection)
        }
        if connection.state == .synReceived, let parent = connection.parent, let listener = layer.tcp.listener(parent) {
            listener.halfOpen -= 1
        }
        connection.state = .closed
        connection.retransmitDeadline = nil
        connection.delayedAckDeadline = nil
        connection.persistDeadline = nil
        connection.keepaliveDeadline = nil
        connection.closeDeadline = nil
        let tuple = FourTuple(local: connection.local, remote: connection.remote)
        if layer.tcp.connections[tuple] === connection { layer.tcp.connections.removeValue(forKey: tuple) }
        let holdsPort = layer.tcp.bound[connection.local.port]?.contains(connection.id) == true
        if connection.isOrphan || connection.parent != nil {
            layer.tcp.entries.removeValue(forKey: connection.id)
            if holdsPort { layer.tcp.release(connection.local.port, by: connection.id) }
        } else if holdsPort {
            // Keep the entry (closed) for the application; the port is free.
            layer.tcp.release(connection.local.port, by: connection.id)
        }
        if let parent = connection.parent { layer.tcp.listener(parent)?.acceptQueue.removeAll { $0 == connection.id } }
        signal(connection.id)
    }

    /// Puts the connection's earliest timer into the heap, if it moved earlier.
    func schedule<I: IPVersion>(_ connection: TCPConnection<I>) {
        guard connection.state != .closed, let deadline = connection.nextDeadline else { return }
        if let scheduled = connection.scheduledDeadline, scheduled <= deadline { return }
        connection.scheduledDeadline = deadline
        let layer = I.layer(of: self)
        layer.tcp.timers.insert(TCPTimerEntry(deadline: deadline, socket: connection.id))
        layer.tcp.compactTimersIfStale()
    }

    /// The earliest TCP timer of a version.
    func nextTCPDeadline<I: IPVersion>(_ version: I.Type) -> Instant? {
        I.layer(of: self).tcp.timers.min?.deadline
    }
}
