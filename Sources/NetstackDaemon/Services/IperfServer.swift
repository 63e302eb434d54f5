import Foundation
import Logging
import Metrics
import NetstackCore
import NetstackIO
import NetstackSockets
import Synchronization

/// An iperf3 server inside the stack (TCP port 5201 by default, and UDP on
/// the same port), so that `iperf3 -c 192.168.69.1` measures the stack with
/// the tool people already use: `-R`, `-u`, `-P`, `-6`, `--bidir` and `-J`.
///
/// iperf3's protocol, as its client speaks it: the control connection sends
/// a 37-byte cookie; the server drives the test with one-byte states
/// (PARAM_EXCHANGE 9, CREATE_STREAMS 10, TEST_START 1, TEST_RUNNING 2,
/// EXCHANGE_RESULTS 13, DISPLAY_RESULTS 14); parameters and results are JSON
/// after a 4-byte big-endian length. TCP data streams connect to the same
/// port and start with the cookie; UDP streams announce themselves with a
/// 4-byte datagram, answered with 4 bytes, and each datagram carries its
/// send time and a packet number (loss and RFC 3550 jitter come from them).
///
/// One test runs at a time; another client gets ACCESS_DENIED. Anything that
/// does not follow the protocol (a bad cookie, JSON that does not parse,
/// parameters out of range, silence) ends that session and is counted.
struct IperfServer: Sendable {
    let port: UInt16
    let transports: Set<TransportKind>
    let sockets: SocketRuntime
    let logger: Logger

    enum State: UInt8 {
        case testStart = 1, testRunning = 2, testEnd = 4, paramExchange = 9, createStreams = 10
        case clientTerminate = 12, exchangeResults = 13, displayResults = 14, iperfDone = 16
        case accessDenied = 0xFF   // -1 as a signed byte
    }

    static let cookieLength = 37
    /// The most a control message may take before the session is dropped.
    static let patience: Duration = .seconds(10)

    func run(_ open: OpenSockets) async {
        let hub = IperfHub(logger: logger, sockets: sockets)
        await withDiscardingTaskGroup { group in
            if transports.contains(.tcp) {
                group.addTask { await listen(IPv4.self, hub, open) }
                group.addTask { await listen(IPv6.self, hub, open) }
            }
            if transports.contains(.udp) {
                group.addTask { await datagrams(IPv4.self, hub, open) }
                group.addTask { await datagrams(IPv6.self, hub, open) }
            }
        }
    }

    /// TCP connections of one version: a control connection when no test
    /// runs, a data stream when one waits for streams, else turned away.
    private func listen<I: IPVersion>(_ version: I.Type, _ hub: IperfHub, _ open: OpenSockets) async {
        let listener = await StreamSocket<I>.open(sockets)
        guard open.register({ await listener.close() }) != nil else { return }
        do {
            try await listener.bind(.any(port: port))
            try await listener.listen(backlog: 128)
            logger.info("tcp iperf3 on \(I.name) port \(port)")
        } catch {
            logger.error("tcp iperf3 on \(I.name) port \(port): \(error)")
            return
        }
        while let socket = try? await listener.accept() {
            let peer = (try? await socket.remoteEndpoint()).flatMap { $0.map { "\($0)" } } ?? "?"
            let connection = ServedConnection(socket, peer: peer)
            sockets.spawn { await hub.arrived(connection) }
        }
    }

    /// UDP datagrams of one version, handed to the session.
    private func datagrams<I: IPVersion>(_ version: I.Type, _ hub: IperfHub, _ open: OpenSockets) async {
        let socket = await DatagramSocket<I>.open(sockets)
        guard open.register({ await socket.close() }) != nil else { return }
        do {
            try await socket.bind(.any(port: port))
            try await socket.setReceiveBufferSize(4 << 20)
        } catch {
            logger.error("udp iperf3 on \(I.name) port \(port): \(error)")
            return
        }
        let endpoint = IperfDatagramSocket(socket)
        while let datagram = await socket.nextDatagram() {
            hub.datagram(datagram.payload, from: IperfPeer(datagram.source), on: endpoint)
        }
    }
}

/// A UDP peer, either version.
struct IperfPeer: Hashable, Sendable, CustomStringConvertible {
    let text: String
    let send: @Sendable ([UInt8]) async -> Void

    init<I: IPVersion>(_ endpoint: Endpoint<I>) {
        text = "\(endpoint)"
        send = { _ in }
    }

    init(text: String, send: @escaping @Sendable ([UInt8]) async -> Void) {
        self.text = text
        self.send = send
    }

    static func == (a: IperfPeer, b: IperfPeer) -> Bool { a.text == b.text }
    func hash(into hasher: inout Hasher) { hasher.combine(text) }
    var description: String { text }
}

/// A UDP socket of either version, for answering and sending to peers.
struct IperfDatagramSocket: Sendable {
    let reply: @Sendable ([UInt8], String) async -> Void
    let peer: @Sendable (String) -> IperfPeer?

    init<I: IPVersion>(_ socket: DatagramSocket<I>) {
        @Sendable func endpoint(_ text: String) -> Endpoint<I>? {
            // "a.b.c.d:port" or "[v6]:port".
            guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
                return nil
            }
            var host = String(text[..<colon])
            if host.hasPrefix("[") { host = String(host.dropFirst().dropLast()) }
            return I.Address(host).map { Endpoint($0, port) }
        }
        reply = { bytes, text in
            guard let destination = endpoint(text) else { return }
            _ = try? await socket.send(bytes, to: destination)
        }
        peer = { text in
            guard let destination = endpoint(text) else { return nil }
            return IperfPeer(text: text) { bytes in _ = try? await socket.send(bytes, to: destination) }
        }
    }
}

/// Where connections and datagrams meet the one session that may run.
final class IperfHub: Sendable {
    private let logger: Logger
    private let sockets: SocketRuntime
    private let current = Mutex<IperfSession?>(nil)
    private let sessions = Counter(label: "netstack_iperf3_sessions_total")
    private let failures = Counter(label: "netstack_iperf3_failed_sessions_total")

    init(logger: Logger, sockets: SocketRuntime) {
        self.logger = logger
        self.sockets = sockets
    }

    /// A new TCP connection: a data stream of the session that waits for
    /// them, or the control connection of a new session.
    func arrived(_ connection: ServedConnection) async {
        let session = current.withLock { $0 }
        if let session, await session.offer(connection) { return }
        let fresh = IperfSession(control: connection, logger: logger, sockets: sockets)
        let started = current.withLock { current -> Bool in
            guard current == nil else { return false }
            current = fresh
            return true
        }
        guard started else {
            // One test at a time (iperf3 answers the same).
            try? await connection.send([IperfServer.State.accessDenied.rawValue])
            await connection.reset()
            return
        }
        sessions.increment()
        // Once the results are out the next client may start, while this
        // session waits for its client's last word.
        let release: @Sendable () -> Void = { [self] in current.withLock { if $0 === fresh { $0 = nil } } }
        do {
            try await fresh.run(displayed: release)
        } catch {
            failures.increment()
            let peer = await connection.peer()
            logger.notice("iperf3 session from \(peer) ended: \(error)")
            await fresh.abandon()
        }
        release()
    }

    func datagram(_ payload: [UInt8], from peer: IperfPeer, on socket: IperfDatagramSocket) {
        guard let session = current.withLock({ $0 }) else { return }
        session.datagram(payload, from: peer, on: socket)
    }
}

/// Why a session ended before its results.
struct IperfError: Error, CustomStringConvertible {
    var description: String
}

/// What the client asked for (its JSON parameters).
struct IperfParameters: Sendable {
    var udp = false
    var duration = 10
    var bytes = 0
    var blocks = 0
    var streams = 1
    var reverse = false
    var bidirectional = false
    var blockSize = 128 * 1024
    /// Bits per second per stream; UDP's default is 1 Mbit/s, TCP's none.
    var rate = 0
    var counters64 = false
    var omit = 0

    init(_ json: [String: Any]) throws(IperfError) {
        func number(_ key: String) -> Int? {
            switch json[key] {
            case let value as Int: value
            case let value as Double: Int(exactly: value.rounded()) ?? Int(clamping: Int64(value))
            case let value as NSNumber: value.intValue
            default: nil
            }
        }
        udp = json["udp"] != nil
        guard json["tcp"] != nil || udp else { throw IperfError(description: "neither tcp nor udp asked for") }
        guard json["sctp"] == nil else { throw IperfError(description: "SCTP is not served") }
        duration = number("time") ?? 10
        bytes = number("num") ?? 0
        blocks = number("blockcount") ?? 0
        streams = number("parallel") ?? 1
        reverse = json["reverse"] != nil
        bidirectional = json["bidirectional"] != nil
        blockSize = number("len") ?? (udp ? 1448 : 128 * 1024)
        rate = number("bandwidth") ?? (udp ? 1 << 20 : 0)
        counters64 = json["udp_counters_64bit"] != nil
        omit = number("omit") ?? 0
        guard (0...3600).contains(duration), (0...60).contains(omit) else {
            throw IperfError(description: "duration \(duration) s (omit \(omit)) is outside 0...3600")
        }
        guard (1...128).contains(streams) else { throw IperfError(description: "\(streams) streams (1...128 served)") }
        guard (1...(udp ? 65_507 : 1 << 20)).contains(blockSize) else {
            throw IperfError(description: "block size \(blockSize)")
        }
        guard !udp || blockSize >= (counters64 ? 16 : 12) else { throw IperfError(description: "UDP block too small") }
        guard bytes >= 0, blocks >= 0, rate >= 0 else { throw IperfError(description: "negative amounts") }
    }
}

/// One iperf3 test: its control connection, its streams, its counts.
final class IperfSession: Sendable {
    let control: ServedConnection
    private let logger: Logger
    /// Tasks of the session (stream senders) run where the sockets are.
    private let sockets: SocketRuntime
    private struct Stream {
        var id: Int
        var sender: Bool
        var connection: ServedConnection?
        var peer: IperfPeer?
        var bytes = 0
        var packets = 0
        var errors = 0
        var jitter = 0.0
        var lastTransit: Double?
    }
    private struct State {
        var cookie: [UInt8] = []
        var parameters: IperfParameters?
        var expecting = false
        var streams: [Stream] = []
        var running = false
        var stopped = false
        var started = ContinuousClock.now
        var finished: ContinuousClock.Instant?
    }
    private let state = Mutex(State())
    /// Bytes from the control connection not consumed yet.
    private let pending = Mutex<[UInt8]>([])

    init(control: ServedConnection, logger: Logger, sockets: SocketRuntime) {
        self.control = control
        self.logger = logger
        self.sockets = sockets
    }

    // MARK: The control connection

    func run(displayed: @Sendable () -> Void) async throws {
        let cookie = try await read(IperfServer.cookieLength)
        state.withLock { $0.cookie = cookie }
        try await send(.paramExchange)
        let parameters = try IperfParameters(try await readJSON())
        let wanted = parameters.streams * (parameters.bidirectional ? 2 : 1)
        state.withLock { state in
            state.parameters = parameters
            state.expecting = true
        }
        try await send(.createStreams)
        try await waitForStreams(wanted)
        state.withLock { state in
            state.expecting = false
            state.running = true
            state.started = .now
        }
        try await send(.testStart)
        try await send(.testRunning)
        let usage = ResourceUsage()
        startSenders(parameters)
        // The client ends the test; a silent one is dropped after the time
        // it asked for, with room to spare.
        let limit = Duration.seconds(parameters.duration + parameters.omit) + .seconds(parameters.duration == 0 ? 600 : 10)
        guard try await readState(within: limit) == .testEnd else {
            throw IperfError(description: "the client ended the test")
        }
        stopStreams()
        // iperf3's own server closes the data connections here, and a client
        // in reverse mode counts on it: it drains them with blocking reads of
        // whole blocks, and only the end of a stream ends its last, partial
        // block (without it the client never answers EXCHANGE_RESULTS).
        for stream in state.withLock({ $0.streams }) {
            guard let connection = stream.connection else { continue }
            sockets.spawn { try? await connection.shutdown() }
        }
        let cpu = usage.percent()
        try await send(.exchangeResults)
        _ = try await readJSON()
        try await writeJSON(results(cpu: cpu))
        try await send(.displayResults)
        displayed()
        // IPERF_DONE, or the client just closes.
        _ = try? await readState(within: IperfServer.patience)
        await close()
    }

    /// Resets everything (the session failed).
    func abandon() async {
        stopStreams()
        await control.reset()
        for stream in state.withLock({ $0.streams }) { await stream.connection?.reset() }
    }

    private func close() async {
        await control.reset()
        for stream in state.withLock({ $0.streams }) { await stream.connection?.reset() }
    }

    private func send(_ value: IperfServer.State) async throws {
        try await control.send([value.rawValue])
    }

    /// `count` bytes from the control connection, within the patience.
    private func read(_ count: Int, within limit: Duration = IperfServer.patience) async throws -> [UInt8] {
        try await withTimeout(limit) { [self] in
            while pending.withLock({ $0.count }) < count {
                let chunk = try await control.receive()
                if chunk.isEmpty { throw IperfError(description: "the client closed the control connection") }
                pending.withLock { $0 += chunk }
                guard pending.withLock({ $0.count }) <= 1 << 20 else { throw IperfError(description: "too much control data") }
            }
            return pending.withLock { bytes in
                defer { bytes.removeFirst(count) }
                return Array(bytes.prefix(count))
            }
        }
    }

    private func readState(within limit: Duration) async throws -> IperfServer.State? {
        let byte = try await read(1, within: limit)[0]
        guard let value = IperfServer.State(rawValue: byte) else {
            throw IperfError(description: "unknown state \(byte)")
        }
        if value == .clientTerminate { throw IperfError(description: "the client terminated the test") }
        return value
    }

    private func readJSON() async throws -> [String: Any] {
        let prefix = try await read(4)
        let length = prefix.reduce(0) { $0 << 8 | Int($1) }
        guard (2...65_536).contains(length) else { throw IperfError(description: "a JSON message of \(length) bytes") }
        let bytes = try await read(length)
        guard let json = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw IperfError(description: "JSON that does not parse")
        }
        return json
    }

    private func writeJSON(_ object: [String: Any]) async throws {
        let data = try JSONSerialization.data(withJSONObject: object)
        let length = UInt32(data.count)
        try await control.send([UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff),
                                UInt8(length & 0xff)] + Array(data))
    }

    private func withTimeout<R: Sendable>(_ limit: Duration,
                                          _ body: @escaping @Sendable () async throws -> R) async throws -> R {
        try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let result = try await group.next(), let value = result else {
                // The control connection is stuck in a receive: resetting it ends that.
                await control.reset()
                throw IperfError(description: "no answer within \(limit)")
            }
            return value
        }
    }

    // MARK: Streams

    /// A TCP connection that arrived while this session runs: taken if it
    /// is a stream this session waits for (its cookie matches).
    func offer(_ connection: ServedConnection) async -> Bool {
        guard state.withLock({ $0.expecting && !($0.parameters?.udp ?? true) }) else { return false }
        var cookie: [UInt8] = []
        while cookie.count < IperfServer.cookieLength {
            guard let chunk = try? await connection.receive(), !chunk.isEmpty else {
                await connection.reset()
                return true
            }
            cookie += chunk
        }
        let extra = Array(cookie.dropFirst(IperfServer.cookieLength))
        guard cookie.prefix(IperfServer.cookieLength).elementsEqual(state.withLock({ $0.cookie })) else {
            try? await connection.send([IperfServer.State.accessDenied.rawValue])
            await connection.reset()
            return true
        }
        let added = state.withLock { state -> (sender: Bool, id: Int)? in
            guard state.expecting, let parameters = state.parameters else { return nil }
            let wanted = parameters.streams * (parameters.bidirectional ? 2 : 1)
            guard state.streams.count < wanted else { return nil }
            // iperf3's order: receiving streams first, then sending ones;
            // ids 1, 3, 4, ... as its client numbers them.
            let index = state.streams.count
            let sender = parameters.bidirectional ? index >= parameters.streams : parameters.reverse
            let id = index == 0 ? 1 : index + 2
            state.streams.append(Stream(id: id, sender: sender, connection: connection, bytes: extra.count))
            return (sender, id)
        }
        guard let added else {
            await connection.reset()
            return true
        }
        if !added.sender { await receive(connection, id: added.id) }
        return true
    }

    /// A UDP datagram for the session: a stream announcing itself, or data.
    func datagram(_ payload: [UInt8], from peer: IperfPeer, on socket: IperfDatagramSocket) {
        enum Action { case none, answer(IperfPeer) }
        let now = Date().timeIntervalSince1970
        let action = state.withLock { state -> Action in
            guard let parameters = state.parameters, parameters.udp else { return .none }
            if let index = state.streams.firstIndex(where: { $0.peer == peer }) {
                guard state.running, !state.streams[index].sender else { return .none }
                Self.account(&state.streams[index], payload, now: now, counters64: parameters.counters64)
                return .none
            }
            let wanted = parameters.streams * (parameters.bidirectional ? 2 : 1)
            guard state.expecting, payload.count == 4, state.streams.count < wanted,
                  let reachable = socket.peer(peer.text) else { return .none }
            let index = state.streams.count
            let sender = parameters.bidirectional ? index >= parameters.streams : parameters.reverse
            state.streams.append(Stream(id: index == 0 ? 1 : index + 2, sender: sender, peer: reachable))
            return .answer(reachable)
        }
        if case .answer(let reachable) = action {
            sockets.spawn {
                // UDP_CONNECT_REPLY, 0x39383736 in the client's (little-endian) order.
                await reachable.send([0x36, 0x37, 0x38, 0x39])
            }
        }
    }

    /// RFC 3550 §6.4.1 jitter and iperf3's loss count from one datagram:
    /// seconds and microseconds of its sending, then its packet number.
    private static func account(_ stream: inout Stream, _ payload: [UInt8], now: Double, counters64: Bool) {
        guard payload.count >= (counters64 ? 16 : 12) else { return }
        func number(_ at: Int, _ size: Int) -> Int {
            payload[at..<(at + size)].reduce(0) { $0 << 8 | Int($1) }
        }
        let sent = Double(number(0, 4)) + Double(number(4, 4)) / 1e6
        let packet = counters64 ? number(8, 8) : number(8, 4)
        stream.bytes += payload.count
        if packet >= stream.packets + 1 {
            if packet > stream.packets + 1 { stream.errors += packet - 1 - stream.packets }
            stream.packets = packet
        } else if stream.errors > 0 {
            // Late, counted as lost before.
            stream.errors -= 1
        }
        let transit = now - sent
        if let last = stream.lastTransit {
            stream.jitter += (abs(transit - last) - stream.jitter) / 16
        }
        stream.lastTransit = transit
    }

    private func waitForStreams(_ wanted: Int) async throws {
        _ = try await withTimeout(IperfServer.patience) { [self] in
            while state.withLock({ $0.streams.count < wanted }) { try await Task.sleep(for: .milliseconds(2)) }
            return true
        }
    }

    /// Counts what a receiving TCP stream brings until it ends.
    private func receive(_ connection: ServedConnection, id: Int) async {
        while let chunk = try? await connection.receive(), !chunk.isEmpty {
            let counting = state.withLock { state -> Bool in
                guard state.running || state.expecting, !state.stopped,
                      let index = state.streams.firstIndex(where: { $0.id == id }) else { return false }
                state.streams[index].bytes += chunk.count
                return true
            }
            if !counting && state.withLock({ $0.stopped }) { break }
        }
    }

    /// Starts a task per sending stream: TCP as fast as the window allows,
    /// UDP paced to the asked rate.
    private func startSenders(_ parameters: IperfParameters) {
        let senders = state.withLock { $0.streams.filter(\.sender) }
        var block = [UInt8](repeating: 0, count: parameters.blockSize)
        for index in block.indices { block[index] = UInt8.random(in: 0...255) }
        for stream in senders {
            let frozen = block
            sockets.spawn { [self] in
                if let connection = stream.connection {
                    await sendTCP(connection, id: stream.id, block: frozen)
                } else if let peer = stream.peer {
                    await sendUDP(peer, id: stream.id, block: frozen, parameters: parameters)
                }
            }
        }
    }

    private func sendTCP(_ connection: ServedConnection, id: Int, block: [UInt8]) async {
        while !state.withLock({ $0.stopped }) {
            guard (try? await connection.send(block)) != nil else { return }
            state.withLock { state in
                if let index = state.streams.firstIndex(where: { $0.id == id }) { state.streams[index].bytes += block.count }
            }
        }
    }

    private func sendUDP(_ peer: IperfPeer, id: Int, block: [UInt8], parameters: IperfParameters) async {
        let clock = ContinuousClock()
        let start = clock.now
        let bitsPerPacket = Double(block.count * 8)
        var sent = 0
        var payload = block
        while !state.withLock({ $0.stopped }) {
            // Packets due by now at the rate (all at once if the rate is 0).
            let elapsed = (clock.now - start).seconds
            let due = parameters.rate == 0 ? sent + 64 : Int(elapsed * Double(parameters.rate) / bitsPerPacket) + 1
            while sent < due {
                sent += 1
                let now = Date().timeIntervalSince1970
                let seconds = UInt32(truncatingIfNeeded: Int(now))
                let micros = UInt32(truncatingIfNeeded: Int((now - now.rounded(.down)) * 1e6))
                var header: [UInt8] = []
                for value in [seconds, micros] { header += withUnsafeBytes(of: value.bigEndian, Array.init) }
                if parameters.counters64 {
                    header += withUnsafeBytes(of: UInt64(sent).bigEndian, Array.init)
                } else {
                    header += withUnsafeBytes(of: UInt32(truncatingIfNeeded: sent).bigEndian, Array.init)
                }
                payload.replaceSubrange(0..<header.count, with: header)
                await peer.send(payload)
                state.withLock { state in
                    if let index = state.streams.firstIndex(where: { $0.id == id }) {
                        state.streams[index].bytes += payload.count
                        state.streams[index].packets = sent
                    }
                }
            }
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    private func stopStreams() {
        state.withLock { state in
            state.stopped = true
            state.running = false
            if state.finished == nil { state.finished = .now }
        }
    }

    /// The server's results, as iperf3's `send_results` makes them.
    private func results(cpu: (total: Double, user: Double, system: Double)) -> [String: Any] {
        state.withLock { state in
            let seconds = ((state.finished ?? .now) - state.started).seconds
            let anySender = state.streams.contains(where: \.sender)
            var object: [String: Any] = [
                "cpu_util_total": cpu.total, "cpu_util_user": cpu.user, "cpu_util_system": cpu.system,
                "sender_has_retransmits": anySender ? 0 : -1,
                "streams": state.streams.map { stream -> [String: Any] in
                    ["id": stream.id, "bytes": stream.bytes, "retransmits": stream.sender ? 0 : -1,
                     "jitter": stream.jitter, "errors": stream.errors, "packets": stream.packets,
                     "start_time": 0.0, "end_time": seconds]
                },
            ]
            if !(state.parameters?.udp ?? true) { object["congestion_used"] = "cubic" }
            return object
        }
    }
}

/// The daemon's CPU time over a test, as iperf3 reports its own.
struct ResourceUsage {
    let wall = ContinuousClock.now
    let start = ResourceUsage.times()

    static func times() -> (user: Double, system: Double) {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return (seconds(usage.ru_utime), seconds(usage.ru_stime))
    }

    func percent() -> (total: Double, user: Double, system: Double) {
        let elapsed = max((ContinuousClock.now - wall).seconds, 1e-6)
        let end = Self.times()
        let user = (end.user - start.user) / elapsed * 100
        let system = (end.system - start.system) / elapsed * 100
        return (user + system, user, system)
    }
}
