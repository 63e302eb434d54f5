/// The buffer's serving task has ended (the service was dropped).
public struct BufferClosedError: Error, Equatable {
    public init() {}
}

/// Lets many tasks call one service that is not `Sendable`: the service
/// moves into a task of its own, which serves queued requests one at a time.
/// At most `capacity` requests wait in the queue; further callers wait for a
/// place (cancellably). The buffer is `Sendable` and copies share the queue;
/// when the last copy goes away, the serving task finishes what is queued
/// and ends.
public struct Buffer<Request: Sendable, Response: Sendable>: Service, Sendable {
    private struct Job: Sendable {
        let request: Request
        let reply: CheckedContinuation<Response, any Error>
    }

    /// Ends the job stream when the last copy of the buffer is released.
    private final class Queue: Sendable {
        let jobs: AsyncStream<Job>.Continuation
        let places: AsyncSemaphore
        init(jobs: AsyncStream<Job>.Continuation, capacity: Int) {
            self.jobs = jobs
            places = AsyncSemaphore(permits: capacity)
        }
        deinit { jobs.finish() }
    }

    private let queue: Queue

    public init<S: Service>(_ service: sending S, capacity: Int)
    where S.Request == Request, S.Response == Response, S: SendableMetatype {
        let (jobs, continuation) = AsyncStream.makeStream(of: Job.self)
        let queue = Queue(jobs: continuation, capacity: capacity)
        let places = queue.places
        Task {
            for await job in jobs {
                places.release()
                do {
                    job.reply.resume(returning: try await service.call(job.request))
                } catch {
                    job.reply.resume(throwing: error)
                }
            }
        }
        self.queue = queue
    }

    public func call(_ request: Request) async throws -> Response {
        try await queue.places.acquire()
        return try await withCheckedThrowingContinuation { reply in
            if case .terminated = queue.jobs.yield(Job(request: request, reply: reply)) {
                queue.places.release()
                reply.resume(throwing: BufferClosedError())
            }
        }
    }
}
