import Glibc
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
            let kernelMAC = MACAddress(0x02, 0, 0, 0, 0, 0x64)
            try tap.setKernelMAC(kernelMAC)
            try tap.bringUp()
            try TestShell.run("ip addr add 10.77.0.100/24 dev nstest1")
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
            #expect(try frame.withUnsafeBytes { try tap.write($0) })
            var reply: ARPMessage?
            var buffer = [UInt8](repeating: 0, count: 2048)
            for _ in 0..<200 where reply == nil {
                var fds = pollfd(fd: tap.fileDescriptor, events: Int16(POLLIN), revents: 0)
                _ = poll(&fds, 1, 10)
                while let n = try buffer.withUnsafeMutableBytes({ try tap.read(into: $0) }) {
                    let found: ARPMessage? = Array(buffer[..<n]).withSpan { bytes in
                        guard let d = try? Dissection(bytes), case .arp(let arp) = d.network,
                              arp.operation == .reply else { return nil }
                        return arp
                    }
                    if let found { reply = found }
                }
            }
            #expect(reply?.senderHardwareAddress == kernelMAC)
            #expect(reply?.senderProtocolAddress == IPv4Address(10, 77, 0, 100))
        }
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
