import CMallocCounter
import NetstackCore
import NetstackWire

/// The core in memory: how fast it answers, and whether it allocates per frame.
///
/// A host's frames are built once; each measurement feeds them to a `Stack`
/// (after a warm-up that fills its pools and caches) and drains what it sends,
/// counting frames, time and heap allocations.
enum CoreBenchmark {
    struct Result {
        var name: String
        var frames: Int
        var bytes: Int
        var seconds: Double
        var allocations: Int
        var framesPerSecond: Double { Double(frames) / seconds }
        var gigabitsPerSecond: Double { Double(bytes) * 8 / seconds / 1e9 }
        var allocationsPerFrame: Double { Double(allocations) / Double(frames) }
    }

    static let hostMAC = MACAddress(2, 0, 0, 0, 0, 0x64)
    static let hostIPv4 = IPv4Address(192, 168, 69, 100)
    static let hostIPv6 = IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100)
    static let stack4 = IPv4Address(192, 168, 69, 1)
    static let stack6 = IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 1)

    static func run(minimumSeconds: Double) -> [Result] {
        var results: [Result] = []
        results.append(measure("echo v4 64B", frames: [echo4(dataLength: 56, sequence: 1)], minimumSeconds))
        results.append(measure("echo v6 64B", frames: [echo6(dataLength: 56)], minimumSeconds))
        results.append(measure("echo v4 1472B", frames: [echo4(dataLength: 1472, sequence: 1)], minimumSeconds))
        results.append(measure("echo v4 8000B fragmented", frames: fragments4(dataLength: 8000, id: 9),
                               minimumSeconds))
        let flood = (0..<10_000).map { firstFragment4(id: UInt16(truncatingIfNeeded: $0)) }
        results.append(measure("incomplete-fragment flood", frames: flood, minimumSeconds))
        return results
    }

    /// Feeds `frames` to a stack over and over, draining its output each time.
    static func measure(_ name: String, frames: [[UInt8]], _ minimumSeconds: Double) -> Result {
        var configuration = StackConfiguration.standard
        configuration.gratuitousARPCount = 0
        configuration.ipv6Startup.dadTransmits = 0
        configuration.ipv6Startup.routerSolicitations = 0
        configuration.ipv6Startup.mldRobustness = 0
        let stack = Stack(configuration: configuration, now: .zero, seed: 7)
        var now = Instant.zero
        // Resolve the host both ways, so replies go out at once.
        for frame in [arpRequest(), neighborSolicitation()] {
            frame.withUnsafeBytes { stack.receive(frame: RawSpan(_unsafeBytes: $0), now: now) }
        }
        var sink = 0
        func round() -> Int {
            var bytes = 0
            for frame in frames {
                now = now + .microseconds(1)
                frame.withUnsafeBytes { stack.receive(frame: RawSpan(_unsafeBytes: $0), now: now) }
                bytes += frame.count
            }
            stack.transmit { frame in
                sink &+= frame.count
                return true
            }
            return bytes
        }
        for _ in 0..<3 { _ = round() }
        let clock = ContinuousClock()
        let allocationsBefore = Int(malloc_counter_allocations())
        let start = clock.now
        var rounds = 0
        var bytes = 0
        repeat {
            bytes += round()
            rounds += 1
        } while (clock.now - start) < .seconds(minimumSeconds)
        let elapsed = clock.now - start
        let allocations = Int(malloc_counter_allocations()) - allocationsBefore
        blackHole(sink)
        return Result(name: name, frames: frames.count * rounds, bytes: bytes, seconds: elapsed.seconds,
                      allocations: allocations)
    }

    // MARK: Frames

    static func frame(_ type: EtherType, _ destination: MACAddress, _ payload: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 14) + payload
        bytes.withMutableBytes { EthernetHeader(destination: destination, source: hostMAC, etherType: type).emit(into: &$0) }
        return bytes
    }

    static func arpRequest() -> [UInt8] {
        var body = [UInt8](repeating: 0, count: 28)
        body.withMutableBytes {
            ARPMessage(operation: .request, senderHardwareAddress: hostMAC, senderProtocolAddress: hostIPv4,
                       targetHardwareAddress: .zero, targetProtocolAddress: stack4).emit(into: &$0)
        }
        return frame(.arp, .broadcast, body)
    }

    static func ipv4(_ proto: IPProtocol, _ payload: [UInt8], id: UInt16 = 1, offset: Int = 0,
                     more: Bool = false) -> [UInt8] {
        var header = IPv4Header(protocol: proto, source: hostIPv4, destination: stack4,
                                payloadLength: payload.count, identification: id)
        header.fragmentOffset = offset
        header.moreFragments = more
        var packet = [UInt8](repeating: 0, count: 20) + payload
        packet.withMutableBytes { header.emit(into: &$0) }
        return frame(.ipv4, MACAddress(2, 0, 0, 0, 0, 1), packet)
    }

    static func icmp4(dataLength: Int, sequence: UInt16) -> [UInt8] {
        let message = ICMPv4Message.echoRequest(identifier: 1, sequence: sequence)
        var bytes = [UInt8](repeating: 0, count: 8) + (0..<dataLength).map { UInt8(truncatingIfNeeded: $0) }
        bytes.withMutableBytes { message.emit(into: &$0, bodyLength: dataLength) }
        return bytes
    }

    static func echo4(dataLength: Int, sequence: UInt16) -> [UInt8] {
        ipv4(.icmp, icmp4(dataLength: dataLength, sequence: sequence))
    }

    static func fragments4(dataLength: Int, id: UInt16) -> [[UInt8]] {
        let payload = icmp4(dataLength: dataLength, sequence: 1)
        return stride(from: 0, to: payload.count, by: 1480).map { offset in
            let end = min(offset + 1480, payload.count)
            return ipv4(.icmp, Array(payload[offset..<end]), id: id, offset: offset, more: end < payload.count)
        }
    }

    static func firstFragment4(id: UInt16) -> [UInt8] {
        ipv4(.udp, [UInt8](repeating: 0xab, count: 1480), id: id, offset: 0, more: true)
    }

    static func ipv6(_ payload: [UInt8], destination: IPv6Address = stack6) -> [UInt8] {
        var packet = [UInt8](repeating: 0, count: 40) + payload
        packet.withMutableBytes {
            IPv6Header(nextHeader: .icmpv6, source: hostIPv6, destination: destination, payloadLength: payload.count,
                       hopLimit: destination.isMulticast ? 255 : 64).emit(into: &$0)
        }
        let mac = destination.isMulticast ? MACAddress(ipv6Multicast: destination) : MACAddress(2, 0, 0, 0, 0, 1)
        return frame(.ipv6, mac, packet)
    }

    static func echo6(dataLength: Int) -> [UInt8] {
        let message = ICMPv6Message.echoRequest(identifier: 1, sequence: 1)
        var bytes = [UInt8](repeating: 0, count: 8) + (0..<dataLength).map { UInt8(truncatingIfNeeded: $0) }
        bytes.withMutableBytes { message.emit(into: &$0, bodyLength: dataLength, source: hostIPv6, destination: stack6) }
        return ipv6(bytes)
    }

    static func neighborSolicitation() -> [UInt8] {
        let message = ICMPv6Message.neighborSolicitation(target: stack6)
        let option = NDPOption.sourceLinkLayerAddress(hostMAC)
        var bytes = [UInt8](repeating: 0, count: 32)
        bytes.withMutableBytes { span in
            span.withRegion(24..<32) { option.emit(into: &$0) }
            message.emit(into: &span, bodyLength: 8, source: hostIPv6, destination: stack6.solicitedNodeMulticast)
        }
        return ipv6(bytes, destination: stack6.solicitedNodeMulticast)
    }
}
