import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

/// MLDv2 (RFC 3810) for the solicited-node groups the stack listens to:
/// reports on start and on change, answers to queries, MLDv1 when a v1
/// querier is present.
@Suite struct MLDTests {
    let host = HostFrames()
    static let router = IPv6Address(0xfe80, 0, 0, 0, 0, 0, 0, 0xff)
    static let reports = IPv6Address(0xff02, 0, 0, 0, 0, 0, 0, 0x16)
    /// fe80::ff:fe00:1 and fdaa::1 share this one; fdaa::2:3 has its own.
    static let firstGroup = IPv6Address(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x0001)
    static let secondGroup = IPv6Address(0xff02, 0, 0, 0, 0, 1, 0xff02, 0x0003)

    struct Report {
        var source: IPv6Address
        var destination: IPv6Address
        var hopLimit: UInt8
        var routerAlert: Bool
        var message: ICMPv6Message
        var records: [MulticastAddressRecord]
    }

    func driver(robustness: Int = 2) -> StackDriver {
        var configuration = StackConfiguration.standard
        configuration.ipv6Addresses.append(InterfaceAddress(IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 2, 3), prefixLength: 64))
        configuration.ipv6Startup.mldRobustness = robustness
        configuration.ipv6Startup.routerSolicitations = 0
        configuration.gratuitousARPCount = 0
        return StackDriver(configuration)
    }

    /// The MLD messages among the frames sent since the last call.
    func takeReports(_ driver: StackDriver) -> [Report] {
        let frames = driver.sent
        _ = driver.takeSent()
        return frames.compactMap { frame -> Report? in
            guard let dissection = try? frame.withSpan({ try Dissection($0) }),
                  case .ipv6(let ip, let extensions) = dissection.network,
                  case .icmpv6(let message) = dissection.transport else { return nil }
            var records: [MulticastAddressRecord] = []
            switch message {
            case .multicastListenerReportV2(let count):
                records = (try? Array(frame[dissection.payload]).withSpan {
                    try MulticastAddressRecord.parse($0, count: Int(count))
                }) ?? []
            case .multicastListenerReport, .multicastListenerDone: break
            default: return nil
            }
            let alert = extensions.first?.kind == .hopByHopOptions && extensions.first?.bytes.prefix(6) == [58, 0, 5, 2, 0, 0]
            return Report(source: ip.source, destination: ip.destination, hopLimit: ip.hopLimit,
                          routerAlert: alert, message: message, records: records)
        }
    }

    func query(group: IPv6Address = .unspecified, maximumResponse: UInt16 = 1000, version1: Bool = false,
               source: IPv6Address = MLDTests.router, hopLimit: UInt8 = 1, sources: [IPv6Address] = [],
               routerAlert: Bool = true) -> [UInt8] {
        var body: [UInt8] = []
        if !version1 {
            body = [2, 125, UInt8(sources.count >> 8), UInt8(sources.count & 0xff)]
            for address in sources {
                var bytes = [UInt8](repeating: 0, count: 16)
                bytes.withMutableBytes { address.write(to: &$0, at: 0) }
                body += bytes
            }
        }
        let destination = group.isUnspecified ? IPv6Address.allNodes : group
        let message = ICMPv6Message.multicastListenerQuery(maximumResponseCode: maximumResponse, group: group)
        let icmp = HostFrames.icmpv6(message, body: body, source: source, destination: destination)
        // Hop-by-hop: router alert for MLD (value 0), or only padding.
        let options: [UInt8] = routerAlert ? [5, 2, 0, 0, 1, 0] : [1, 4, 0, 0, 0, 0]
        return host.ipv6Packet(.hopByHopOptions, icmp, extensionHeaders: [58, 0] + options, source: source,
                               destination: destination, hopLimit: hopLimit)
    }

    @Test func joiningIsReportedTwiceOnStart() {
        let driver = driver()
        driver.advance(by: .seconds(3))
        let reports = takeReports(driver)
        #expect(reports.count == 2, "robustness 2: each change twice")
        for report in reports {
            #expect(report.destination == Self.reports && report.hopLimit == 1 && report.routerAlert)
            #expect(Set(report.records) == [MulticastAddressRecord(.changeToExclude, group: Self.firstGroup),
                                            MulticastAddressRecord(.changeToExclude, group: Self.secondGroup)])
        }
        // The first goes while the link-local address is still tentative:
        // from :: (RFC 3810 §5.2.13).
        #expect(reports.first?.source == .unspecified || reports.first?.source.isLinkLocal == true)
        #expect(driver.stack.counters[.mldReportsSent] == 2)
    }

    @Test func queriesAreAnsweredWithinTheirDelay() {
        let driver = driver()
        driver.advance(by: .seconds(5))
        _ = takeReports(driver)
        // A general query: one report of every group, within 1 s.
        driver.receive(query())
        driver.advance(by: .seconds(1))
        var reports = takeReports(driver)
        #expect(reports.count == 1)
        #expect(reports.first?.source == .linkLocal(eui64: host.stackMAC))
        #expect(Set(reports.first?.records ?? []) == [MulticastAddressRecord(.modeIsExclude, group: Self.firstGroup),
                                                      MulticastAddressRecord(.modeIsExclude, group: Self.secondGroup)])
        // A group-specific query: that group only; a group not joined: nothing.
        driver.receive(query(group: Self.secondGroup))
        driver.receive(query(group: IPv6Address(0xff02, 0, 0, 0, 0, 1, 0xff09, 0x0009)))
        driver.advance(by: .seconds(1))
        reports = takeReports(driver)
        #expect(reports.map(\.records) == [[MulticastAddressRecord(.modeIsExclude, group: Self.secondGroup)]])
        // Group and source: the sources asked about are listened to.
        let source = IPv6Address(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)
        driver.receive(query(group: Self.firstGroup, sources: [source]))
        driver.advance(by: .seconds(1))
        reports = takeReports(driver)
        #expect(reports.map(\.records) == [[MulticastAddressRecord(.modeIsInclude, group: Self.firstGroup,
                                                                   sources: [source])]])
        // The query to a group the stack is not in never reached MLD: the
        // interface does not take that group's packets.
        #expect(driver.stack.counters[.mldQueriesReceived] == 3)
    }

    @Test func onlyARouterOnTheLinkMayAsk() {
        let driver = driver()
        driver.advance(by: .seconds(5))
        _ = takeReports(driver)
        driver.receive(query(source: IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100)))
        driver.receive(query(hopLimit: 64))
        // RFC 3810 §6.2: a query without the router alert option is dropped.
        driver.receive(query(routerAlert: false))
        driver.receive(query(version1: true, routerAlert: false))
        driver.advance(by: .seconds(2))
        #expect(takeReports(driver).isEmpty)
        #expect(driver.stack.counters[.mldInvalid] == 4)
    }

    @Test func anMLDv1QuerierGetsMLDv1Reports() {
        let driver = driver()
        driver.advance(by: .seconds(5))
        _ = takeReports(driver)
        driver.receive(query(version1: true))
        driver.advance(by: .seconds(1))
        let reports = takeReports(driver)
        #expect(Set(reports.map(\.message)) == [.multicastListenerReport(group: Self.firstGroup),
                                                .multicastListenerReport(group: Self.secondGroup)])
        #expect(reports.allSatisfy { $0.destination == ($0.message == .multicastListenerReport(group: Self.firstGroup)
                                                            ? Self.firstGroup : Self.secondGroup) })
    }

    @Test func aDuplicateAddressLeavesItsGroup() {
        let driver = driver()
        driver.advance(by: .milliseconds(10))
        // The host already has fdaa::2:3 (RFC 4862 §5.4.4).
        let duplicate = IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 2, 3)
        driver.receive(host.neighborAdvertisement(target: duplicate, solicited: false, to: .allNodes))
        driver.advance(by: .seconds(5))
        let records = takeReports(driver).flatMap(\.records)
        #expect(records.contains(MulticastAddressRecord(.changeToInclude, group: Self.secondGroup)))
        #expect(records.last { $0.group == Self.firstGroup }?.kind == .changeToExclude)
    }

    @Test func robustnessZeroSendsNothing() {
        let driver = driver(robustness: 0)
        driver.advance(by: .seconds(5))
        driver.receive(query())
        driver.advance(by: .seconds(2))
        #expect(takeReports(driver).isEmpty)
    }
}
