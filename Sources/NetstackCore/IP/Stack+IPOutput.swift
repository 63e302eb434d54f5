import NetstackWire

extension Stack {
    /// Sends an IP packet. `build` writes the `payloadLength` bytes of the
    /// upper-layer message (checksum included, or partial when `offload` says
    /// the link finishes it) at the start of the span it is given. Packets
    /// larger than the link MTU are fragmented (RFC 791 §3.2, RFC 8200 §4.5),
    /// unless the link is to cut them (TSO). `via` overrides routing (NDP
    /// probes to a known link address). Returns false if the packet could not
    /// be sent.
    @discardableResult
    func sendIP<I: IPVersion>(
        _ version: I.Type, source: I.Address, destination: I.Address, protocol: IPProtocol,
        hopLimit: UInt8? = nil, payloadLength: Int, via hop: NextHop<I>? = nil, offload: TransmitOffload = .none,
        ecn: UInt8 = 0, build: (inout MutableRawSpan) -> Void
    ) -> Bool {
        let layer = I.layer(of: self)
        guard let nextHop = hop ?? route(I.self, to: destination) else {
            counters.drop(.noRoute)
            return false
        }
        let hopLimit = hopLimit ?? layer.hopLimit
        let ipLength = I.headerLength + payloadLength
        let ethernetLength = EthernetFrame.headerLength
        let segmented = if case .tcpSegmentation = offload { true } else { false }
        let mtu = layer.pathMTU(to: destination)
        if ipLength <= mtu || segmented {
            guard var frame = output.makeFrame(length: ethernetLength + ipLength) else {
                counters.drop(.outputBuffersExhausted)
                return false
            }
            let identification = layer.takeIdentification()
            let mayFragment = layer.pathMTUs.isBelowFloor(destination)
            frame.withMutableBytes(0..<frame.length) { span in
                EthernetHeader(destination: .zero, source: mac, etherType: I.etherType).emit(into: &span)
                span.withRegion(ethernetLength..<(ethernetLength + I.headerLength)) {
                    I.emitHeader(source: source, destination: destination, protocol: `protocol`, hopLimit: hopLimit,
                                 payloadLength: payloadLength, identification: identification, ecn: ecn,
                                 mayFragment: mayFragment, into: &$0)
                }
                span.withRegion((ethernetLength + I.headerLength)..<(ethernetLength + ipLength)) { build(&$0) }
            }
            let transportStart = UInt16(ethernetLength + I.headerLength)
            switch offload {
            case .none:
                break
            case .checksum(let fieldOffset):
                frame.setVirtioHeader(VirtioNetHeader(flags: .needsChecksum, checksumStart: transportStart,
                                                      checksumOffset: UInt16(fieldOffset)))
            case .tcpSegmentation(let segmentSize, let headerLength):
                frame.setVirtioHeader(VirtioNetHeader(
                    flags: .needsChecksum, segmentation: I.tcpSegmentation,
                    headerLength: transportStart + UInt16(headerLength), segmentSize: UInt16(segmentSize),
                    checksumStart: transportStart, checksumOffset: UInt16(TCPSegment.checksumFieldOffset)))
            }
            counters.count(I.packetsSent)
            transmit(consume frame, via: nextHop)
            return true
        }
        precondition(offload.isNone, "a partial checksum cannot be fragmented")
        return sendFragments(I.self, source: source, destination: destination, protocol: `protocol`,
                             hopLimit: hopLimit, payloadLength: payloadLength, via: nextHop, build: build)
    }

    /// Builds the whole datagram once in scratch space, then cuts it into
    /// fragments of at most the MTU, each a multiple of 8 data bytes but the last.
    private func sendFragments<I: IPVersion>(
        _ version: I.Type, source: I.Address, destination: I.Address, protocol: IPProtocol, hopLimit: UInt8,
        payloadLength: Int, via nextHop: NextHop<I>, build: (inout MutableRawSpan) -> Void
    ) -> Bool {
        let layer = I.layer(of: self)
        let headers = I.headerLength + I.fragmentHeaderLength
        let chunkLimit = (layer.pathMTU(to: destination) - headers) & ~7
        guard chunkLimit >= 8, payloadLength <= 65_535 - I.headerLength else {
            counters.drop(.fragmentTooLarge)
            return false
        }
        if fragmentScratch.count < payloadLength {
            fragmentScratch = [UInt8](repeating: 0, count: max(payloadLength, 2048))
        }
        fragmentScratch.withMutableBytes(0..<payloadLength) { build(&$0) }
        let identification = layer.takeIdentification()
        let ethernetLength = EthernetFrame.headerLength
        var offset = 0
        while offset < payloadLength {
            let chunk = min(chunkLimit, payloadLength - offset)
            let more = offset + chunk < payloadLength
            guard var frame = output.makeFrame(length: ethernetLength + headers + chunk) else {
                counters.drop(.outputBuffersExhausted)
                return false
            }
            fragmentScratch.withSpan { scratch in
                frame.withMutableBytes(0..<frame.length) { span in
                    EthernetHeader(destination: .zero, source: mac, etherType: I.etherType).emit(into: &span)
                    span.withRegion(ethernetLength..<(ethernetLength + headers)) {
                        I.emitFragmentHeader(source: source, destination: destination, protocol: `protocol`,
                                             hopLimit: hopLimit, fragmentLength: chunk, offset: offset,
                                             moreFragments: more, identification: identification, into: &$0)
                    }
                    span.copy(scratch.extracting(offset..<(offset + chunk)), to: ethernetLength + headers)
                }
            }
            counters.count(I.packetsSent)
            transmit(consume frame, via: nextHop)
            offset += chunk
        }
        counters.count(.datagramsFragmented)
        return true
    }

    /// Queues `frame` for the device once its next hop's link address is known:
    /// at once for groups and resolved neighbours, after resolution otherwise.
    func transmit<I: IPVersion>(_ frame: consuming OutputFrame, via hop: NextHop<I>) {
        switch hop {
        case .link(let mac):
            frame.setDestination(mac)
            output.enqueue(consume frame)
        case .neighbor(let address):
            let layer = I.layer(of: self)
            if let mac = layer.neighbors.lookup(address, now: now) {
                frame.setDestination(mac)
                output.enqueue(consume frame)
                return
            }
            let held = layer.neighbors.hold(consume frame, for: address, now: now)
            if let dropped = held.dropped {
                output.recycle(dropped)
                counters.drop(.neighborQueueOverflow)
            }
            if let refused = held.refused {
                output.recycle(refused)
                counters.drop(.neighborUnreachable)
            }
            recycleEvictedNeighbors(I.self)
            if held.solicit { I.solicit(address, unicastTo: nil, in: self) }
        }
    }

    /// The next hop towards `destination`: its group address, itself when on
    /// the link, or a router. Nil when there is no route.
    func route<I: IPVersion>(_ version: I.Type, to destination: I.Address) -> NextHop<I>? {
        let layer = I.layer(of: self)
        if destination.isMulticast { return .link(I.multicastMAC(destination)) }
        if I.isBroadcast(destination, in: layer) { return .link(.broadcast) }
        if destination.isLinkLocal || layer.isOnLink(destination, now: now) { return .neighbor(destination) }
        if let router = layer.defaultRouter(now: now) { return .neighbor(router) }
        return nil
    }

    /// Which of our addresses to send from to reach `destination` (RFC 6724
    /// reduced to what one interface needs): a link-local one for link-local
    /// and link-scope destinations, else one whose prefix holds the destination,
    /// else any global one, else any.
    func sourceAddress<I: IPVersion>(_ version: I.Type, for destination: I.Address) -> I.Address? {
        let candidates = Array(I.layer(of: self).addresses.filter { $0.state == .preferred })
        let linkScope = destination.isLinkLocal || (destination.isMulticast && destination.isLinkScopeMulticast)
        if linkScope, let linkLocal = candidates.first(where: { $0.address.isLinkLocal }) {
            return linkLocal.address
        }
        if let sameSubnet = candidates.first(where: { $0.interface.subnet.contains(destination) }) {
            return sameSubnet.address
        }
        return (candidates.first { !$0.address.isLinkLocal } ?? candidates.first)?.address
    }

    /// Runs one version's neighbour timers and sends what they ask for.
    func pollNeighbors<I: IPVersion>(_ version: I.Type) {
        let layer = I.layer(of: self)
        guard let deadline = layer.neighbors.nextDeadline(), deadline <= now else { return }
        let (solicitations, dropped) = layer.neighbors.poll(now: now)
        for frame in dropped {
            output.recycle(frame)
            counters.drop(.neighborUnreachable)
        }
        for solicitation in solicitations {
            switch solicitation {
            case .multicast(let target): I.solicit(target, unicastTo: nil, in: self)
            case .unicast(let target, let mac): I.solicit(target, unicastTo: mac, in: self)
            }
        }
    }

    /// Adds a permanent neighbour entry (as `ip neigh add ... nud permanent`):
    /// `address` is at `mac`, without solicitations, expiry or eviction,
    /// whatever neighbours say. For links whose peers do not resolve (a
    /// test harness that carries bare IP packets).
    public func addPermanentNeighbor<I: IPVersion>(_ version: I.Type, _ address: I.Address, mac: MACAddress) {
        enqueue(I.layer(of: self).neighbors.setPermanent(address, mac: mac))
    }

    /// Records a neighbour's link address and sends what was waiting for it.
    func learnNeighbor<I: IPVersion>(_ version: I.Type, _ address: I.Address, mac: MACAddress?, solicited: Bool,
                                     override: Bool, create: Bool, isRouter: Bool? = nil) {
        let reachable = randomReachableTime()
        let released = I.layer(of: self).neighbors.learn(address, mac: mac, solicited: solicited, override: override,
                                                         create: create, isRouter: isRouter,
                                                         reachableFor: reachable, now: now)
        enqueue(released)
        recycleEvictedNeighbors(I.self)
    }

    /// Counts the neighbours evicted to make room; the frames that waited
    /// for them are dropped, as for a neighbour that never answered.
    func recycleEvictedNeighbors<I: IPVersion>(_ version: I.Type) {
        let evicted = I.layer(of: self).neighbors.takeEvicted()
        guard evicted.entries > 0 else { return }
        counters.count(.neighborEvicted, by: evicted.entries)
        reachedLimit(.neighborEntries)
        for frame in evicted.frames {
            output.recycle(frame)
            counters.drop(.neighborUnreachable)
        }
    }
}
