import NetstackCore
import Synchronization

/// The way back for one request's answer: resumed exactly once (the lock
/// takes the continuation out for the first answer; later ones find none).
/// If it is dropped unanswered (the socket closed with the request still
/// queued), it answers `SocketError.closed` itself, so no caller waits forever.
public final class Reply<Success: Sendable>: Sendable {
    private let continuation: Mutex<UnsafeContinuation<Result<Success, SocketError>, Never>?>

    init(_ continuation: UnsafeContinuation<Result<Success, SocketError>, Never>) {
        self.continuation = Mutex(continuation)
    }

    deinit {
        continuation.withLock { $0.take() }?.resume(returning: .failure(.closed))
    }

    /// Answers; later answers are ignored.
    public func send(_ result: Result<Success, SocketError>) {
        continuation.withLock { $0.take() }?.resume(returning: result)
    }

    public func succeed(_ value: Success) { send(.success(value)) }
    public func fail(_ error: SocketError) { send(.failure(error)) }

    /// Sends a request carrying a new reply through `sink`, and waits for the answer.
    static func ask(_ sink: (Reply<Success>) -> Bool) async throws(SocketError) -> Success {
        let result = await withUnsafeContinuation { continuation in
            let reply = Reply(continuation)
            if !sink(reply) { reply.fail(.closed) }
        }
        return try result.get()
    }
}

extension Reply where Success == Void {
    public func succeed() { send(.success(())) }
}
