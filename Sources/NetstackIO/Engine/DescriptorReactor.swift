import CTap
import Glibc

/// Readiness of descriptors that tasks on the engine read and write without
/// blocking (the control connections of local programs): the engine's epoll
/// reports them edge-triggered, and a task waiting for one is resumed.
///
/// Each readiness event grants one attempt: `waitReadable` returns at once if
/// an event came since the last wait, else when the next one comes. A task
/// reads until EAGAIN, then waits. A hang-up (the peer closed or shut down
/// its side) is reported once, and makes the descriptor readable (a read then
/// sees the end). Engine thread only.
final class DescriptorReactor {
    private struct Watched {
        var readable = true
        var writable = true
        var readers: [CheckedContinuation<Bool, Never>] = []
        var writers: [CheckedContinuation<Bool, Never>] = []
        var hangup: (@Sendable () -> Void)?
        var hungUp = false
    }

    private let poller: Int32
    private var watched: [Int32: Watched] = [:]
    /// Tags at and above this are the reactor's (the descriptor added).
    static let firstTag: UInt64 = 1 << 40

    init(poller: Int32) {
        self.poller = poller
    }

    var count: Int { watched.count }

    /// Starts watching `descriptor` (made non-blocking); `hangup` runs once
    /// when the peer goes away. False if epoll refused it.
    func watch(_ descriptor: Int32, hangup: (@Sendable () -> Void)?) -> Bool {
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
        let events = UInt32(CTAP_EPOLL_IN | CTAP_EPOLL_OUT | CTAP_EPOLL_RDHUP) | CTAP_EPOLL_EDGE
        guard ctap_epoll_add(poller, descriptor, events, Self.firstTag + UInt64(descriptor)) == 0 else { return false }
        watched[descriptor] = Watched(hangup: hangup)
        return true
    }

    /// Stops watching; waiting tasks are resumed (they find the descriptor gone).
    func unwatch(_ descriptor: Int32) {
        guard let entry = watched.removeValue(forKey: descriptor) else { return }
        _ = ctap_epoll_remove(poller, descriptor)
        for waiter in entry.readers + entry.writers { waiter.resume(returning: false) }
    }

    func ready(tag: UInt64, events: UInt32) {
        let descriptor = Int32(truncatingIfNeeded: tag - Self.firstTag)
        guard var entry = watched[descriptor] else { return }
        let hangup = events & UInt32(CTAP_EPOLL_HUP | CTAP_EPOLL_RDHUP | CTAP_EPOLL_ERR) != 0
        var resumed: [CheckedContinuation<Bool, Never>] = []
        if events & UInt32(CTAP_EPOLL_IN) != 0 || hangup {
            entry.readable = true
            resumed += entry.readers
            entry.readers.removeAll()
        }
        if events & UInt32(CTAP_EPOLL_OUT) != 0 || hangup {
            entry.writable = true
            resumed += entry.writers
            entry.writers.removeAll()
        }
        var report: (@Sendable () -> Void)?
        if hangup && !entry.hungUp {
            entry.hungUp = true
            report = entry.hangup
        }
        watched[descriptor] = entry
        for waiter in resumed { waiter.resume(returning: true) }
        report?()
    }

    /// Resumes at once (true) if the descriptor was reported readable since
    /// the last call, else when it next is; false if it is not watched (any
    /// more).
    func waitReadable(_ descriptor: Int32, _ continuation: CheckedContinuation<Bool, Never>) {
        guard var entry = watched[descriptor] else { return continuation.resume(returning: false) }
        if entry.readable {
            watched[descriptor]?.readable = false
            return continuation.resume(returning: true)
        }
        entry.readers.append(continuation)
        watched[descriptor] = entry
    }

    func waitWritable(_ descriptor: Int32, _ continuation: CheckedContinuation<Bool, Never>) {
        guard var entry = watched[descriptor] else { return continuation.resume(returning: false) }
        if entry.writable {
            watched[descriptor]?.writable = false
            return continuation.resume(returning: true)
        }
        entry.writers.append(continuation)
        watched[descriptor] = entry
    }

    /// Resumes every waiting task (the engine is stopping).
    func closeAll() {
        for descriptor in Array(watched.keys) { unwatch(descriptor) }
    }
}
