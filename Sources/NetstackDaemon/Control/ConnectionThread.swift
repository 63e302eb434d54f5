import Foundation
import Glibc

/// A thread that runs one control connection's task (a `TaskExecutor`), so
/// that the connection's blocking reads and writes block only it. While it
/// has no job, it waits in `poll` on a pipe (new jobs) and on the
/// client's socket for a hang-up, reported once through `onHangup`: a
/// client that goes away while its request waits (an accept, a receive)
/// gets its socket closed without waiting for the network.
final class ConnectionThread: TaskExecutor, @unchecked Sendable {
    // @unchecked: `jobs` and `stopping` are touched only with `lock` held;
    // `wakeup`, `client` and `onHangup` are set in init and never change;
    // `hangupReported` is touched only by the thread itself.
    private let lock = NSLock()
    private var jobs: [UnownedJob] = []
    private var stopping = false
    private var hangupReported = false
    private let wakeup: (read: Int32, write: Int32)
    private let client: Int32
    /// Linux's POLLRDHUP (the peer shut down its side), which Glibc's module
    /// leaves out without _GNU_SOURCE.
    private static let peerHangup: Int16 = 0x2000
    private let onHangup: @Sendable () -> Void

    init(client: Int32, onHangup: @escaping @Sendable () -> Void) {
        self.client = client
        self.onHangup = onHangup
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) == 0 {
            for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            _ = fcntl(ends[1], F_SETFL, O_NONBLOCK)   // a full pipe already means "wake up"
        }
        wakeup = (ends[0], ends[1])
        let thread = Thread { [self] in run() }
        thread.name = "netstackd-control"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        lock.withLock { jobs.append(job) }
        signal()
    }

    /// Ends the thread once its queued jobs have run.
    func stop() {
        lock.withLock { stopping = true }
        signal()
    }

    private func signal() {
        var one: UInt8 = 1
        _ = write(wakeup.write, &one, 1)
    }

    private func run() {
        while true {
            let (batch, stop) = lock.withLock { () -> ([UnownedJob], Bool) in
                defer { jobs.removeAll(keepingCapacity: true) }
                return (jobs, stopping)
            }
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
            if !batch.isEmpty { continue }
            if stop { break }
            waitForWork()
        }
        close(wakeup.read)
        close(wakeup.write)
    }

    private func waitForWork() {
        var fds = [pollfd(fd: wakeup.read, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: client, events: Self.peerHangup, revents: 0)]
        _ = poll(&fds, hangupReported ? 1 : 2, -1)
        if fds[0].revents != 0 {
            var drained = [UInt8](repeating: 0, count: 64)
            _ = read(wakeup.read, &drained, drained.count)
        }
        if !hangupReported, fds[1].revents & (Self.peerHangup | Int16(POLLHUP | POLLERR)) != 0 {
            hangupReported = true
            onHangup()
        }
    }
}
