// fuzz-stack: libFuzzer harness for the core, built only by scripts/fuzz.sh
// (NETSTACK_FUZZ=1 adds it to the package; libFuzzer supplies `main`).
//
// An input is a sequence of records, each `op u8, length u16 (big-endian),
// bytes`: a frame for the stack (what the TAP would deliver, optionally
// behind a virtio-net header whose DATA_VALID flag lets the fuzzer past the
// transport checksums), a step of the virtual clock, or work on the sockets
// (accept, echo, close). A fresh stack serves each input, so a crash file
// replays alone. The stack listens on TCP and UDP port 7 of both versions,
// as netstackd's echo would.
import NetstackCore
import NetstackWire

private func internetChecksum(_ bytes: UnsafeMutableRawBufferPointer) -> UInt16 {
    var sum = InternetChecksum()
    sum.add(UnsafeRawBufferPointer(bytes))
    return sum.value
}

/// Writes a correct IPv4 header checksum into a frame that carries IPv4 at
/// `offset` (the Ethernet header's start), so that the fuzzer reaches what
/// lies behind the header without finding the sum by itself.
private func fixIPv4HeaderChecksum(_ frame: inout [UInt8], at offset: Int) {
    let ip = offset + 14
    guard frame.count >= ip + 20, frame[offset + 12] == 0x08, frame[offset + 13] == 0x00 else { return }
    let length = Int(frame[ip] & 0x0f) * 4
    guard length >= 20, frame.count >= ip + length else { return }
    frame[ip + 10] = 0
    frame[ip + 11] = 0
    let sum = frame.withUnsafeMutableBytes { internetChecksum(UnsafeMutableRawBufferPointer(rebasing: $0[ip..<(ip + length)])) }
    frame[ip + 10] = UInt8(sum >> 8)
    frame[ip + 11] = UInt8(sum & 0xff)
}

private final class Harness {
    let stack: Stack
    var now: Instant = .zero
    var listeners: [(v6: Bool, id: SocketID)] = []
    var connections: [(v6: Bool, id: SocketID)] = []
    var datagrams: [(v6: Bool, id: SocketID)] = []

    init(virtio: Bool) {
        var configuration = StackConfiguration.standard
        configuration.gratuitousARPCount = 0
        configuration.ipv6Startup.dadTransmits = 0
        configuration.ipv6Startup.routerSolicitations = 0
        stack = Stack(configuration: configuration, now: .zero, seed: 1)
        if virtio { stack.offloads = LinkOffloads(virtioHeader: true, transmitChecksum: true, tcpSegmentation: true) }
        let tcp4 = stack.tcpOpen(IPv4.self)
        let tcp6 = stack.tcpOpen(IPv6.self)
        let udp4 = stack.udpOpen(IPv4.self)
        let udp6 = stack.udpOpen(IPv6.self)
        try? stack.tcpBind(IPv4.self, tcp4, to: .any(port: 7))
        try? stack.tcpListen(IPv4.self, tcp4, backlog: 16)
        try? stack.tcpBind(IPv6.self, tcp6, to: .any(port: 7))
        try? stack.tcpListen(IPv6.self, tcp6, backlog: 16)
        try? stack.udpBind(IPv4.self, udp4, to: .any(port: 7))
        try? stack.udpBind(IPv6.self, udp6, to: .any(port: 7))
        listeners = [(false, tcp4), (true, tcp6)]
        datagrams = [(false, udp4), (true, udp6)]
        drain()
    }

    func drain() {
        stack.poll(now: now)
        stack.transmit { _ in true }
    }

    func advance(milliseconds: Int) {
        let end = now + .milliseconds(milliseconds)
        // Timers in order, each at its time, a bounded number of them.
        for _ in 0..<64 {
            guard let deadline = stack.nextDeadline, deadline <= end else { break }
            now = max(now, deadline)
            drain()
        }
        now = end
        drain()
    }

    /// Accepts what waits, echoes what arrived on connections and datagram
    /// sockets, and with `close` set closes (odd: resets) the oldest connection.
    func serve(close: UInt8) {
        for listener in listeners {
            if listener.v6 { accept(IPv6.self, listener.id, v6: true) } else { accept(IPv4.self, listener.id, v6: false) }
        }
        for connection in connections {
            if connection.v6 { echo(IPv6.self, connection.id) } else { echo(IPv4.self, connection.id) }
        }
        for socket in datagrams {
            if socket.v6 { echoDatagrams(IPv6.self, socket.id) } else { echoDatagrams(IPv4.self, socket.id) }
        }
        if close != 0, let oldest = connections.first {
            connections.removeFirst()
            if oldest.v6 { end(IPv6.self, oldest.id, reset: close & 1 == 1) } else { end(IPv4.self, oldest.id, reset: close & 1 == 1) }
        }
        drain()
    }

    private func accept<I: IPVersion>(_ version: I.Type, _ listener: SocketID, v6: Bool) {
        while let child = (try? stack.tcpAccept(I.self, listener)) ?? nil { connections.append((v6, child)) }
    }

    private func echo<I: IPVersion>(_ version: I.Type, _ id: SocketID) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { ((try? stack.tcpReceive(I.self, id, into: $0)) ?? nil) ?? 0 }
        guard count > 0 else { return }
        buffer.withSpan { span in _ = try? stack.tcpSend(I.self, id, span.extracting(0..<count)) }
    }

    private func echoDatagrams<I: IPVersion>(_ version: I.Type, _ id: SocketID) {
        while let (source, payload) = (try? stack.udpReceive(I.self, id, { ($0.source, $1.array) })) ?? nil {
            payload.withSpan { _ = try? stack.udpSend(I.self, id, to: source, payload: $0) }
        }
    }

    private func end<I: IPVersion>(_ version: I.Type, _ id: SocketID, reset: Bool) {
        if reset { stack.tcpAbort(I.self, id) } else { stack.tcpClose(I.self, id) }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStack(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard let first = input.first else { return 0 }
    // The first byte chooses the link: plain Ethernet or virtio-net headers.
    let virtio = first & 1 == 1
    let harness = Harness(virtio: virtio)
    var at = 1
    var records = 0
    while at + 3 <= input.count, records < 256 {
        let op = input[at]
        let length = Int(input[at + 1]) << 8 | Int(input[at + 2])
        at += 3
        let end = min(input.count, at + length)
        let bytes = Array(input[at..<end])
        at = end
        records += 1
        switch op & 3 {
        case 0, 1:
            var frame = bytes
            if op & 0x80 != 0 { fixIPv4HeaderChecksum(&frame, at: virtio ? VirtioNetHeader.length : 0) }
            frame.withSpan { harness.stack.receive(frame: $0, now: harness.now) }
            harness.drain()
        case 2:
            harness.advance(milliseconds: (bytes.first.map(Int.init) ?? 1) * 50)
        default:
            harness.serve(close: bytes.first ?? 0)
        }
    }
    harness.serve(close: 0)
    harness.advance(milliseconds: 120_000)
    return 0
}
