import NetstackWire

/// Multicast listener discovery for the groups the stack listens to (RFC
/// 3810, MLDv2, with RFC 3810 §8's MLDv1 compatibility): the solicited-node
/// group of every address. Switches that snoop MLD forward a group's
/// traffic only to ports that reported it, so without reports neighbour
/// solicitations may never reach the stack. All-nodes is never reported
/// (RFC 3810 §6).
struct MulticastListenerState {
    /// The groups reported as joined.
    var groups: Set<IPv6Address> = []
    /// State changes still to be sent (RFC 3810 §6.1): each record goes
    /// `robustness` times.
    var pendingChanges: [IPv6Address: (kind: MulticastAddressRecord.Kind, left: Int)] = [:]
    var changeDeadline: Instant?
    /// The answer to a general query (RFC 3810 §6.2's interface timer).
    var generalResponseDeadline: Instant?
    /// Answers to group-specific queries, with the sources asked about
    /// (empty: the whole group).
    var groupResponses: [IPv6Address: (deadline: Instant, sources: [IPv6Address])] = [:]
    /// Until then an MLDv1 querier is present and the stack speaks MLDv1
    /// (RFC 3810 §8.2.1).
    var version1Until: Instant?

    /// Asked on every turn of the engine: no allocation.
    var nextDeadline: Instant? {
        var deadline = earliest(changeDeadline, generalResponseDeadline)
        for response in groupResponses.values { deadline = earliest(deadline, response.deadline) }
        return deadline
    }
}

extension Stack {
    /// RFC 3810 §9: the robustness variable, query interval and query
    /// response interval (for the MLDv1 querier timeout), and the
    /// unsolicited report interval.
    static var mldQueryInterval: Duration { .seconds(125) }
    static var mldQueryResponseInterval: Duration { .seconds(10) }
    static var mldUnsolicitedReportInterval: Duration { .seconds(1) }
    static let mldReportsGroup = IPv6Address(0xff02, 0, 0, 0, 0, 0, 0, 0x16)

    /// The groups to report now: the solicited-node group of every address
    /// that is not a duplicate (tentative ones too, RFC 4862 §5.4.2).
    private var reportableGroups: Set<IPv6Address> {
        Set(ipv6.addresses.filter { $0.state != .duplicate }.map(\.address.solicitedNodeMulticast))
    }

    /// Queues state-change records for the groups joined or left since the
    /// last call (RFC 3810 §6.1): CHANGE_TO_EXCLUDE({}) to join, as an
    /// any-source listener does, CHANGE_TO_INCLUDE({}) to leave. The first
    /// report waits a random part of the unsolicited report interval, as
    /// RFC 4862 §5.4.2 asks before duplicate address detection.
    func updateMulticastListening() {
        guard configuration.ipv6Startup.mldRobustness > 0 else { return }
        let current = reportableGroups
        let joined = current.subtracting(mld.groups)
        let left = mld.groups.subtracting(current)
        guard !joined.isEmpty || !left.isEmpty else { return }
        mld.groups = current
        let robustness = configuration.ipv6Startup.mldRobustness
        for group in joined { mld.pendingChanges[group] = (.changeToExclude, robustness) }
        for group in left {
            mld.pendingChanges[group] = (.changeToInclude, robustness)
            mld.groupResponses[group] = nil
        }
        if mld.changeDeadline == nil {
            mld.changeDeadline = now + random.duration(in: .zero...Self.mldUnsolicitedReportInterval)
        }
    }

    /// Sends what is due: state changes, then answers to queries.
    func pollMulticastListening() {
        if let deadline = mld.changeDeadline, deadline <= now {
            var records: [MulticastAddressRecord] = []
            for (group, change) in mld.pendingChanges.sorted(by: { $0.key < $1.key }) {
                records.append(MulticastAddressRecord(change.kind, group: group))
                mld.pendingChanges[group] = change.left > 1 ? (change.kind, change.left - 1) : nil
            }
            sendListenerRecords(records)
            mld.changeDeadline = mld.pendingChanges.isEmpty
                ? nil : now + random.duration(in: .zero...Self.mldUnsolicitedReportInterval)
        }
        if let deadline = mld.generalResponseDeadline, deadline <= now {
            mld.generalResponseDeadline = nil
            sendListenerRecords(mld.groups.sorted().map { MulticastAddressRecord(.modeIsExclude, group: $0) })
        }
        guard !mld.groupResponses.isEmpty else { return }
        let due = mld.groupResponses.filter { $0.value.deadline <= now }
        guard !due.isEmpty else { return }
        var records: [MulticastAddressRecord] = []
        for (group, response) in due.sorted(by: { $0.key < $1.key }) {
            mld.groupResponses[group] = nil
            guard mld.groups.contains(group) else { continue }
            // Listening to every source (EXCLUDE {}): a group-and-source
            // query is answered with the sources asked about (RFC 3810 §6.3).
            records.append(response.sources.isEmpty ? MulticastAddressRecord(.modeIsExclude, group: group)
                           : MulticastAddressRecord(.modeIsInclude, group: group, sources: response.sources))
        }
        sendListenerRecords(records)
    }

    /// A query (RFC 3810 §5.1, §6.2; RFC 2710 §3.6 for MLDv1, told by its
    /// 24-byte length). Only a router on the link may ask: a link-local
    /// source and a hop limit of 1 (RFC 3810 §5.1.14), else it is dropped.
    /// The answer waits a random part of the maximum response delay, and an
    /// earlier pending general answer covers any group's.
    func receiveMulticastListenerQuery(_ datagram: IPDatagram<IPv6>, maximumResponseCode: UInt16,
                                       group: IPv6Address, body: RawSpan) {
        guard configuration.ipv6Startup.mldRobustness > 0 else { return counters.drop(.icmpIgnored) }
        // RFC 3810 §6.2: from a link-local address, with hop limit 1 and
        // the router alert option; otherwise dropped.
        guard datagram.source.isLinkLocal, datagram.hopLimit == 1, Self.hasMLDRouterAlert(datagram.packet) else {
            return counters.drop(.mldInvalid)
        }
        // RFC 3810 §8.1: 24 bytes is MLDv1, 28 or more MLDv2, else neither.
        let version1 = body.byteCount == 0
        guard version1 || body.byteCount >= 4 else { return counters.drop(.mldInvalid) }
        let delay: Duration
        var sources: [IPv6Address] = []
        if version1 {
            delay = .milliseconds(Int(maximumResponseCode))
            let robustness = configuration.ipv6Startup.mldRobustness
            mld.version1Until = now + Self.mldQueryInterval * robustness + Self.mldQueryResponseInterval
        } else {
            // RFC 3810 §5.1.3: below 32768 milliseconds; above, a float.
            let code = Int(maximumResponseCode)
            let milliseconds = code < 32_768 ? code : ((code & 0xfff) | 0x1000) << (((code >> 12) & 0x7) + 3)
            delay = .milliseconds(milliseconds)
            let count = Int(body.u8(2)) << 8 | Int(body.u8(3))
            guard body.byteCount >= 4 + 16 * count else { return counters.drop(.mldInvalid) }
            sources = (0..<count).map { IPv6Address(body, at: 4 + 16 * $0) }
        }
        counters.count(.mldQueriesReceived)
        let deadline = now + random.duration(in: .zero...delay)
        if group.isUnspecified {
            if mld.generalResponseDeadline.map({ $0 > deadline }) ?? true { mld.generalResponseDeadline = deadline }
            return
        }
        guard mld.groups.contains(group) else { return }
        if let general = mld.generalResponseDeadline, general <= deadline { return }
        if let pending = mld.groupResponses[group] {
            // RFC 3810 §6.2 rule 3/4: the earlier deadline; sources merge,
            // and a whole-group query makes the answer the whole group's.
            let merged = pending.sources.isEmpty || sources.isEmpty ? [] : Array(Set(pending.sources + sources)).sorted()
            mld.groupResponses[group] = (min(pending.deadline, deadline), merged)
        } else {
            mld.groupResponses[group] = (deadline, sources)
        }
    }

    /// Sends `records` in MLDv2 reports to ff02::16 (as many as the MTU
    /// needs), or, while an MLDv1 querier is present, as MLDv1 reports and
    /// dones (RFC 3810 §8.2.2: no source lists then).
    private func sendListenerRecords(_ records: [MulticastAddressRecord]) {
        guard !records.isEmpty else { return }
        if let until = mld.version1Until, until > now {
            for record in records {
                let leaving = record.kind == .changeToInclude || (record.kind == .modeIsInclude && record.sources.isEmpty)
                let message: ICMPv6Message = leaving ? .multicastListenerDone(group: record.group)
                    : .multicastListenerReport(group: record.group)
                sendListenerMessage(message, to: leaving ? .allRouters : record.group, bodyLength: 0) { _ in }
            }
            return
        }
        mld.version1Until = nil
        // After the IPv6 header: the hop-by-hop header and the report's own
        // 8 bytes, then the records.
        let room = ipv6.linkMTU - IPv6.headerLength - 8 - 8
        var batch: [MulticastAddressRecord] = []
        var length = 0
        func flush() {
            guard !batch.isEmpty else { return }
            let records = batch
            sendListenerMessage(.multicastListenerReportV2(recordCount: UInt16(records.count)),
                                to: Self.mldReportsGroup, bodyLength: length) { span in
                var offset = 0
                for record in records {
                    record.emit(into: &span, at: offset)
                    offset += record.length
                }
            }
            batch.removeAll()
            length = 0
        }
        for record in records {
            if length + record.length > room { flush() }
            batch.append(record)
            length += record.length
        }
        flush()
    }

    /// One MLD message: hop limit 1, a hop-by-hop header with the router
    /// alert option (RFC 2711, value 0: MLD), from the link-local address, or
    /// from :: while there is none yet (RFC 3810 §5.2.13).
    /// Whether `packet` (an IPv6 packet from its header) starts its chain
    /// with a hop-by-hop header holding a router alert for MLD (RFC 2711,
    /// value 0).
    static func hasMLDRouterAlert(_ packet: RawSpan) -> Bool {
        guard packet.byteCount > IPv6Packet.headerLength,
              IPProtocol(rawValue: packet.u8(6)) == .hopByHopOptions,
              let header = try? IPv6ExtensionHeader(.hopByHopOptions, packet.extracting(IPv6Packet.headerLength...))
        else { return false }
        var alerts: [Int] = []
        try? header.forEachOption { option in
            if option.type == IPv6Option.routerAlert && option.dataLength == 2 { alerts.append(option.offset) }
        }
        return alerts.contains { header.bytes.u8($0 + 2) == 0 && header.bytes.u8($0 + 3) == 0 }
    }

    private func sendListenerMessage(_ message: ICMPv6Message, to destination: IPv6Address, bodyLength: Int,
                                     body: (inout MutableRawSpan) -> Void) {
        let source = ipv6.usableAddresses.first(where: \.isLinkLocal) ?? .unspecified
        let icmpLength = message.headerLength + bodyLength
        let sent = sendIP(IPv6.self, source: source, destination: destination, protocol: .hopByHopOptions,
                          hopLimit: 1, payloadLength: 8 + icmpLength) { span in
            // Next header ICMPv6, length 0 (8 bytes), router alert, PadN.
            let hopByHop: [UInt8] = [IPProtocol.icmpv6.rawValue, 0, 5, 2, 0, 0, 1, 0]
            hopByHop.withSpan { span.copy($0, to: 0) }
            span.withRegion(8..<(8 + icmpLength)) { icmp in
                icmp.withRegion(message.headerLength..<icmpLength) { body(&$0) }
                message.emit(into: &icmp, bodyLength: bodyLength, source: source, destination: destination)
            }
        }
        if sent { counters.count(.mldReportsSent) }
    }
}
