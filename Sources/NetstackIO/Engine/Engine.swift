import CTap
import Glibc
import Logging
import NetstackCore
import NetstackWire
import Synchronization

/// Runs a `Stack` on a `FrameDevice`, on a thread of its own.
///
/// The loop waits (with epoll) on the device, on a wake-up descriptor and on
/// the descriptors of bridged sockets, until the stack's next deadline. Then
/// it receives every frame that is ready (up to a batch), feeds each to the
/// stack, runs due timers, work submitted from other threads and the tasks
/// that run here, moves bridged bytes, and sends everything the stack queued.
/// One receive buffer is reused for every frame, so the loop allocates
/// nothing per frame; the stack copies what it keeps.
///
/// Other threads talk to the engine only through `submit(_:)` and `stop()`;
/// the stack itself is touched by the engine thread alone.
public final class Engine<Device: FrameDevice & ~Copyable>: @unchecked Sendable {
    // @unchecked: `stack`, `device`, `receiveBuffer` and the
    // statistics are used only by the engine thread (inside `run()`), or by
    // other threads strictly before `run()` starts and after it returned (the
    // thread start and join order those accesses). Everything other threads
    // use at any time is `mailbox` (a Mutex and an eventfd), `sockets` (which
    // only submits to the mailbox) and `stopping` (an Atomic).

    /// What the engine drives. Touch it only from work submitted to the engine,
    /// or after `run()` has returned.
    public let stack: Stack
    private let device: Device
    private let logger: Logger
    private let statisticsInterval: Duration?
    private let stopping = Atomic<Bool>(false)
    private let mailbox: EngineMailbox
    /// Socket operations, run on this engine's thread.
    public let sockets: SocketRuntime
    /// Tasks that run on this engine's thread (socket workers, and services
    /// that prefer it): their socket operations need no hop.
    public let executor: EngineExecutor
    private var receiveBuffer: [UInt8]
    /// Frames handled per batch before the loop looks at timers and output.
    private let batchLimit = 256
    /// The epoll set: the device (tag 0), the mailbox (tag 1), bridges.
    private let poller: Int32

    /// How long the loop keeps polling without sleeping after the last
    /// frame or request (nil: it sleeps at once). Spinning saves the wake-up
    /// of a sleeping thread on the next frame, at the price of a busy core
    /// while traffic lasts.
    private let busyPoll: Duration?

    public init(stack: Stack, device: consuming Device, logger: Logger,
                statisticsInterval: Duration? = .seconds(10), busyPoll: Duration? = nil) throws(TapError) {
        self.busyPoll = busyPoll
        let mailbox = try EngineMailbox(stack: stack)
        self.mailbox = mailbox
        let poller = ctap_epoll_create()
        guard poller >= 0 else { throw TapError(interface: "engine", operation: .poll, code: -poller) }
        for (descriptor, tag) in [(device.readinessDescriptor, Self.deviceTag), (mailbox.wakeDescriptor, Self.mailboxTag)] {
            let rc = ctap_epoll_add(poller, descriptor, UInt32(CTAP_EPOLL_IN), tag)
            guard rc == 0 else {
                close(poller)
                throw TapError(interface: "engine", operation: .poll, code: -rc)
            }
        }
        self.poller = poller
        executor = EngineExecutor(wake: { [mailbox] in mailbox.wake() })
        sockets = SocketRuntime(submit: { [mailbox] work in mailbox.submit(work) }, executor: executor,
                                poller: poller)
        self.stack = stack
        self.device = device
        self.logger = logger
        self.statisticsInterval = statisticsInterval
        // The largest frame a TAP gives: a virtio header, then an Ethernet
        // header and a 64 KiB packet (a large segment from the kernel).
        receiveBuffer = [UInt8](repeating: 0, count: 128 * 1024)
    }

    deinit {
        close(poller)
    }

    private static var deviceTag: UInt64 { 0 }
    private static var mailboxTag: UInt64 { 1 }

    /// Runs `work` on the engine thread, with the stack, soon. Once the loop
    /// has ended, runs it right away.
    public func submit(_ work: @escaping @Sendable (Stack) -> Void) {
        mailbox.submit(work)
    }

    /// Runs `body` with the stack on the engine thread and returns its result.
    public func query<R: Sendable>(_ body: @escaping @Sendable (Stack) -> R) async -> R {
        await withCheckedContinuation { continuation in
            submit { stack in continuation.resume(returning: body(stack)) }
        }
    }

    /// Whether the loop has ended.
    public var hasFinished: Bool { mailbox.hasFinished }

    /// Asks the loop to end; `run()` returns after its current iteration.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        mailbox.wake()
    }

    /// The loop. Returns when `stop()` was called, or throws on a device error.
    public func run() throws {
        executor.adoptCurrentThread(true)
        defer {
            // Nothing will wake parked socket operations any more: end them
            // ("closed"), then run what was submitted meanwhile.
            sockets.cancelAllWaits()
            mailbox.finish()
            executor.adoptCurrentThread(false)
            // Tasks still queued here finish elsewhere: their operations
            // now run at once (the mailbox has finished) and fail "closed".
            let leftover = EngineLeftovers(executor)
            Task.detached { leftover.run() }
        }
        var lastStatistics = SystemClock.monotonic()
        var readyTags = [UInt64](repeating: 0, count: 256)
        var readyEvents = [UInt32](repeating: 0, count: 256)
        var pending: [@Sendable (Stack) -> Void] = []
        pending.reserveCapacity(64)
        var lastActivity = SystemClock.monotonic()
        while !stopping.load(ordering: .acquiring) {
            let now = SystemClock.monotonic()
            var deadline = stack.nextDeadline
            if let held = device.nextDeadline, deadline.map({ held < $0 }) ?? true { deadline = held }
            let busy = stack.hasOutput || stack.hasSocketEvents || executor.hasJobs
            // While spinning, the wait does not sleep: no wake-up to pay on
            // the next frame.
            let spinning = busyPoll.map { now - lastActivity < $0 } ?? false
            var timeout: Int32 = 1000
            if busy || spinning {
                timeout = 0
            } else if let deadline {
                let milliseconds = (deadline.nanoseconds - now.nanoseconds + 999_999) / 1_000_000
                timeout = Int32(clamping: max(0, min(milliseconds, 1000)))
            }
            let ready = readyTags.withUnsafeMutableBufferPointer { tags in
                readyEvents.withUnsafeMutableBufferPointer { events in
                    ctap_epoll_wait(poller, tags.baseAddress, events.baseAddress, Int32(tags.count), timeout)
                }
            }
            if ready < 0 && ready != -EINTR {
                throw TapError(interface: "engine", operation: .poll, code: -ready)
            }
            var bridged = false
            for index in 0..<max(0, Int(ready)) {
                switch readyTags[index] {
                case Self.deviceTag: break
                case Self.mailboxTag: mailbox.clearWake()
                default:
                    sockets.descriptorReady(tag: readyTags[index], events: readyEvents[index])
                    bridged = true
                }
            }
            let current = SystemClock.monotonic()
            mailbox.take(into: &pending)
            let submitted = !pending.isEmpty
            for work in pending { work(stack) }
            pending.removeAll(keepingCapacity: true)
            try device.poll(now: current)
            let received = try receiveBatch(now: current)
            if received > 0 || submitted || bridged {
                lastActivity = current
            } else if spinning && !busy && !executor.hasJobs && (deadline.map { $0 > current } ?? true) {
                // Let anything else runnable on this core (a client of the
                // stack, say) go first: spinning must not delay it.
                sched_yield()
                continue
            }
            stack.poll(now: current)
            // What the stack answered by itself (echo replies, SYN-ACKs,
            // ACKs) leaves before the tasks run.
            try transmit()
            sockets.deliverEvents(stack)
            // The tasks those events resumed, and the operations they start
            // (answered here, so a reply leaves with this batch).
            mailbox.runJobs(executor)
            sockets.deliverEvents(stack)
            try transmit()
            for notice in stack.takeNotices() { logger.log(level: notice.isWarning ? .warning : .info, "\(notice)") }
            if let interval = statisticsInterval, current - lastStatistics >= interval {
                lastStatistics = current
                logger.info("counters: \(Self.summary(stack.counters))")
            }
        }
        try transmit()
    }

    /// Receives up to a batch of frames; how many there were.
    private func receiveBatch(now: Instant) throws -> Int {
        for count in 0..<batchLimit {
            let length = try receiveBuffer.withUnsafeMutableBytes { try device.receive(into: $0) }
            guard let length else { return count }
            receiveBuffer.withUnsafeBytes { all in
                let frame = UnsafeRawBufferPointer(rebasing: all[0..<length])
                stack.receive(frame: RawSpan(_unsafeBytes: frame), now: now)
            }
        }
        return batchLimit
    }

    private func transmit() throws {
        var failure: (any Error)?
        stack.transmit { frame in
            do {
                return try device.send(frame)
            } catch {
                failure = error
                return false
            }
        }
        if let failure { throw failure }
    }

    /// `name=value` pairs of every non-zero counter.
    public static func summary(_ counters: Counters) -> String {
        counters.nonZero.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
    }
}

/// Work submitted to the engine thread from other threads, and the eventfd
/// that wakes the loop for it.
final class EngineMailbox: @unchecked Sendable {
    // @unchecked: `stack` is used here only under `state`'s lock once the loop
    // has finished (`finished == true`): the engine thread no longer touches
    // it then, so work runs at once on the submitting thread, one at a time.
    // Before that, `submit` touches it directly only on the engine thread
    // while `runningJobs` is set, and only that thread reads or writes
    // `runningJobs` (other threads see that they are not the engine's thread
    // before they would look at it).
    private let stack: Stack
    private let state = Mutex<(work: [@Sendable (Stack) -> Void], finished: Bool)>(([], false))
    private var runningJobs = false
    private var executor: EngineExecutor?
    let wakeDescriptor: Int32

    init(stack: Stack) throws(TapError) {
        let descriptor = ctap_eventfd()
        guard descriptor >= 0 else { throw TapError(interface: "engine", operation: .poll, code: -descriptor) }
        wakeDescriptor = descriptor
        self.stack = stack
    }

    deinit {
        close(wakeDescriptor)
    }

    func submit(_ work: @escaping @Sendable (Stack) -> Void) {
        // A task running on the engine (between batches): the work runs now.
        if let executor, executor.isEngineThread, runningJobs {
            work(stack)
            return
        }
        let queued = state.withLock { state -> Bool in
            if state.finished {
                work(stack)
                return false
            }
            state.work.append(work)
            return true
        }
        if queued { wake() }
    }

    /// Runs the executor's jobs on the engine thread; the socket operations
    /// they submit run inline.
    func runJobs(_ executor: EngineExecutor) {
        self.executor = executor
        runningJobs = true
        executor.runJobs()
        runningJobs = false
    }

    /// Moves the queued work into `pending` (which must be empty).
    func take(into pending: inout [@Sendable (Stack) -> Void]) {
        state.withLock { swap(&pending, &$0.work) }
    }

    var hasFinished: Bool { state.withLock { $0.finished } }

    /// Marks the loop as ended and runs the work that arrived meanwhile.
    func finish() {
        state.withLock { state in
            state.finished = true
            for work in state.work { work(stack) }
            state.work.removeAll()
        }
    }

    func wake() {
        var one: UInt64 = 1
        _ = write(wakeDescriptor, &one, 8)
    }

    func clearWake() {
        var count: UInt64 = 0
        _ = read(wakeDescriptor, &count, 8)
    }
}

/// The jobs an engine's executor still holds when its loop ends, run on the
/// global executor so that their tasks see the engine closed and finish.
private struct EngineLeftovers: @unchecked Sendable {
    // @unchecked: the executor is Sendable; this only carries it to one
    // detached task, which alone calls `runJobs` after the loop has ended.
    let executor: EngineExecutor
    init(_ executor: EngineExecutor) { self.executor = executor }
    func run() {
        while executor.runJobs() > 0 {}
    }
}
