import DequeModule
import Glibc
import NetstackCore
import NetstackWire

/// A failed call: the errno the script sees.
struct Errno: Error {
    let code: Int32
    init(_ code: Int32) { self.code = code }
    init(_ error: SocketError) { code = error.errno }
    /// A stack error's errno (a `do` block's error is untyped).
    init(_ error: any Error) {
        code = (error as? SocketError)?.errno ?? (error as? Errno)?.code ?? EIO
    }
}

/// One descriptor of the script: a stack socket and what the socket API
/// keeps beside it.
struct Descriptor {
    enum Transport { case tcp, udp }
    let transport: Transport
    let family: any SocketFamily.Type
    let id: SocketID
    var nonBlocking = false
    var reuseAddress = false
    var keepalive = false
    var noDelay = false
    var v6Only = false
    var linger: (on: Bool, seconds: Int32) = (false, 0)
    var receiveBuffer: Int
    var sendBuffer: Int
    /// A connect was started (a second one says EALREADY or EISCONN).
    var connecting = false
    /// The connect's failure was reported by SO_ERROR (it is reported once).
    var errorReported = false
}

/// The stack behind packetdrill's function table, on a virtual clock.
///
/// packetdrill calls from two threads: its main thread (packets, time, and
/// the calls the script expects to return at once) and a thread for calls
/// the script expects to block (those with a time range). Every call takes
/// `mutex`. Time moves only when the main thread says so (`usleep`, or
/// waiting for the stack's next packet), to the stack's timers one by one;
/// after each step a blocked call is woken and the step waits until it has
/// looked (`wakeWaiters`), so what it sends is timed at that step. A call
/// that would block on the main thread moves time itself, through the
/// stack's timers, since nobody else will.
final class Backend: @unchecked Sendable {
    // @unchecked: every stored property is read and written with `mutex`
    // held (`withLock`), from either of packetdrill's threads; `mutex` and
    // the conditions are set up once in `init` and never freed (the
    // backend lives as long as the process).
    static let shared = Backend()

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Broadcast when time moved or a packet came in.
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Signalled by a woken waiter once it has looked.
    private let settled = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var stackStorage: Stack?
    /// The socket table as last written for sockstat.
    var publishedSockets = ""
    private(set) var now = Instant.zero
    var descriptors: [Int32: Descriptor] = [:]
    /// IP packets the stack sent, with the time they left.
    private var outbound: Deque<(bytes: [UInt8], time: Instant)> = []
    private var mainThread = pthread_self()
    private var waiting = 0
    private var pendingLooks = 0
    private var generation: UInt64 = 0

    /// Where virtual time 0 is on the wall clock packetdrill reads.
    static let epochSeconds = 1_700_000_000
    /// A wait for a packet gives up after this much virtual time.
    static let longestWait = Duration.seconds(3600)

    private init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
        pthread_cond_init(settled, nil)
    }

    /// Called by `packetdrill_interface_init` on packetdrill's main thread.
    func start() {
        withLock { $0.mainThread = pthread_self() }
    }

    func withLock<R>(_ body: (Backend) throws(Errno) -> R) throws(Errno) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(self)
    }

    func withLock<R>(_ body: (Backend) -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body(self)
    }

    /// The stack if it was made.
    var existingStack: Stack? { stackStorage }

    /// The stack, made on first use from the script's settings.
    var stack: Stack {
        if let stackStorage { return stackStorage }
        let stack = Stack(configuration: ScriptConfiguration.stack(settings: ScriptConfiguration.recordedSettings()),
                          now: now, seed: 1)
        stack.addPermanentNeighbor(IPv4.self, ScriptConfiguration.gateway4, mac: ScriptConfiguration.gatewayMAC)
        stack.addPermanentNeighbor(IPv6.self, ScriptConfiguration.gateway6, mac: ScriptConfiguration.gatewayMAC)
        stackStorage = stack
        stack.poll(now: now)
        collect()
        return stack
    }

    // MARK: Packets and time

    /// An IP packet from packetdrill, framed as the gateway's.
    func receive(_ packet: UnsafeRawBufferPointer) throws(Errno) {
        guard let first = packet.first else { throw Errno(EINVAL) }
        if Self.hasUnspecifiedDestination(packet) {
            // This packetdrill gives a socket that is only bound (neither
            // listening nor connecting) no live addresses: its packets
            // could reach no stack. Say so rather than drop it silently.
            let reason = "netstack-packetdrill: packetdrill injected a packet with no destination address "
                + "(it cannot address a socket that is only bound)\n"
            _ = Array(reason.utf8).withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
            exit(1)
        }
        let etherType: UInt16 = first >> 4 == 6 ? 0x86dd : 0x0800
        var frame = [UInt8](repeating: 0, count: 14 + packet.count)
        frame.withUnsafeMutableBytes { bytes in
            for index in 0..<6 {
                bytes[index] = ScriptConfiguration.stackMAC[byte: index]
                bytes[6 + index] = ScriptConfiguration.gatewayMAC[byte: index]
            }
            bytes[12] = UInt8(etherType >> 8)
            bytes[13] = UInt8(etherType & 0xff)
            UnsafeMutableRawBufferPointer(rebasing: bytes[14...]).copyMemory(from: packet)
        }
        trace("in ", Array(packet))
        let stack = self.stack
        frame.withSpan { stack.receive(frame: $0, now: now) }
        collect()
        wakeWaiters()
    }

    static func hasUnspecifiedDestination(_ packet: UnsafeRawBufferPointer) -> Bool {
        switch packet.first.map({ $0 >> 4 }) {
        case 4?: packet.count >= 20 && packet[16..<20].allSatisfy { $0 == 0 }
        case 6?: packet.count >= 40 && packet[24..<40].allSatisfy { $0 == 0 }
        default: false
        }
    }

    /// The next packet the stack sends, waiting (in virtual time, through
    /// its timers) for one. A stack with no timer left, or none within an
    /// hour, will never send what the script waits for: the script ends.
    func nextPacket() -> (bytes: [UInt8], time: Instant) {
        let start = now
        while outbound.isEmpty {
            guard let deadline = stack.nextDeadline, deadline - start <= Self.longestWait else {
                let reason = "netstack-packetdrill: the script waits for a packet the stack does not send "
                    + "(at \(now) of virtual time, \(stackStorage?.nextDeadline == nil ? "no timer pending" : "no packet within an hour"));"
                    + " counters: \(stack.counters.nonZero.map { "\($0.name)=\($0.value)" }.joined(separator: " "))\n"
                _ = Array(reason.utf8).withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
                exit(1)
            }
            advance(to: deadline)
        }
        return outbound.removeFirst()
    }

    /// Moves virtual time to `target`, running each timer due on the way at
    /// its own time.
    func advance(to target: Instant) {
        // Before the first socket call or packet there is no stack yet
        // (the script's sysctls come first): only time passes.
        guard let stack = stackStorage else {
            now = max(now, target)
            return
        }
        var steps = 0
        while let deadline = stack.nextDeadline, deadline <= target, steps < 1_000_000 {
            steps += 1
            now = max(now, deadline)
            stack.poll(now: now)
            collect()
            wakeWaiters()
        }
        now = max(now, target)
        stack.poll(now: now)
        collect()
        wakeWaiters()
    }

    /// One microsecond passes, when the main thread reads the clock.
    func tick() {
        guard pthread_equal(pthread_self(), mainThread) != 0 else { return }
        advance(to: now + .microseconds(1))
    }

    /// Takes what the stack queued: IP packets go to packetdrill, anything
    /// else (none is expected: the gateway needs no resolution) is dropped.
    func collect() {
        guard let stack = stackStorage, stack.hasOutput else { return }
        stack.transmit { frame in
            guard frame.count > 14 else { return true }
            let etherType = UInt16(frame[12]) << 8 | UInt16(frame[13])
            if etherType == 0x0800 || etherType == 0x86dd {
                outbound.append((Array(frame[14...]), now))
                trace("out", Array(frame[14...]))
            }
            return true
        }
    }

    /// With NETSTACK_PACKETDRILL_TRACE set, each packet's addresses and
    /// length on standard error (packetdrill prints neither).
    private func trace(_ direction: String, _ packet: [UInt8]) {
        guard Self.tracing, let first = packet.first else { return }
        let text = packet.withSpan { bytes -> String in
            if first >> 4 == 4, packet.count >= 20 {
                return "\(IPv4Address(bytes, at: 12)) > \(IPv4Address(bytes, at: 16)) protocol \(packet[9])"
            }
            if first >> 4 == 6, packet.count >= 40 {
                return "\(IPv6Address(bytes, at: 8)) > \(IPv6Address(bytes, at: 24)) next \(packet[6])"
            }
            return "not IP"
        }
        let line = "netstack-packetdrill: \(now) \(direction) \(text), \(packet.count) bytes\n"
        _ = Array(line.utf8).withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }

    private static let tracing = getenv("NETSTACK_PACKETDRILL_TRACE") != nil

    /// Wakes a blocked call and waits until it has looked at the new state.
    private func wakeWaiters() {
        guard waiting > 0 else { return }
        generation &+= 1
        pendingLooks = waiting
        pthread_cond_broadcast(changed)
        while pendingLooks > 0 { pthread_cond_wait(settled, mutex) }
    }

    // MARK: Blocking

    /// `attempt`'s result once it has one: at once for a non-blocking call
    /// (nil then), else after waiting for packets and time, until
    /// `deadline` (nil: no limit; a wait on the main thread also ends when
    /// the stack has no timer left).
    func wait<R>(nonBlocking: Bool, deadline: Instant? = nil,
                 _ attempt: () throws(Errno) -> R?) throws(Errno) -> R? {
        if let result = try attempt() { return result }
        if nonBlocking { return nil }
        if let deadline, now >= deadline { return nil }
        if pthread_equal(pthread_self(), mainThread) != 0 {
            while true {
                let next = [stack.nextDeadline, deadline].compactMap { $0 }.min()
                guard let next else { return nil }
                advance(to: next)
                if let result = try attempt() { return result }
                if let deadline, now >= deadline { return nil }
            }
        }
        waiting += 1
        defer { waiting -= 1 }
        var seen = generation
        while true {
            pthread_cond_wait(changed, mutex)
            guard generation != seen else { continue }
            seen = generation
            let result: R?
            do {
                result = try attempt()
            } catch {
                look()
                throw error
            }
            let expired = deadline.map { now >= $0 } ?? false
            look()
            if result != nil || expired { return result }
        }
    }

    /// A woken waiter has looked.
    private func look() {
        pendingLooks -= 1
        pthread_cond_signal(settled)
    }

    /// The lowest free descriptor number, from 3 as in a fresh process.
    func freeDescriptor() -> Int32 {
        var fd: Int32 = 3
        while descriptors[fd] != nil { fd += 1 }
        return fd
    }

    func descriptor(_ fd: Int32) throws(Errno) -> Descriptor {
        guard let descriptor = descriptors[fd] else { throw Errno(EBADF) }
        return descriptor
    }
}
