import DequeModule
import Glibc
import Synchronization

/// Runs tasks on the engine's own thread, between batches of frames.
///
/// Socket workers, and services that ask for it (`withTaskExecutorPreference`),
/// run here: a socket operation from such a task reaches the stack with a
/// function call instead of a hop to another thread and back, and a reply
/// resumes its task in the same loop iteration that produced it. A request
/// that arrives with a frame (a 1-byte echo) is answered before the engine
/// next waits, with no thread woken on the way.
///
/// Jobs enqueued from other threads (a timer that fired, a client thread
/// resuming a continuation) wake the engine; jobs enqueued by jobs run in
/// the same pass.
public final class EngineExecutor: TaskExecutor, Sendable {
    private let jobs = Mutex<Deque<UnownedJob>>([])
    /// The engine's thread while its loop runs (0 otherwise).
    private let thread = Atomic<UInt>(0)
    private let wake: @Sendable () -> Void

    init(wake: @escaping @Sendable () -> Void) {
        self.wake = wake
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let wasEmpty = jobs.withLock { queue in
            queue.append(unowned)
            return queue.count == 1
        }
        // The engine looks at its jobs before it waits again; only another
        // thread's job has to wake it.
        if wasEmpty && !isEngineThread { wake() }
    }

    /// Whether the caller is the engine's thread.
    var isEngineThread: Bool { thread.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Marks the calling thread as the engine's, or (false) no thread.
    func adoptCurrentThread(_ adopt: Bool) {
        thread.store(adopt ? UInt(pthread_self()) : 0, ordering: .releasing)
    }

    var hasJobs: Bool { jobs.withLock { !$0.isEmpty } }

    /// Runs queued jobs, and those they enqueue, up to `limit` of them (so
    /// that frames are not starved). Returns how many ran.
    @discardableResult
    func runJobs(limit: Int = 4096) -> Int {
        var ran = 0
        while ran < limit, let job = jobs.withLock({ $0.popFirst() }) {
            job.runSynchronously(on: asUnownedTaskExecutor())
            ran += 1
        }
        return ran
    }
}
