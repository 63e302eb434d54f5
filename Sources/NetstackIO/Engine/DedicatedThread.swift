import CTap
import Glibc
import Synchronization

/// A POSIX thread running one long job (the engine loop), outside Swift's
/// cooperative pool so that blocking in `poll` never starves tasks.
public final class DedicatedThread: Sendable {
    private enum State {
        case running
        case waiting(CheckedContinuation<Void, Never>)
        case finished
    }

    private let state = Mutex<State>(.running)

    /// Starts `body` on a new thread named `name` (at most 15 characters;
    /// what `top -H` and profilers show).
    public init(name: String = "netstack-engine", _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ThreadStart(thread: self, name: name, body: body))
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            let start = Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue()
            _ = ctap_name_thread(start.name)
            start.body()
            start.thread.finish()
            return nil
        }, box.toOpaque())
        pthread_attr_destroy(&attributes)
        if rc != 0 {
            box.release()
            fatalError("pthread_create failed: \(rc)")
        }
    }

    /// Waits until the thread's job has returned.
    public func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let finished = state.withLock { state -> Bool in
                if case .finished = state { return true }
                state = .waiting(continuation)
                return false
            }
            if finished { continuation.resume() }
        }
    }

    private func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state = .finished }
            if case .waiting(let continuation) = state { return continuation }
            return nil
        }
        waiter?.resume()
    }
}

private final class ThreadStart: Sendable {
    let thread: DedicatedThread
    let name: String
    let body: @Sendable () -> Void
    init(thread: DedicatedThread, name: String, body: @escaping @Sendable () -> Void) {
        self.thread = thread
        self.name = name
        self.body = body
    }
}
