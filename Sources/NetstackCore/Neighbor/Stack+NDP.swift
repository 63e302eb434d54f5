import NetstackWire

/// Neighbour discovery (RFC 4861) and stateless address autoconfiguration's
/// duplicate address detection (RFC 4862 §5.4), as a host does them.
extension Stack {
    /// NDP messages must come from the link: hop limit 255 (RFC 4861 §6.1, §7.1).
    private static let ndpHopLimit: UInt8 = 255

    /// RFC 4861 §7.1.1 validation, §7.2.3–§7.2.4 processing.
    func receiveNeighborSolicitation(_ datagram: IPDatagram<IPv6>, target: IPv6Address, options: RawSpan) {
        guard datagram.hopLimit == Self.ndpHopLimit, !target.isMulticast else { return counters.drop(.ndpInvalid) }
        var sourceMAC: MACAddress?
        do {
            try NDPOption.forEach(in: options) { option in
                if case .sourceLinkLayerAddress(let mac) = option { sourceMAC = mac }
            }
        } catch {
            return counters.drop(.ndpInvalid)
        }
        let fromUnspecified = datagram.source.isUnspecified
        if fromUnspecified {
            // A duplicate address detection probe: to the solicited-node group, no source link address.
            guard datagram.destination == target.solicitedNodeMulticast, sourceMAC == nil else {
                return counters.drop(.ndpInvalid)
            }
        }
        switch ipv6.state(of: target) {
        case nil, .duplicate?:
            counters.drop(.icmpIgnored)
        case .tentative?:
            // Another node probes the address we are probing: neither may have
            // it (RFC 4862 §5.4.3). A resolution attempt is ignored.
            if fromUnspecified { markDuplicate(target) }
        case .preferred?:
            if !fromUnspecified, let sourceMAC {
                learnNeighbor(IPv6.self, datagram.source, mac: sourceMAC, solicited: false, override: true,
                              create: true)
            }
            let destination = fromUnspecified ? IPv6Address.allNodes : datagram.source
            let via: NextHop<IPv6>? = fromUnspecified ? nil : sourceMAC.map { .link($0) }
            sendNeighborAdvertisement(target: target, to: destination, solicited: !fromUnspecified, via: via)
            counters.count(.neighborSolicitationsAnswered)
        }
    }

    /// RFC 4861 §7.1.2 validation, §7.2.5 processing; RFC 4862 §5.4.4 for
    /// answers to our duplicate address detection.
    func receiveNeighborAdvertisement(_ datagram: IPDatagram<IPv6>, target: IPv6Address, router: Bool,
                                      solicited: Bool, override: Bool, options: RawSpan) {
        guard datagram.hopLimit == Self.ndpHopLimit, !target.isMulticast,
              !(datagram.destination.isMulticast && solicited) else { return counters.drop(.ndpInvalid) }
        var targetMAC: MACAddress?
        do {
            try NDPOption.forEach(in: options) { option in
                if case .targetLinkLayerAddress(let mac) = option { targetMAC = mac }
            }
        } catch {
            return counters.drop(.ndpInvalid)
        }
        switch ipv6.state(of: target) {
        case .tentative?:
            markDuplicate(target)
        case .preferred?:
            if let targetMAC { notices.append(.addressConflict(address: "\(target)", mac: targetMAC)) }
        case .duplicate?:
            break
        case nil:
            learnNeighbor(IPv6.self, target, mac: targetMAC, solicited: solicited, override: override, create: false,
                          isRouter: router)
        }
    }

    /// RFC 4861 §6.1.2 validation, §6.3.4 processing: default routers, on-link
    /// prefixes, the link MTU, the hop limit. Addresses are not autoconfigured
    /// from advertised prefixes (the stack's addresses are configured).
    func receiveRouterAdvertisement(_ datagram: IPDatagram<IPv6>, _ advertisement: RouterAdvertisement,
                                    options: RawSpan) {
        guard datagram.source.isLinkLocal, datagram.hopLimit == Self.ndpHopLimit else {
            return counters.drop(.ndpInvalid)
        }
        var sourceMAC: MACAddress?
        var linkMTU: UInt32?
        var prefixes: [NDPPrefixInformation] = []
        do {
            try NDPOption.forEach(in: options) { option in
                switch option {
                case .sourceLinkLayerAddress(let mac): sourceMAC = mac
                case .mtu(let mtu): linkMTU = mtu
                case .prefixInformation(let prefix): prefixes.append(prefix)
                default: break
                }
            }
        } catch {
            return counters.drop(.ndpInvalid)
        }
        counters.count(.routerAdvertisementsReceived)
        let router = datagram.source
        if advertisement.currentHopLimit != 0 { ipv6.hopLimit = advertisement.currentHopLimit }
        if advertisement.routerLifetime > 0 {
            if ipv6.routers[router] == nil { notices.append(.routerLearned("\(router)")) }
            ipv6.routers[router] = now + .seconds(Int(advertisement.routerLifetime))
        } else {
            ipv6.routers.removeValue(forKey: router)
        }
        if let sourceMAC {
            learnNeighbor(IPv6.self, router, mac: sourceMAC, solicited: false, override: true, create: true,
                          isRouter: true)
        }
        if let linkMTU, Int(linkMTU) >= IPv6.minimumMTU, Int(linkMTU) <= mtu {
            ipv6.linkMTU = Int(linkMTU)
        }
        for prefix in prefixes where prefix.onLink && !prefix.prefix.isLinkLocal && prefix.prefixLength <= 128 {
            let subnet = Subnet<IPv6>(prefix.prefix, prefixLength: Int(prefix.prefixLength))
            switch prefix.validLifetime {
            case 0: ipv6.learnedPrefixes.removeValue(forKey: subnet)
            case .max: ipv6.learnedPrefixes[subnet] = Instant(nanoseconds: .max)
            default: ipv6.learnedPrefixes[subnet] = now + .seconds(Int(prefix.validLifetime))
            }
        }
        // A router answered: no more solicitations (RFC 4861 §6.3.7).
        routerSolicitationsLeft = 0
        routerSolicitationDeadline = nil
    }

    /// Asks for `target`'s link address: to its solicited-node group, or
    /// unicast to `mac` to confirm a cached one (RFC 4861 §7.2.2, §7.3.3).
    func sendNeighborSolicitation(for target: IPv6Address, unicastTo unicast: MACAddress?) {
        guard let source = sourceAddress(IPv6.self, for: target) else { return }
        let destination = unicast == nil ? target.solicitedNodeMulticast : target
        let option = NDPOption.sourceLinkLayerAddress(mac)
        let message = ICMPv6Message.neighborSolicitation(target: target)
        let sent = sendIP(IPv6.self, source: source, destination: destination, protocol: .icmpv6,
                          hopLimit: Self.ndpHopLimit, payloadLength: message.headerLength + option.length,
                          via: unicast.map { .link($0) }) { span in
            span.withRegion(message.headerLength..<(message.headerLength + option.length)) { option.emit(into: &$0) }
            message.emit(into: &span, bodyLength: option.length, source: source, destination: destination)
        }
        if sent { counters.count(.neighborSolicitationsSent) }
    }

    /// Announces that `target` is ours, with our link address (RFC 4861 §7.2.4).
    func sendNeighborAdvertisement(target: IPv6Address, to destination: IPv6Address, solicited: Bool,
                                   via: NextHop<IPv6>?) {
        let option = NDPOption.targetLinkLayerAddress(mac)
        let message = ICMPv6Message.neighborAdvertisement(router: false, solicited: solicited, override: true,
                                                          target: target)
        sendIP(IPv6.self, source: target, destination: destination, protocol: .icmpv6, hopLimit: Self.ndpHopLimit,
               payloadLength: message.headerLength + option.length, via: via) { span in
            span.withRegion(message.headerLength..<(message.headerLength + option.length)) { option.emit(into: &$0) }
            message.emit(into: &span, bodyLength: option.length, source: target, destination: destination)
        }
    }

    // MARK: Start-up: duplicate address detection and router solicitation

    /// Every IPv6 address starts tentative and is probed after a random delay
    /// (RFC 4862 §5.4, §5.4.2), unless detection is off.
    func startDuplicateAddressDetection(now: Instant) {
        let settings = configuration.ipv6Startup
        for index in ipv6.addresses.indices {
            if settings.dadTransmits > 0 {
                ipv6.addresses[index].state = .tentative
                ipv6.addresses[index].probesLeft = settings.dadTransmits
                ipv6.addresses[index].deadline = now + random.duration(in: .zero...settings.maximumDADDelay)
            } else {
                ipv6.addresses[index].state = .preferred
            }
        }
        if settings.dadTransmits == 0 { startRouterSolicitation() }
    }

    func pollDuplicateAddressDetection() {
        var changed = false
        for index in ipv6.addresses.indices {
            let entry = ipv6.addresses[index]
            guard entry.state == .tentative, let deadline = entry.deadline, deadline <= now else { continue }
            if entry.probesLeft > 0 {
                sendDuplicateAddressProbe(entry.address)
                ipv6.addresses[index].probesLeft -= 1
                ipv6.addresses[index].deadline = now + configuration.neighbors.retransmitTime
            } else {
                ipv6.addresses[index].state = .preferred
                ipv6.addresses[index].deadline = nil
                notices.append(.addressPreferred("\(entry.address)"))
                if entry.address.isLinkLocal { startRouterSolicitation() }
                changed = true
            }
        }
        if changed { updateAcceptedGroups() }
    }

    /// A neighbour solicitation from the unspecified address for our own
    /// tentative address (RFC 4862 §5.4.2).
    private func sendDuplicateAddressProbe(_ address: IPv6Address) {
        let destination = address.solicitedNodeMulticast
        let message = ICMPv6Message.neighborSolicitation(target: address)
        sendIP(IPv6.self, source: .unspecified, destination: destination, protocol: .icmpv6,
               hopLimit: Self.ndpHopLimit, payloadLength: message.headerLength) { span in
            message.emit(into: &span, bodyLength: 0, source: .unspecified, destination: destination)
        }
    }

    private func markDuplicate(_ address: IPv6Address) {
        guard let index = ipv6.addresses.firstIndex(where: { $0.address == address }) else { return }
        ipv6.addresses[index].state = .duplicate
        ipv6.addresses[index].deadline = nil
        notices.append(.duplicateAddress("\(address)"))
        updateAcceptedGroups()
    }

    private func startRouterSolicitation() {
        routerSolicitationsLeft = configuration.ipv6Startup.routerSolicitations
        // RFC 4861 §6.3.7: a random delay of up to one second first.
        routerSolicitationDeadline = routerSolicitationsLeft > 0
            ? now + random.duration(in: .zero...(.seconds(1))) : nil
    }

    func pollRouterSolicitations() {
        guard let deadline = routerSolicitationDeadline, deadline <= now, routerSolicitationsLeft > 0,
              let source = ipv6.usableAddresses.first(where: \.isLinkLocal) else { return }
        let option = NDPOption.sourceLinkLayerAddress(mac)
        let message = ICMPv6Message.routerSolicitation
        sendIP(IPv6.self, source: source, destination: .allRouters, protocol: .icmpv6, hopLimit: Self.ndpHopLimit,
               payloadLength: message.headerLength + option.length) { span in
            span.withRegion(message.headerLength..<(message.headerLength + option.length)) { option.emit(into: &$0) }
            message.emit(into: &span, bodyLength: option.length, source: source, destination: .allRouters)
        }
        routerSolicitationsLeft -= 1
        routerSolicitationDeadline = routerSolicitationsLeft > 0
            ? now + configuration.ipv6Startup.routerSolicitationInterval : nil
    }

    /// Forgets routers and prefixes whose advertised lifetime is over.
    func expireRouterInformation() {
        if ipv6.routers.values.contains(where: { $0 <= now }) {
            ipv6.routers = ipv6.routers.filter { $0.value > now }
        }
        if ipv6.learnedPrefixes.values.contains(where: { $0 <= now }) {
            ipv6.learnedPrefixes = ipv6.learnedPrefixes.filter { $0.value > now }
        }
    }
}
