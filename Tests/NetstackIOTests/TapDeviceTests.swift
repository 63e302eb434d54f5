import Glibc
import NetstackCore
import NetstackIO
import NetstackTestSupport
import NetstackWire
import Testing

/// TAP tests run in a network namespace of their own (see
/// `inPrivateNetworkNamespace`), which vanishes with the test.
@Suite(.enabled(if: runningAsRoot, "TAP devices need root; run the tests as root (CI does)"))
struct TapDeviceTests {
    @Test func openConfigureAndClose() throws {
        let report = try inPrivateNetworkNamespace { () throws -> String in
            let tap = try TapDevice(name: "nstest0")
            #expect(tap.name == "nstest0")
            try tap.bringUp()
            #expect(try tap.mtu() == 1500)
            try tap.setMTU(9000)
            #expect(try tap.mtu() == 9000)
            let mac = MACAddress(0x02, 0, 0, 0, 0, 0x64)
            try tap.setKernelMAC(mac)
            #expect(try tap.kernelMAC() == mac)
            // Nothing has been sent to the stack side yet (IPv6 chatter may come
            // later, but never a frame we did not expect to be Ethernet).
            var buffer = [UInt8](repeating: 0, count: 2048)
            if let n = try buffer.withUnsafeMutableBytes({ try tap.read(into: $0) }) {
                #expect(n >= 14)
            }
            return tap.name
        }
        #expect(report == "nstest0")
    }

    @Test func writtenFramesReachTheKernel() throws {
        // A frame written to the TAP is received by the kernel side: an ARP
        // request for the kernel's own address gets a reply back on the TAP.
        try inPrivateNetworkNamespace {
            let tap = try TapDevice(name: "nstest1")
            let reply = try Self.askKernelForARP(tap, virtioHeader: false)
            #expect(reply?.senderHardwareAddress == Self.kernelMAC)
            #expect(reply?.senderProtocolAddress == IPv4Address(10, 77, 0, 100))
        }
    }

    @Test func offloadsAreNegotiatedWithAVirtioHeader() throws {
        try inPrivateNetworkNamespace {
            var report = TapOffloadReport()
            let tap = try TapDevice.openForStack(name: "nstest3", offloads: true, report: &report)
            #expect(report.refusal == nil && report.link == .virtio)
            #expect(report.accepted.isSuperset(of: [.checksum, .tso4, .tso6]))
            #expect(tap.options.virtioHeader)
            // Frames go both ways behind a 12-byte header.
            let reply = try Self.askKernelForARP(tap, virtioHeader: true)
            #expect(reply?.senderHardwareAddress == Self.kernelMAC)
        }
    }

    @Test func refusedOffloadsFallBackToPlainFrames() throws {
        try inPrivateNetworkNamespace {
            // A bit no kernel knows: TUNSETOFFLOAD answers EINVAL, as an old
            // kernel does for offloads it lacks.
            var report = TapOffloadReport()
            let tap = try TapDevice.openForStack(name: "nstest4", offloads: true,
                                                 preferences: [TapDevice.Offloads(rawValue: 1 << 30)], report: &report)
            #expect(report.refusal?.operation == .setOffload)
            #expect(report.link == .none && !tap.options.virtioHeader)
            #expect("\(report)".hasPrefix("refused by the kernel"))
            let reply = try Self.askKernelForARP(tap, virtioHeader: false)
            #expect(reply?.senderHardwareAddress == Self.kernelMAC, "the plain device works")
            var off = TapOffloadReport()
            let plain = try TapDevice.openForStack(name: "nstest5", offloads: false, report: &off)
            #expect(!plain.options.virtioHeader && off.link == .none && "\(off)" == "off (configured)")
        }
    }

    @Test func aPlainReaderResetsTheOffloadsOfAPersistentTap() throws {
        try inPrivateNetworkNamespace {
            try TestShell.run("ip tuntap add dev nstest6 mode tap")
            var report = TapOffloadReport()
            do {
                let offloaded = try TapDevice.openForStack(name: "nstest6", offloads: true, report: &report)
                #expect(offloaded.options.virtioHeader)
            }
            // The interface outlives the descriptor; a plain reader opens it.
            let tap = try TapDevice.openForStack(name: "nstest6", offloads: false, report: &report)
            try tap.bringUp()
            try TestShell.run("ip addr add 10.77.0.100/24 dev nstest6")
            try TestShell.run("ip neigh add 10.77.0.1 lladdr 02:00:00:00:00:01 dev nstest6")
            try TestShell.run("echo offload | socat -u - UDP4-SENDTO:10.77.0.1:9")
            var buffer = [UInt8](repeating: 0, count: 70_000)
            var checked = false
            for _ in 0..<200 where !checked {
                var fds = pollfd(fd: tap.fileDescriptor, events: Int16(POLLIN), revents: 0)
                _ = poll(&fds, 1, 10)
                while let n = try buffer.withUnsafeMutableBytes({ try tap.read(into: $0) }) {
                    let valid: Bool? = Array(buffer[..<n]).withSpan { bytes in
                        guard let frame = try? EthernetFrame(bytes), frame.etherType == .ipv4,
                              let ip = try? IPv4Packet(frame.payload), ip.protocol == .udp,
                              let udp = try? UDPDatagram(ip.payload) else { return nil }
                        return udp.isChecksumValid(source: ip.source, destination: ip.destination)
                    }
                    if let valid {
                        #expect(valid, "a complete checksum, not a partial one left for a virtio reader")
                        checked = true
                    }
                }
            }
            #expect(checked, "the datagram reached the TAP")
        }
    }

    static let kernelMAC = MACAddress(0x02, 0, 0, 0, 0, 0x64)

    /// Gives the kernel's side 10.77.0.100 and asks for it with ARP through
    /// `tap`; the reply, if one came within two seconds.
    static func askKernelForARP(_ tap: borrowing TapDevice, virtioHeader: Bool) throws -> ARPMessage? {
        try tap.setKernelMAC(kernelMAC)
        try tap.bringUp()
        try TestShell.run("ip addr add 10.77.0.100/24 dev \(tap.name)")
        let us = MACAddress(0x02, 0, 0, 0, 0, 0x01)
        var frame = [UInt8](repeating: 0, count: 42)
        frame.withMutableBytes(0..<14) {
            EthernetHeader(destination: .broadcast, source: us, etherType: .arp).emit(into: &$0)
        }
        frame.withMutableBytes(14..<42) {
            ARPMessage(operation: .request, senderHardwareAddress: us, senderProtocolAddress: IPv4Address(10, 77, 0, 1),
                       targetHardwareAddress: .zero, targetProtocolAddress: IPv4Address(10, 77, 0, 100))
                .emit(into: &$0)
        }
        let skip = virtioHeader ? VirtioNetHeader.length : 0
        if virtioHeader { frame = [UInt8](repeating: 0, count: skip) + frame }
        #expect(try frame.withUnsafeBytes { try tap.write($0) })
        var buffer = [UInt8](repeating: 0, count: 2048)
        for _ in 0..<200 {
            var fds = pollfd(fd: tap.fileDescriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&fds, 1, 10)
            while let n = try buffer.withUnsafeMutableBytes({ try tap.read(into: $0) }) {
                guard n > skip else { continue }
                let found: ARPMessage? = Array(buffer[skip..<n]).withSpan { bytes in
                    guard let d = try? Dissection(bytes), case .arp(let arp) = d.network,
                          arp.operation == .reply else { return nil }
                    return arp
                }
                if let found { return found }
            }
        }
        return nil
    }

    @Test func errorsNameTheInterfaceAndReason() throws {
        try inPrivateNetworkNamespace {
            #expect {
                _ = try TapDevice(name: "a-name-far-too-long-for-linux")
            } throws: { error in
                let text = "\(error)"
                return text.hasPrefix("a-name-far-too-long-for-linux: open /dev/net/tun:")
                    && text.contains("(interface names have at most 15 characters)")
            }
            let tap = try TapDevice(name: "nstest2")
            #expect(throws: TapError(interface: "nstest2", operation: .setMTU, code: EINVAL)) {
                try tap.setMTU(10)
            }
        }
    }

    @Test func permissionErrorReadsAsAdvice() {
        let error = TapError(interface: "tap0", operation: .open, code: EPERM)
        #expect(error.description == "tap0: open /dev/net/tun: operation not permitted (run as root or with CAP_NET_ADMIN)")
    }
}
