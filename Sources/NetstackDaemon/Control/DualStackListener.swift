import DequeModule
import NetstackControl
import NetstackCore
import NetstackIO
import NetstackSockets
import Synchronization

/// An IPv6 TCP socket with IPV6_V6ONLY off, as Linux makes them by default:
/// listening on the unspecified address, it also takes IPv4 connections
/// (RFC 3493 §3.7), which reach the program with IPv4-mapped addresses.
///
/// The stack's tables are per IP version, so this is two listeners on one
/// port, one per version, each drained by a task into one short queue that
/// the channel's `accept` takes from, oldest first. A task takes the next
/// connection from its listener only when the queue has room, so the
/// connections the program has not accepted yet wait in the listeners' own
/// accept queues, which hold the backlog and, when full, drop the SYN as
/// Linux does (the client retransmits it) instead of resetting connections
/// that were already established.
final class DualStackListener: Sendable {
    let v6: StreamSocket<IPv6>
    private let runtime: SocketRuntime
    private struct State {
        var v4: StreamSocket<IPv4>?
        var queue = Deque<AcceptedChannel>()
        var waiters = Deque<CheckedContinuation<AcceptedChannel?, Never>>()
        /// Drain tasks waiting for room in `queue`.
        var drainers: [CheckedContinuation<Void, Never>] = []
        var closed = false
    }
    private let state = Mutex(State())

    init(_ v6: StreamSocket<IPv6>, runtime: SocketRuntime) {
        self.v6 = v6
        self.runtime = runtime
    }

    /// Listens on both versions when bound to the unspecified address (else
    /// on IPv6 alone), and starts taking connections.
    func listen(backlog: Int) async throws {
        try await v6.listen(backlog: backlog)
        let local = try await v6.localEndpoint()
        if let local, local.address.isUnspecified {
            let v4 = await StreamSocket<IPv4>.open(runtime)
            do {
                try await v4.bind(.any(port: local.port))
                try await v4.listen(backlog: backlog)
            } catch {
                await v4.close()
                await v6.close()
                throw error
            }
            state.withLock { $0.v4 = v4 }
            runtime.spawn { [self] in await drain(v4) { .stream4($0) } }
        }
        runtime.spawn { [self] in await drain(v6) { .stream6($0) } }
    }

    /// One connection per version may wait here; the rest wait in the listeners.
    private static let queueLimit = 2

    /// Moves the connections `listener` accepts into the queue until it closes.
    private func drain<I: IPVersion>(_ listener: StreamSocket<I>, _ wrap: (StreamSocket<I>) -> ControlChannel) async {
        while await room(), let connection = try? await listener.acceptWithEndpoints() {
            let accepted = AcceptedChannel(channel: wrap(connection.socket),
                                           local: connection.local.map(ControlEndpoint.init),
                                           peer: connection.remote.map(ControlEndpoint.init))
            let outcome = state.withLock { state -> Outcome in
                if state.closed { return .refused }
                if let waiter = state.waiters.popFirst() { return .resume(waiter) }
                state.queue.append(accepted)
                return .queued
            }
            switch outcome {
            case .resume(let waiter): waiter.resume(returning: accepted)
            case .queued: break
            case .refused: await connection.socket.abort()
            }
        }
    }

    /// Waits until the queue has room; false once the listener is closed.
    private func room() async -> Bool {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state in
                if state.closed || state.queue.count < Self.queueLimit { return true }
                state.drainers.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
        return !state.withLock { $0.closed }
    }

    private enum Outcome {
        case resume(CheckedContinuation<AcceptedChannel?, Never>)
        case queued
        case refused
    }

    /// The next connection of either version and its endpoints; nil once closed.
    func accept() async -> AcceptedChannel? {
        await withCheckedContinuation { continuation in
            let (ready, drainers) = state.withLock { state -> (AcceptedChannel??, [CheckedContinuation<Void, Never>]) in
                if let first = state.queue.popFirst() {
                    defer { state.drainers.removeAll() }
                    return (first, state.drainers)
                }
                if state.closed { return (.some(nil), []) }
                state.waiters.append(continuation)
                return (nil, [])
            }
            for drainer in drainers { drainer.resume() }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Closes both listeners and the connections nobody accepted.
    func close() async {
        let (v4, queued, waiters, drainers) = state.withLock { state in
            state.closed = true
            defer {
                state.queue.removeAll()
                state.waiters.removeAll()
                state.drainers.removeAll()
            }
            return (state.v4, Array(state.queue), Array(state.waiters), state.drainers)
        }
        // The port is free before a waiting accept learns of the close.
        await v4?.close()
        await v6.close()
        for waiter in waiters { waiter.resume(returning: nil) }
        for drainer in drainers { drainer.resume() }
        for accepted in queued { await accepted.channel.abort() }
    }
}

/// An IPv6 UDP socket with IPV6_V6ONLY off: bound to the unspecified
/// address, it also sends to and receives from IPv4 peers, through an IPv4
/// socket on the same port; once a byte stream, both feed one descriptor
/// (IPv4 peers appear to the program as IPv4-mapped addresses).
final class DualStackDatagrams: Sendable {
    let v6: DatagramSocket<IPv6>
    private let runtime: SocketRuntime
    private let companion = Mutex<DatagramSocket<IPv4>?>(nil)
    /// SO_REUSEADDR, for the IPv4 socket too.
    private let reuse = Atomic<Bool>(false)

    init(_ v6: DatagramSocket<IPv6>, runtime: SocketRuntime) {
        self.v6 = v6
        self.runtime = runtime
    }

    var v4: DatagramSocket<IPv4>? { companion.withLock { $0 } }

    func setReuseAddress(_ on: Bool) async throws {
        reuse.store(on, ordering: .relaxed)
        try await v6.setReuseAddress(on)
        try await v4?.setReuseAddress(on)
    }

    /// Binds the IPv6 socket, and on the unspecified address an IPv4 one to
    /// the same port.
    func bind(_ local: Endpoint<IPv6>) async throws -> Endpoint<IPv6> {
        let bound = try await v6.bind(local)
        guard local.address.isUnspecified else { return bound }
        let v4 = await DatagramSocket<IPv4>.open(runtime)
        do {
            if reuse.load(ordering: .relaxed) { try await v4.setReuseAddress(true) }
            try await v4.bind(.any(port: bound.port))
        } catch {
            await v4.close()
            throw error
        }
        companion.withLock { $0 = v4 }
        return bound
    }

    func close() async {
        await v4?.close()
        await v6.close()
    }
}
