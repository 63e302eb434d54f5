import NetstackCore
import NetstackTestSupport
import NetstackWire
import Testing

@Suite struct IPv6StartupTests {
    let host = HostFrames()

    func startingConfiguration() -> StackConfiguration {
        var configuration = StackConfiguration.standard
        configuration.ipv6Startup.dadTransmits = 1
        return configuration
    }

    @Test func addressesAreTentativeUntilDetectionEnds() {
        let driver = StackDriver(startingConfiguration())
        #expect(driver.stack.ipv6Addresses.allSatisfy { $0.state == .tentative })
        #expect(!driver.stack.addressesSettled)
        // Pings to a tentative address go unanswered (RFC 4862 §5.4).
        driver.receive(host.echoRequest6())
        #expect(driver.stack.counters[.tentativeDestination] == 1)

        driver.advance(by: .seconds(1))
        let probes = driver.takeSent().compactMap { d -> (IPv6Address, IPv6Header)? in
            guard case .icmpv6(.neighborSolicitation(let target)) = d.transport,
                  case .ipv6(let ip, _) = d.network else { return nil }
            return (target, ip)
        }
        #expect(Set(probes.map(\.0)) == [host.stackIPv6, .linkLocal(eui64: host.stackMAC)])
        #expect(probes.allSatisfy { $0.1.source.isUnspecified && $0.1.hopLimit == 255 })
        #expect(probes.allSatisfy { $0.1.destination == $0.0.solicitedNodeMulticast })

        driver.advance(by: .seconds(1))
        #expect(driver.stack.addressesSettled)
        #expect(driver.stack.ipv6Addresses.allSatisfy { $0.state == .preferred })
        let notices = driver.stack.takeNotices()
        #expect(notices.contains(.addressPreferred("fdaa::1")))
        #expect(notices.contains(.addressPreferred("fe80::ff:fe00:1")))

        // With the link-local address ready, router solicitations start (RFC 4861 §6.3.7).
        driver.advance(by: .seconds(10))
        let solicitations = driver.takeSent().filter {
            if case .icmpv6(.routerSolicitation) = $0.transport { return true } else { return false }
        }
        #expect(solicitations.count == 3)
        driver.receive(host.echoRequest6())
        #expect(driver.takeSent().count == 1, "a neighbour solicitation for the host")
    }

    @Test func startAnnouncesIPv4AddressesTwice() {
        let driver = StackDriver(startingConfiguration())
        driver.advance(by: .seconds(3))
        let announcements = driver.takeSent().compactMap { d -> ARPMessage? in
            if case .arp(let arp) = d.network { return arp } else { return nil }
        }
        #expect(announcements.count == 2)
        #expect(announcements.allSatisfy {
            $0.senderProtocolAddress == host.stackIPv4 && $0.targetProtocolAddress == host.stackIPv4
        })
    }

    @Test func advertisementForTentativeAddressMeansDuplicate() {
        let driver = StackDriver(startingConfiguration())
        driver.advance(by: .milliseconds(1))
        driver.receive(host.neighborAdvertisement(target: host.stackIPv6, solicited: false, to: .allNodes))
        #expect(driver.stack.ipv6Addresses.first { $0.address == host.stackIPv6 }?.state == .duplicate)
        #expect(driver.stack.takeNotices().contains(.duplicateAddress("fdaa::1")))
        driver.advance(by: .seconds(3))
        #expect(driver.stack.ipv6Addresses.first { $0.address == host.stackIPv6 }?.state == .duplicate)
    }

    @Test func concurrentProbeForTentativeAddressMeansDuplicate() {
        let driver = StackDriver(startingConfiguration())
        driver.receive(host.neighborSolicitation(for: host.stackIPv6, fromUnspecified: true))
        #expect(driver.stack.ipv6Addresses.first { $0.address == host.stackIPv6 }?.state == .duplicate)
    }

    @Test func probeForOurPreferredAddressIsAnsweredToAllNodes() {
        let driver = StackDriver()
        driver.receive(host.neighborSolicitation(for: host.stackIPv6, fromUnspecified: true))
        let sent = driver.takeSent()
        guard case .icmpv6(.neighborAdvertisement(_, let solicited, _, let target))? = sent.first?.transport,
              case .ipv6(let ip, _)? = sent.first?.network else {
            Issue.record("expected an advertisement, got \(sent)"); return
        }
        #expect(target == host.stackIPv6 && !solicited && ip.destination == .allNodes)
    }

    /// RFC 4861 §6.3.4: a router advertisement gives a default router, an
    /// on-link prefix and the link MTU.
    @Test func routerAdvertisementIsApplied() {
        var configuration = FixtureReplay.replayConfiguration
        configuration.ipv6Gateway = nil
        let driver = StackDriver(configuration)
        let remote = IPv6Address("2001:db8::5")!
        // Before: no route to an off-link address.
        driver.receive(host.echoRequest6(source: remote))
        #expect(driver.stack.counters[.noRoute] == 1)

        let prefix = NDPPrefixInformation(prefix: IPv6Address("2001:db9::")!, prefixLength: 64, onLink: true,
                                          autonomous: true, validLifetime: 600, preferredLifetime: 300)
        driver.receive(host.routerAdvertisement(lifetime: 1800, options: [
            .sourceLinkLayerAddress(host.mac), .mtu(1400), .prefixInformation(prefix),
        ]))
        #expect(driver.stack.counters[.routerAdvertisementsReceived] == 1)
        #expect(driver.stack.ipv6Neighbors.contains { $0.address == host.linkLocal && $0.isRouter })
        #expect(driver.stack.takeNotices().contains(.routerLearned("\(host.linkLocal)")))

        // After: through the router, and big replies are cut at the advertised MTU.
        driver.receive(host.echoRequest6(data: Array(repeating: 9, count: 1500), source: remote))
        let sent = driver.takeSent()
        #expect(sent.count == 2, "fragmented at 1400")
        #expect(sent.allSatisfy { $0.ethernet.destination == host.mac })
        #expect(sent.allSatisfy {
            if case .ipv6(let ip, _) = $0.network { return 40 + ip.payloadLength <= 1400 } else { return false }
        })
        // An address in the advertised prefix is on-link: resolved directly.
        driver.receive(host.echoRequest6(source: IPv6Address("2001:db9::7")!))
        guard case .icmpv6(.neighborSolicitation(let target))? = driver.takeSent().first?.transport else {
            Issue.record("expected resolution of the on-link address"); return
        }
        #expect(target == IPv6Address("2001:db9::7"))
    }
}
