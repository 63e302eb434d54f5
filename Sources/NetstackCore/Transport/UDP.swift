import NetstackWire

/// Where a received datagram came from and which of our addresses it was for.
public struct UDPReceived<I: IPVersion>: Hashable, Sendable {
    public var source: Endpoint<I>
    public var destination: I.Address
}

/// One UDP socket's state in the core.
struct UDPSocket<I: IPVersion> {
    /// Set once bound (explicitly, or implicitly by connect or send).
    var local: Endpoint<I>?
    /// Set by connect: the only peer it talks to and hears from.
    var remote: Endpoint<I>?
    /// The source address chosen at connect, when bound to the wildcard.
    var connectedSource: I.Address?
    var queue: DatagramQueue<UDPReceived<I>>
    /// An ICMP error for a connected socket, reported once by the next operation.
    var pendingError: SocketError?
    /// Datagrams dropped because the queue was full.
    var overflows: UInt64 = 0
    /// SO_REUSEADDR: sockets that all set it may share a port (the most
    /// specific match receives, as in Linux).
    var reuseAddress = false
}

/// What a query sees of a UDP socket.
public struct UDPSocketInfo<I: IPVersion>: Sendable, Hashable {
    public var id: SocketID
    public var local: Endpoint<I>?
    public var remote: Endpoint<I>?
    public var queuedDatagrams: Int
    public var queuedBytes: Int
    public var receiveBufferSize: Int
    public var overflows: UInt64
}

/// The UDP sockets of one IP version, and which port each is bound to.
struct UDPTable<I: IPVersion> {
    var sockets: [SocketID: UDPSocket<I>] = [:]
    /// Sockets bound to each port (a few at most: one per local address, or
    /// several connected ones).
    var bound: [UInt16: [SocketID]] = [:]

    /// Whether binding `local` would clash with a socket already bound: the
    /// same port and the same address, or either address the wildcard,
    /// unless both sockets share (`reuse`, SO_REUSEADDR).
    func conflicts(_ local: Endpoint<I>, reuse: Bool = false) -> Bool {
        (bound[local.port] ?? []).contains { id in
            guard let socket = sockets[id], let other = socket.local else { return false }
            if reuse && socket.reuseAddress { return false }
            return other.address.isUnspecified || local.address.isUnspecified || other.address == local.address
        }
    }

    /// The socket that receives a datagram from `source` to `destination`:
    /// the most specific match (bound address, then connected peer), as Linux
    /// scores them. Group destinations only reach wildcard-bound sockets.
    func receiver(for destination: Endpoint<I>, from source: Endpoint<I>, unicast: Bool) -> SocketID? {
        var best: (id: SocketID, score: Int)?
        for id in bound[destination.port] ?? [] {
            guard let socket = sockets[id], let local = socket.local else { continue }
            var score = 0
            if !local.address.isUnspecified {
                guard unicast, local.address == destination.address else { continue }
                score += 2
            }
            if let remote = socket.remote {
                guard remote == source else { continue }
                score += 1
            }
            if best == nil || score > best!.score { best = (id, score) }
        }
        return best?.id
    }
}

extension Stack {
    // MARK: The socket interface (called by the bindings, on the engine thread)

    /// Creates an unbound UDP socket.
    public func udpOpen<I: IPVersion>(_ version: I.Type) -> SocketID {
        let id = makeSocketID()
        let queue = DatagramQueue<UDPReceived<I>>(capacity: configuration.udpReceiveBuffer, memory: socketMemory)
        I.layer(of: self).udp.sockets[id] = UDPSocket(queue: queue)
        return id
    }

    /// Binds to `local`: one of our addresses or the wildcard, and a port (0
    /// for an ephemeral one).
    public func udpBind<I: IPVersion>(_ version: I.Type, _ id: SocketID, to local: Endpoint<I>) throws(SocketError) {
        let layer = I.layer(of: self)
        guard var socket = layer.udp.sockets[id] else { throw .closed }
        guard socket.local == nil else { throw .invalidArgument("already bound") }
        guard local.address.isUnspecified || layer.state(of: local.address) != nil else {
            throw .addressNotAvailable
        }
        var endpoint = local
        if endpoint.port == 0 {
            guard let port = ephemeralPort({ !layer.udp.conflicts(Endpoint(local.address, $0)) }) else {
                throw .addressInUse
            }
            endpoint.port = port
        } else if layer.udp.conflicts(endpoint, reuse: socket.reuseAddress) {
            throw .addressInUse
        }
        socket.local = endpoint
        layer.udp.sockets[id] = socket
        layer.udp.bound[endpoint.port, default: []].append(id)
    }

    /// Sets the only peer the socket sends to and hears from (binding it to an
    /// ephemeral port first if needed).
    public func udpConnect<I: IPVersion>(_ version: I.Type, _ id: SocketID, to remote: Endpoint<I>) throws(SocketError) {
        let layer = I.layer(of: self)
        guard layer.udp.sockets[id] != nil else { throw .closed }
        guard remote.port != 0, !remote.address.isUnspecified else { throw .invalidArgument("no peer address") }
        if layer.udp.sockets[id]?.local == nil { try udpBind(I.self, id, to: .any()) }
        guard var socket = layer.udp.sockets[id], let local = socket.local else { throw .closed }
        if local.address.isUnspecified {
            guard let source = sourceAddress(I.self, for: remote.address) else { throw .networkUnreachable }
            socket.connectedSource = source
        }
        guard route(I.self, to: remote.address) != nil else { throw .networkUnreachable }
        socket.remote = remote
        socket.pendingError = nil
        layer.udp.sockets[id] = socket
    }

    /// Sends one datagram, to `destination` or (nil) the connected peer.
    /// Returns the payload length.
    @discardableResult
    public func udpSend<I: IPVersion>(_ version: I.Type, _ id: SocketID, to destination: Endpoint<I>?,
                                      payload: RawSpan) throws(SocketError) -> Int {
        let layer = I.layer(of: self)
        guard layer.udp.sockets[id] != nil else { throw .closed }
        if let error = layer.udp.sockets[id]?.pendingError {
            layer.udp.sockets[id]?.pendingError = nil
            throw error
        }
        guard let peer = destination ?? layer.udp.sockets[id]?.remote else { throw .notConnected }
        guard peer.port != 0, !peer.address.isUnspecified else { throw .invalidArgument("no destination") }
        guard payload.byteCount <= 65_535 - UDPDatagram.headerLength - I.headerLength else { throw .messageTooLong }
        if layer.udp.sockets[id]?.local == nil { try udpBind(I.self, id, to: .any()) }
        guard let socket = layer.udp.sockets[id], let local = socket.local else { throw .closed }
        let source: I.Address
        if !local.address.isUnspecified {
            source = local.address
        } else if peer == socket.remote, let connected = socket.connectedSource {
            source = connected
        } else if let chosen = sourceAddress(I.self, for: peer.address) {
            source = chosen
        } else {
            throw .networkUnreachable
        }
        let header = UDPHeader(sourcePort: local.port, destinationPort: peer.port, payloadLength: payload.byteCount)
        let pseudo = I.pseudoHeader(source: source, destination: peer.address, protocol: .udp, length: header.length)
        // The link may finish the checksum of a datagram that is not fragmented.
        let partial = offloads.transmitChecksum && I.headerLength + header.length <= layer.pathMTU(to: peer.address)
        let sent = sendIP(I.self, source: source, destination: peer.address, protocol: .udp,
                          payloadLength: header.length,
                          offload: partial ? .checksum(fieldOffset: UDPDatagram.checksumFieldOffset) : .none) { span in
            span.copy(payload, to: UDPDatagram.headerLength)
            header.emit(into: &span, pseudoHeader: pseudo, partialChecksum: partial)
        }
        guard sent else { throw .networkUnreachable }
        counters.count(.udpDatagramsSent)
        return payload.byteCount
    }

    /// Takes the oldest queued datagram, handing it to `body`; nil when none is
    /// queued. A pending ICMP error is thrown first, once.
    public func udpReceive<I: IPVersion, R>(
        _ version: I.Type, _ id: SocketID, _ body: (UDPReceived<I>, RawSpan) -> R
    ) throws(SocketError) -> R? {
        let layer = I.layer(of: self)
        guard var socket = layer.udp.sockets.removeValue(forKey: id) else { throw .closed }
        defer { layer.udp.sockets[id] = socket }
        if let error = socket.pendingError {
            socket.pendingError = nil
            throw error
        }
        return socket.queue.pop(body)
    }

    /// Whether a receive would complete now (a datagram or an error is waiting).
    public func udpIsReadable<I: IPVersion>(_ version: I.Type, _ id: SocketID) -> Bool {
        guard let socket = I.layer(of: self).udp.sockets[id] else { return true }
        return !socket.queue.isEmpty || socket.pendingError != nil
    }

    public func udpLocalEndpoint<I: IPVersion>(_ version: I.Type, _ id: SocketID) throws(SocketError) -> Endpoint<I>? {
        guard let socket = I.layer(of: self).udp.sockets[id] else { throw .closed }
        guard var local = socket.local else { return nil }
        if local.address.isUnspecified, let source = socket.connectedSource { local.address = source }
        return local
    }

    public func udpRemoteEndpoint<I: IPVersion>(_ version: I.Type, _ id: SocketID) throws(SocketError) -> Endpoint<I>? {
        guard let socket = I.layer(of: self).udp.sockets[id] else { throw .closed }
        return socket.remote
    }

    /// SO_REUSEADDR: the socket may share its port with others that set it.
    public func udpSetReuseAddress<I: IPVersion>(_ version: I.Type, _ id: SocketID, _ on: Bool) throws(SocketError) {
        guard I.layer(of: self).udp.sockets[id] != nil else { throw .closed }
        I.layer(of: self).udp.sockets[id]?.reuseAddress = on
    }

    /// Sets the receive queue's cap in bytes (256 bytes to 16 MiB).
    public func udpSetReceiveBufferSize<I: IPVersion>(_ version: I.Type, _ id: SocketID,
                                                      _ size: Int) throws(SocketError) {
        guard (256...16 << 20).contains(size) else { throw .invalidArgument("buffer size \(size) outside 256...16777216") }
        guard I.layer(of: self).udp.sockets[id] != nil else { throw .closed }
        I.layer(of: self).udp.sockets[id]?.queue.setCapacity(size)
    }

    /// Closes the socket: its binding and queued datagrams are gone.
    public func udpClose<I: IPVersion>(_ version: I.Type, _ id: SocketID) {
        let layer = I.layer(of: self)
        guard let socket = layer.udp.sockets.removeValue(forKey: id) else { return }
        if let port = socket.local?.port {
            layer.udp.bound[port]?.removeAll { $0 == id }
            if layer.udp.bound[port]?.isEmpty == true { layer.udp.bound.removeValue(forKey: port) }
        }
        signal(id)
    }

    /// Every UDP socket of one version, for queries.
    public func udpSockets<I: IPVersion>(_ version: I.Type) -> [UDPSocketInfo<I>] {
        I.layer(of: self).udp.sockets.map { id, socket in
            UDPSocketInfo(id: id, local: socket.local, remote: socket.remote, queuedDatagrams: socket.queue.count,
                          queuedBytes: socket.queue.queuedBytes, receiveBufferSize: socket.queue.capacity,
                          overflows: socket.overflows)
        }.sorted { $0.id < $1.id }
    }

    // MARK: Input

    /// UDP input (RFC 768, RFC 1122 §4.1.3): verify, find the socket, queue
    /// the payload; port unreachable when no socket listens.
    func receiveUDP<I: IPVersion>(_ datagram: IPDatagram<I>) {
        let udp: UDPDatagram
        do {
            udp = try UDPDatagram(datagram.payload)
        } catch {
            return counters.drop(error)
        }
        if !datagram.offload.checksumTrusted, udp.checksum != 0 || I.udpChecksumRequired {
            var checksum = I.pseudoHeader(source: datagram.source, destination: datagram.destination,
                                          protocol: .udp, length: udp.length)
            checksum.add(udp.bytes)
            guard udp.checksum != 0, checksum.value == 0 else { return counters.drop(WireError(.udp, .badChecksum)) }
        }
        let layer = I.layer(of: self)
        let source = Endpoint<I>(datagram.source, udp.sourcePort)
        let destination = Endpoint<I>(datagram.destination, udp.destinationPort)
        guard let id = layer.udp.receiver(for: destination, from: source, unicast: datagram.isUnicast) else {
            counters.count(.udpDatagramsReceived)
            counters.drop(.udpNoSocket)
            sendICMPError(.portUnreachable, about: datagram)
            return
        }
        let metadata = UDPReceived<I>(source: source, destination: datagram.destination)
        // A UDP segmentation offload frame stands for datagrams of
        // `segmentSize` payload bytes each (the last may be shorter).
        let payload = udp.payload
        let piece = datagram.offload.segmentation == .udp ? datagram.offload.segmentSize : max(payload.byteCount, 1)
        var offset = 0
        repeat {
            let chunk = payload.extracting(offset..<min(offset + piece, payload.byteCount))
            offset += piece
            counters.count(.udpDatagramsReceived)
            do throws(DatagramQueue<UDPReceived<I>>.Refusal) {
                try layer.udp.sockets[id]?.queue.push(metadata, chunk)
            } catch {
                layer.udp.sockets[id]?.overflows += 1
                switch error {
                case .full:
                    counters.drop(.udpReceiveQueueFull)
                case .memory:
                    counters.drop(.udpBufferMemory)
                }
            }
        } while offset < payload.byteCount
        noteSocketMemory()
        signal(id)
    }

    /// An ICMP error about a datagram we sent: a connected socket to that peer
    /// reports it on its next operation (as Linux does without IP_RECVERR).
    /// Returns whether a socket took it.
    @discardableResult
    func deliverUDPError<I: IPVersion>(_ version: I.Type, _ error: SocketError, local: Endpoint<I>,
                                       remote: Endpoint<I>) -> Bool {
        let layer = I.layer(of: self)
        var delivered = false
        for id in layer.udp.bound[local.port] ?? [] {
            guard let socket = layer.udp.sockets[id], socket.remote == remote else { continue }
            let address = socket.local?.address
            guard address == local.address || address?.isUnspecified == true else { continue }
            layer.udp.sockets[id]?.pendingError = error
            signal(id)
            delivered = true
        }
        return delivered
    }
}
