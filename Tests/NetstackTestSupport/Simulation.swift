import DequeModule
import HeapModule
import NetstackCore
import NetstackWire

/// What the simulated link does to frames, each direction independently.
public struct LinkFaults: Sendable, CustomStringConvertible {
    /// Probability that a frame is lost.
    public var loss = 0.0
    /// Probability that a frame is held back (by up to `reorderDelay` more).
    public var reorder = 0.0
    public var reorderDelay: Duration = .milliseconds(3)
    /// Probability that a frame arrives twice.
    public var duplicate = 0.0
    /// Probability that one byte of a frame is flipped.
    public var corrupt = 0.0
    /// One-way propagation delay.
    public var delay: Duration = .milliseconds(1)
    /// Link rate; frames queue behind each other at this rate.
    public var bitsPerSecond = 200_000_000.0
    /// Frames that may wait for the link; more are dropped (a drop-tail queue).
    public var queueLimit = 200
    /// An AQM that marks rather than drops: an ECN-capable frame that finds
    /// more than this many waiting is marked CE (RFC 3168 §5); nil: none.
    public var markCongestionAbove: Int?
    /// A router on the way to the right stack whose next link takes IP
    /// packets of at most this size: a larger one (with DF, for IPv4) is
    /// dropped and answered to the left with ICMP "fragmentation needed" or
    /// "packet too big" naming this MTU (RFC 1191 §4, RFC 4443 §3.2); nil: none.
    public var routerMTU: Int?

    public init(loss: Double = 0, reorder: Double = 0, duplicate: Double = 0, corrupt: Double = 0) {
        self.loss = loss
        self.reorder = reorder
        self.duplicate = duplicate
        self.corrupt = corrupt
    }

    public var description: String {
        "loss \(loss * 100)% reorder \(reorder * 100)% duplicate \(duplicate * 100)% corrupt \(corrupt * 100)%"
    }
}

/// Two stacks joined by a simulated link, on a virtual clock: fully
/// deterministic for a given seed. Time jumps from event to event (a frame
/// arriving, a stack timer), so seconds of simulated time take milliseconds.
public final class Simulation {
    public let left: Stack
    public let right: Stack
    public private(set) var now = Instant.zero
    public let faults: LinkFaults
    private var rng: SplitMix64
    private var inFlight = Heap<Arrival>()
    private var sequence = 0
    /// When each direction's link is next free, and when the frames queued
    /// for it leave (to know how many wait).
    private var linkFree: [Bool: Instant] = [true: .zero, false: .zero]
    private var departures: [Bool: Deque<Instant>] = [true: [], false: []]
    /// Everything sent is lost (a path gone dark), or everything sent to the left.
    public var dropAll = false
    public var dropToLeft = false
    public private(set) var framesLost = 0
    public private(set) var framesDuplicated = 0
    public private(set) var framesCorrupted = 0
    public private(set) var framesQueueDropped = 0
    public private(set) var framesMarked = 0
    /// Frames the router of `LinkFaults.routerMTU` refused.
    public private(set) var framesTooBig = 0
    /// A stack whose `offloads` has a virtio header sees the link as a TAP:
    /// its large segments are cut and its partial checksums finished on the
    /// way out, and segments arriving within `mergeWindow` of each other are
    /// merged for it (`VirtioLink`).
    public var mergeWindow: Duration = .microseconds(50)
    /// Frames a virtio stack sent that stood for several segments, and
    /// frames delivered to one that were merged from several.
    public private(set) var segmentedFramesSent = 0
    public private(set) var mergedFramesDelivered = 0

    struct Arrival: Comparable {
        var time: Instant
        var sequence: Int
        var toRight: Bool
        var frame: [UInt8]
        static func < (a: Arrival, b: Arrival) -> Bool { (a.time, a.sequence) < (b.time, b.sequence) }
        static func == (a: Arrival, b: Arrival) -> Bool { a.sequence == b.sequence }
    }

    public init(left: StackConfiguration, right: StackConfiguration, faults: LinkFaults, seed: UInt64) {
        self.left = Stack(configuration: left, now: .zero, seed: seed)
        self.right = Stack(configuration: right, now: .zero, seed: seed &+ 1)
        self.faults = faults
        rng = SplitMix64(seed: seed &* 7919)
    }

    /// The fixtures' two sides as two stacks: `left` is 192.168.69.1/fdaa::1,
    /// `right` 192.168.69.100/fdaa::100; no start-up chatter. `configure`
    /// changes both configurations, `right` the right one's alone.
    public convenience init(faults: LinkFaults, seed: UInt64, configure: (inout StackConfiguration) -> Void = { _ in },
                            right configureRight: (inout StackConfiguration) -> Void = { _ in }) {
        var left = FixtureReplay.replayConfiguration
        var right = StackConfiguration(mac: MACAddress(2, 0, 0, 0, 0, 0x64))
        right.ipv4Addresses = [InterfaceAddress(IPv4Address(192, 168, 69, 100), prefixLength: 24)]
        right.ipv6Addresses = [InterfaceAddress(IPv6Address(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100), prefixLength: 64)]
        right.gratuitousARPCount = 0
        right.ipv6Startup.dadTransmits = 0
        right.ipv6Startup.routerSolicitations = 0
        right.ipv6Startup.mldRobustness = 0
        configure(&left)
        configure(&right)
        configureRight(&right)
        right.mac = MACAddress(2, 0, 0, 0, 0, 0x64)
        left.mac = MACAddress(2, 0, 0, 0, 0, 1)
        self.init(left: left, right: right, faults: faults, seed: seed)
    }

    private func chance(_ probability: Double) -> Bool {
        probability > 0 && Double(rng.next() >> 11) / Double(1 << 53) < probability
    }

    /// Takes each stack's output and puts it on the link, faults applied.
    private func transmitAll() {
        for toRight in [true, false] {
            let stack = toRight ? left : right
            let virtio = stack.offloads.virtioHeader
            stack.transmit { bytes in
                guard virtio else {
                    enqueue(Array(bytes), toRight: toRight)
                    return true
                }
                let frames = VirtioLink.finish(Array(bytes))
                if frames.count > 1 { segmentedFramesSent += 1 }
                for frame in frames { enqueue(frame, toRight: toRight) }
                return true
            }
        }
    }

    private func enqueue(_ frame: [UInt8], toRight: Bool) {
        if dropAll || (dropToLeft && !toRight) || chance(faults.loss) {
            framesLost += 1
            return
        }
        while let first = departures[toRight]!.first, first <= now { departures[toRight]!.removeFirst() }
        guard departures[toRight]!.count < faults.queueLimit else {
            framesQueueDropped += 1
            return
        }
        if toRight, let mtu = faults.routerMTU, let answer = Self.refusal(frame, mtu: mtu) {
            framesTooBig += 1
            sequence += 1
            inFlight.insert(Arrival(time: now + faults.delay, sequence: sequence, toRight: false, frame: answer))
            return
        }
        var frame = frame
        if let threshold = faults.markCongestionAbove, departures[toRight]!.count > threshold,
           Self.markCongestionExperienced(&frame) {
            framesMarked += 1
        }
        if chance(faults.corrupt) {
            let index = Int(rng.next() % UInt64(frame.count))
            frame[index] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            framesCorrupted += 1
        }
        let serialization = Duration.nanoseconds(Int64(Double(frame.count * 8) / faults.bitsPerSecond * 1e9))
        let start = max(now, linkFree[toRight]!)
        let departs = start + serialization
        linkFree[toRight] = departs
        departures[toRight]!.append(departs)
        var arrival = departs + faults.delay
        if chance(faults.reorder) {
            arrival = arrival + .nanoseconds(Int64(rng.next() % UInt64(faults.reorderDelay.nanoseconds)))
        }
        sequence += 1
        inFlight.insert(Arrival(time: arrival, sequence: sequence, toRight: toRight, frame: frame))
        if chance(faults.duplicate) {
            framesDuplicated += 1
            sequence += 1
            inFlight.insert(Arrival(time: arrival + faults.delay / 2, sequence: sequence, toRight: toRight, frame: frame))
        }
    }

    /// The ICMP error the router sends back for `frame`, if the frame is too
    /// big for its `mtu`: from the packet's destination, quoting as much as
    /// ICMP allows.
    static func refusal(_ frame: [UInt8], mtu: Int) -> [UInt8]? {
        guard frame.count > 14 + mtu else { return nil }
        let packet = Array(frame[14...])
        var host = HostFrames()
        switch UInt16(frame[12]) << 8 | UInt16(frame[13]) {
        case 0x0800:
            guard packet[6] & 0x40 != 0 else { return nil } // no DF: the router would fragment
            let source = IPv4Address(packet[12], packet[13], packet[14], packet[15])
            let destination = IPv4Address(packet[16], packet[17], packet[18], packet[19])
            host.ipv4 = destination
            host.stackIPv4 = source
            host.stackMAC = MACAddress(frame[6], frame[7], frame[8], frame[9], frame[10], frame[11])
            let quote = Array(packet.prefix(576 - 28))
            return host.ipv4Packet(.icmp, HostFrames.icmpv4(.destinationUnreachable(code: 4, nextHopMTU: UInt16(mtu)),
                                                           body: quote),
                                   source: destination, destination: source)
        case 0x86dd:
            var source = IPv6Address.unspecified
            var destination = IPv6Address.unspecified
            packet.withSpan { span in
                source = IPv6Address(span, at: 8)
                destination = IPv6Address(span, at: 24)
            }
            host.ipv6 = destination
            host.stackIPv6 = source
            host.stackMAC = MACAddress(frame[6], frame[7], frame[8], frame[9], frame[10], frame[11])
            return host.icmpv6Packet(.packetTooBig(mtu: UInt32(mtu)), body: Array(packet.prefix(1280 - 48)))
        default:
            return nil
        }
    }

    /// Sets CE in an ECN-capable IP packet (its IPv4 header checksum
    /// recomputed); false for a packet that is not ECN-capable.
    static func markCongestionExperienced(_ frame: inout [UInt8]) -> Bool {
        guard frame.count >= 54 else { return false }
        switch UInt16(frame[12]) << 8 | UInt16(frame[13]) {
        case 0x0800:
            guard frame[15] & 0x3 == 1 || frame[15] & 0x3 == 2 else { return false }
            frame[15] |= 0x3
            let headerEnd = 14 + Int(frame[14] & 0x0f) * 4
            frame[24] = 0
            frame[25] = 0
            var sum: UInt32 = 0
            for index in stride(from: 14, to: headerEnd, by: 2) { sum += UInt32(frame[index]) << 8 | UInt32(frame[index + 1]) }
            while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
            let checksum = ~UInt16(sum)
            frame[24] = UInt8(checksum >> 8)
            frame[25] = UInt8(checksum & 0xff)
            return true
        case 0x86dd:
            let ecn = (frame[15] >> 4) & 0x3
            guard ecn == 1 || ecn == 2 else { return false }
            frame[15] |= 0x30
            return true
        default:
            return false
        }
    }

    /// Runs until `done` holds (checked after every event) or `limit` of
    /// simulated time passes. `step` is the applications' turn, after every
    /// event. Returns whether `done` held.
    @discardableResult
    public func run(for limit: Duration, step: (Simulation) -> Void = { _ in }, until done: (Simulation) -> Bool) -> Bool {
        let end = now + limit
        step(self)
        transmitAll()
        while !done(self) {
            var next = inFlight.min?.time
            next = [next, left.nextDeadline, right.nextDeadline].compactMap { $0 }.min()
            guard let time = next, time <= end else { return done(self) }
            now = max(now, time)
            while let arrival = inFlight.min, arrival.time <= now {
                _ = inFlight.popMin()
                let stack = arrival.toRight ? right : left
                guard stack.offloads.virtioHeader else {
                    arrival.frame.withSpan { stack.receive(frame: $0, now: now) }
                    continue
                }
                var batch = [arrival.frame]
                while let next = inFlight.min, next.toRight == arrival.toRight,
                      next.time <= arrival.time + mergeWindow {
                    batch.append(inFlight.popMin()!.frame)
                }
                for frame in VirtioLink.deliver(batch) {
                    if frame[1] != VirtioNetHeader.Segmentation.none.rawValue { mergedFramesDelivered += 1 }
                    frame.withSpan { stack.receive(frame: $0, now: now) }
                }
            }
            left.poll(now: now)
            right.poll(now: now)
            step(self)
            transmitAll()
        }
        return true
    }
}

/// A deterministic byte pattern: what byte `index` of a transfer must be.
public func patternByte(_ index: Int, seed: UInt8) -> UInt8 {
    UInt8(truncatingIfNeeded: (index &* 131) ^ (index >> 8) ^ Int(seed))
}

/// One side of a bulk transfer over a TCP connection in a simulation: sends
/// `total` pattern bytes, reads and checks the peer's, half-closes when done.
public final class BulkEndpoint<I: IPVersion> {
    public let socket: SocketID
    public let total: Int
    let sendSeed: UInt8
    let receiveSeed: UInt8
    public private(set) var sent = 0
    public private(set) var received = 0
    public private(set) var mismatches = 0
    public private(set) var finished = false
    public private(set) var error: SocketError?
    private var buffer = [UInt8](repeating: 0, count: 65_536)
    private var chunk = [UInt8](repeating: 0, count: 65_536)
    /// The transfer offset of `chunk[0]` and how many bytes of it are filled.
    private var chunkStart = 0
    private var chunkFilled = 0

    public init(socket: SocketID, total: Int, sendSeed: UInt8, receiveSeed: UInt8) {
        self.socket = socket
        self.total = total
        self.sendSeed = sendSeed
        self.receiveSeed = receiveSeed
    }

    /// Writes what fits, reads what is there.
    public func step(_ stack: Stack) {
        do throws(SocketError) {
            while sent < total {
                if sent >= chunkStart + chunkFilled {
                    chunkStart = sent
                    chunkFilled = min(chunk.count, total - sent)
                    for i in 0..<chunkFilled { chunk[i] = patternByte(sent + i, seed: sendSeed) }
                }
                let from = sent - chunkStart
                let accepted = try chunk.withSpan { bytes throws(SocketError) in
                    try stack.tcpSend(I.self, socket, bytes.extracting(from..<chunkFilled))
                }
                if accepted == 0 { break }
                sent += accepted
                if sent == total { try stack.tcpShutdown(I.self, socket, read: false, write: true) }
            }
            while let count = try receive(stack) {
                if count == 0 {
                    finished = true
                    break
                }
                for i in 0..<count where buffer[i] != patternByte(received + i, seed: receiveSeed) { mismatches += 1 }
                received += count
            }
        } catch {
            self.error = error
        }
    }

    private func receive(_ stack: Stack) throws(SocketError) -> Int? {
        let result: Result<Int?, SocketError> = buffer.withUnsafeMutableBytes { bytes in
            Result { () throws(SocketError) in try stack.tcpReceive(I.self, socket, into: bytes) }
        }
        return try result.get()
    }

    public var done: Bool { (finished && sent == total) || error != nil }
}

extension Simulation {
    /// Listens on the right stack at `port`, connects from the left and
    /// sends `count` pattern bytes left to right (within `limit` of simulated
    /// time). Returns the client socket and the receiving end, whose
    /// `received` and `mismatches` say how it went.
    public func bulkTransfer<I: IPVersion>(_ version: I.Type, to server: I.Address, port: UInt16, count: Int,
                                           limit: Duration = .seconds(60)) throws(SocketError)
        -> (client: SocketID, receiver: BulkEndpoint<I>?) {
        let listener = right.tcpOpen(I.self)
        try right.tcpBind(I.self, listener, to: .any(port: port))
        try right.tcpListen(I.self, listener, backlog: 8)
        let client = left.tcpOpen(I.self)
        try left.tcpConnect(I.self, client, to: Endpoint(server, port))
        let sender = BulkEndpoint<I>(socket: client, total: count, sendSeed: 3, receiveSeed: 0)
        var receiver: BulkEndpoint<I>?
        run(for: limit) { sim in
            if receiver == nil, let accepted = try? sim.right.tcpAccept(I.self, listener) {
                receiver = BulkEndpoint<I>(socket: accepted, total: 0, sendSeed: 0, receiveSeed: 3)
            }
            sender.step(sim.left)
            receiver?.step(sim.right)
        } until: { _ in sender.sent == count && (receiver?.received ?? 0) == count }
        return (client, receiver)
    }
}
