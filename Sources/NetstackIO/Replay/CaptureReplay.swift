import NetstackCore
import NetstackWire

/// Replays a capture in which some host talked to a stack with `stackMAC`
/// (a capture from the field, or a fixture of the Linux kernel in the
/// stack's role): the frames from anyone else are fed to a fresh `Stack`, at
/// the capture's times on a virtual clock (timers due between two frames run
/// first, as they would have), and what the stack sends is collected next
/// to what the recorded stack sent.
///
/// The host's TCP acknowledgments (and SACK blocks and echoed timestamps)
/// are moved from the recorded stack's sequence space into the new stack's,
/// so that a conversation goes on as it did. `netstackd replay` and the
/// fixture tests both run this.
public struct CaptureReplay {
    /// One frame of the replay's conversation, for writing it out.
    public struct Event: Sendable {
        public var time: PcapTimestamp
        public var direction: CaptureDirection
        public var bytes: [UInt8]
    }

    /// Frames the recorded stack sent, in order.
    public private(set) var expected: [[UInt8]] = []
    /// Frames the new stack sent, in order.
    public private(set) var produced: [[UInt8]] = []
    /// The host's frames as fed and the new stack's answers, in time order.
    public private(set) var events: [Event] = []
    /// The stack after the replay, for counters and state.
    public let stack: Stack

    /// A stack configuration for replays: nothing sent unprompted (no
    /// gratuitous ARP, DAD or router solicitations), which a capture's
    /// recorded stack had sent before the capture began or not at all.
    public static func quiet(_ configuration: StackConfiguration) -> StackConfiguration {
        var configuration = configuration
        configuration.gratuitousARPCount = 0
        configuration.ipv6Startup.dadTransmits = 0
        configuration.ipv6Startup.routerSolicitations = 0
        configuration.ipv6Startup.mldRobustness = 0
        return configuration
    }

    /// Replays `records`. `setUp` prepares the stack (binds sockets);
    /// `application` runs after every frame, as the programs using the stack
    /// would (an echo service answering what arrived). `dropHostFrame`, when
    /// given, decides which of the host's frames (by index among the host's
    /// frames) never arrive: loss; `delayHostFrame`, how many later host
    /// frames one waits behind: reordering.
    public init(records: [PcapReader.Record], stackMAC: MACAddress, configuration: StackConfiguration,
                setUp: (Stack) -> Void = { _ in }, application: (Stack) -> Void = { _ in },
                dropHostFrame: (Int) -> Bool = { _ in false }, delayHostFrame: (Int) -> Int = { _ in 0 }) {
        let origin = records.first?.timestamp.totalNanoseconds ?? 0
        let stack = Stack(configuration: configuration, now: .zero, seed: 1)
        setUp(stack)
        var produced: [[UInt8]] = []
        var events: [Event] = []
        var hostIndex = 0
        var rewriter = TCPRewriter()
        /// Host frames held back: (frames still to wait, the frame).
        var delayed: [(wait: Int, frame: [UInt8])] = []
        func stamp(_ now: Instant) -> PcapTimestamp { PcapTimestamp(totalNanoseconds: origin + now.nanoseconds) }
        func collect(_ now: Instant) {
            stack.transmit { bytes in
                let frame = Array(bytes)
                rewriter.learn(produced: frame)
                produced.append(frame)
                events.append(Event(time: stamp(now), direction: .sent, bytes: frame))
                return true
            }
        }
        func feed(_ frame: [UInt8], _ now: Instant) {
            let translated = rewriter.translate(frame)
            events.append(Event(time: stamp(now), direction: .received, bytes: translated))
            translated.withSpan { stack.receive(frame: $0, now: now) }
            stack.poll(now: now)
            application(stack)
            collect(now)
        }
        for record in records {
            let now = Instant(nanoseconds: record.timestamp.totalNanoseconds - origin)
            // Timers due before this frame run first, as they would have.
            while let deadline = stack.nextDeadline, deadline <= now {
                stack.poll(now: deadline)
                collect(deadline)
            }
            let source = record.bytes.withSpan { (try? EthernetFrame($0))?.source }
            if source == stackMAC {
                rewriter.learn(expected: record.bytes)
                expected.append(record.bytes)
                continue
            }
            defer { hostIndex += 1 }
            if dropHostFrame(hostIndex) { continue }
            var due: [[UInt8]] = []
            let delay = delayHostFrame(hostIndex)
            if delay > 0 {
                delayed.append((delay, record.bytes))
            } else {
                due.append(record.bytes)
            }
            for index in delayed.indices.reversed() {
                delayed[index].wait -= 1
                if delayed[index].wait < 0 { due.append(delayed.remove(at: index).frame) }
            }
            for frame in due { feed(frame, now) }
        }
        for (_, frame) in delayed { feed(frame, stack.nextDeadline ?? .zero) }
        self.produced = produced
        self.events = events
        self.stack = stack
    }
}

/// Moves the host's TCP segments from the recorded kernel's sequence space to
/// our stack's: acknowledgment numbers, SACK blocks and echoed timestamps are
/// rebased from the kernel's initial sequence number and first TSval to ours.
struct TCPRewriter {
    struct Flow: Hashable { var stackPort: UInt16; var hostPort: UInt16 }
    struct Origin { var sequence: UInt32; var timestamp: UInt32? }
    private var kernel: [Flow: Origin] = [:]
    private var ours: [Flow: Origin] = [:]

    mutating func learn(expected frame: [UInt8]) { learn(frame, into: &kernel) }
    mutating func learn(produced frame: [UInt8]) { learn(frame, into: &ours) }

    private func learn(_ frame: [UInt8], into table: inout [Flow: Origin]) {
        guard let d = try? frame.withSpan({ try Dissection($0) }), case .tcp(let tcp) = d.transport,
              tcp.flags.contains(.syn) else { return }
        var timestamp: UInt32?
        try? TCPOption.forEach(in: tcp.options.array.span.bytes) { option in
            if case .timestamps(let value, _) = option { timestamp = value }
        }
        table[Flow(stackPort: tcp.sourcePort, hostPort: tcp.destinationPort)] =
            Origin(sequence: tcp.sequenceNumber, timestamp: timestamp)
    }

    func translate(_ frame: [UInt8]) -> [UInt8] {
        guard var d = try? frame.withSpan({ try Dissection($0) }), case .tcp(var tcp) = d.transport,
              tcp.flags.contains(.ack) else { return frame }
        let flow = Flow(stackPort: tcp.destinationPort, hostPort: tcp.sourcePort)
        guard let from = kernel[flow], let to = ours[flow] else { return frame }
        let shift = to.sequence &- from.sequence
        tcp.acknowledgmentNumber &+= shift
        var options = OptionBytes()
        try? TCPOption.forEach(in: tcp.options.array.span.bytes) { option in
            switch option {
            case .sack(let blocks):
                var moved = SACKBlocks()
                for i in 0..<blocks.count { moved.append(left: blocks[i].left &+ shift, right: blocks[i].right &+ shift) }
                options.append(.sack(moved))
            case .timestamps(let value, let echo) where from.timestamp != nil && to.timestamp != nil && echo != 0:
                options.append(.timestamps(value: value, echoReply: echo &- from.timestamp! &+ to.timestamp!))
            default:
                options.append(option)
            }
        }
        while options.count < tcp.options.count { options.append(TCPOption.endOfList) }
        tcp.options = options
        d.transport = .tcp(tcp)
        return frame.withSpan { d.emit(payload: $0.extracting(d.payload)) }
    }
}

