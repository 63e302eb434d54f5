import NetstackWire
import Testing

@Suite struct AddressTests {
    @Test func macTextRoundTrip() {
        let mac = MACAddress("02:00:00:00:00:01")
        #expect(mac == MACAddress(2, 0, 0, 0, 0, 1))
        #expect(mac?.description == "02:00:00:00:00:01")
        #expect(MACAddress("02-0A-00-00-00-FF")?.description == "02:0a:00:00:00:ff")
        #expect(MACAddress.broadcast.isBroadcast && MACAddress.broadcast.isMulticast)
        for bad in ["", "02:00:00:00:00", "02:00:00:00:00:01:02", "002:00:00:00:00:01", "zz:00:00:00:00:01"] {
            #expect(MACAddress(bad) == nil, "\(bad)")
        }
    }

    @Test func ipv4TextRoundTrip() {
        #expect(IPv4Address("192.168.69.1") == IPv4Address(192, 168, 69, 1))
        #expect(IPv4Address(192, 168, 69, 1).description == "192.168.69.1")
        for bad in ["300.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1..2.3", "", "a.b.c.d", "1.2.3.-4", " 1.2.3.4"] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
        #expect(IPv4Address("224.0.0.1")!.isMulticast)
        #expect(IPv4Address("255.255.255.255")!.isBroadcast)
    }

    @Test(arguments: [
        ("fdaa::1", "fdaa::1"),
        ("2001:DB8:0:0:0:0:2:1", "2001:db8::2:1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"), // RFC 5952 §4.2.2: one zero group stays
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),          // §4.2.3: the longest run
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),    // first of equal runs
        ("::", "::"),
        ("::1", "::1"),
        ("fe80::ff:fe00:1", "fe80::ff:fe00:1"),
        ("::ffff:192.168.69.1", "::ffff:c0a8:4501"),
        ("ff02::1:ff00:1", "ff02::1:ff00:1"),
    ] as [(String, String)])
    func ipv6Canonical(input: String, canonical: String) {
        #expect(IPv6Address(input)?.description == canonical)
        #expect(IPv6Address(canonical) == IPv6Address(input))
    }

    @Test func ipv6Rejects() {
        for bad in ["", ":", ":::", "1::2::3", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "12345::", "g::1",
                    "1:2:3:4:5:6:7::8", "::1.2.3"] {
            #expect(IPv6Address(bad) == nil, "\(bad)")
        }
    }

    @Test func ipv6DerivedAddresses() {
        let mac = MACAddress(0x02, 0, 0, 0, 0, 0x01)
        // The fixtures' link-local address for this MAC.
        #expect(IPv6Address.linkLocal(eui64: mac) == IPv6Address("fe80::ff:fe00:1"))
        #expect(IPv6Address("fdaa::1")!.solicitedNodeMulticast == IPv6Address("ff02::1:ff00:1"))
        #expect(MACAddress(ipv6Multicast: IPv6Address("ff02::1:ff00:1")!) == MACAddress("33:33:ff:00:00:01"))
        #expect(IPv6Address("fe80::1")!.isLinkLocal && !IPv6Address("fdaa::1")!.isLinkLocal)
        #expect(IPv6Address.allNodes.isMulticast && IPv6Address.allNodes.multicastScope == 2)
    }
}
