import NetstackCore
import NetstackSockets
import Synchronization
import Testing

/// What the test handler saw, shared with the test.
final class Journal: Sendable {
    private let state = Mutex<(handled: [String], active: Int, maximumActive: Int, closes: Int)>(([], 0, 0, 0))

    func begin() { state.withLock { $0.active += 1; $0.maximumActive = max($0.maximumActive, $0.active) } }
    func end(_ entry: String) { state.withLock { $0.active -= 1; $0.handled.append(entry) } }
    func closed() { state.withLock { $0.closes += 1 } }

    var handled: [String] { state.withLock { $0.handled } }
    var maximumActive: Int { state.withLock { $0.maximumActive } }
    var closes: Int { state.withLock { $0.closes } }
}

/// A handler that records each request, taking a little time over it so that
/// overlapping calls would show.
struct RecordingHandler: SocketHandler, Sendable {
    enum Request: Sendable {
        case work(String, done: @Sendable () -> Void)
        case clone(@Sendable (RequestStream<Request>.Continuation) -> Void)
        case close
    }

    let journal: Journal

    mutating func handle(_ request: Request) async -> ControlFlow<Request> {
        switch request {
        case .work(let name, let done):
            journal.begin()
            await Task.yield()
            journal.end(name)
            done()
            return .proceed
        case .clone(let reply):
            let (stream, continuation) = RequestStream<Request>.makeStream()
            reply(continuation)
            return .merge(stream)
        case .close:
            return .closeStream
        }
    }

    consuming func close() async {
        journal.closed()
    }
}

@Suite struct SocketWorkerTests {
    func start(_ journal: Journal) -> (RequestStream<RecordingHandler.Request>.Continuation, Task<Void, Never>) {
        let (stream, continuation) = RequestStream<RecordingHandler.Request>.makeStream()
        let worker = SocketWorker(handler: RecordingHandler(journal: journal), requests: stream)
        return (continuation, Task { await worker.run() })
    }

    func clone(_ stream: RequestStream<RecordingHandler.Request>.Continuation) async
        -> RequestStream<RecordingHandler.Request>.Continuation {
        await withCheckedContinuation { continuation in
            stream.yield(.clone { continuation.resume(returning: $0) })
        }
    }

    func work(_ stream: RequestStream<RecordingHandler.Request>.Continuation, _ name: String) async {
        await withCheckedContinuation { continuation in
            stream.yield(.work(name, done: { continuation.resume() }))
        }
    }

    @Test func oneStreamIsServedInOrderAndNeverConcurrently() async {
        let journal = Journal()
        let (stream, task) = start(journal)
        for i in 0..<200 { stream.yield(.work("\(i)", done: {})) }
        stream.yield(.close)
        await task.value
        #expect(journal.handled == (0..<200).map { "\($0)" })
        #expect(journal.maximumActive == 1)
        #expect(journal.closes == 1)
    }

    @Test func clonesAreMergedAndStillSerialized() async {
        let journal = Journal()
        let (first, task) = start(journal)
        let second = await clone(first)
        // Both streams at once, from concurrent tasks.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for i in 0..<100 { await work(first, "a\(i)") } }
            group.addTask { for i in 0..<100 { await work(second, "b\(i)") } }
        }
        #expect(journal.handled.count == 200)
        #expect(journal.handled.filter { $0.hasPrefix("a") } == (0..<100).map { "a\($0)" })
        #expect(journal.handled.filter { $0.hasPrefix("b") } == (0..<100).map { "b\($0)" })
        #expect(journal.maximumActive == 1, "never two requests at once")
        first.yield(.close)
        second.yield(.close)
        await task.value
    }

    @Test func closingOneOfTwoStreamsKeepsTheSocket() async {
        let journal = Journal()
        let (first, task) = start(journal)
        let second = await clone(first)
        first.yield(.close)
        await work(second, "after")
        #expect(journal.closes == 0)
        #expect(journal.handled == ["after"])
        second.yield(.close)
        await task.value
        #expect(journal.closes == 1)
    }

    @Test func endingEveryStreamClosesExactlyOnce() async {
        let journal = Journal()
        let (first, task) = start(journal)
        let second = await clone(first)
        first.finish()
        await work(second, "still")
        second.finish()
        await task.value
        #expect(journal.closes == 1)
        #expect(journal.handled == ["still"])
    }

    @Test func requestsAfterCloseOnTheSameStreamAreNotHandled() async {
        let journal = Journal()
        let (stream, task) = start(journal)
        stream.yield(.close)
        stream.yield(.work("late", done: {}))
        stream.finish()
        await task.value
        #expect(journal.handled.isEmpty)
        #expect(journal.closes == 1)
    }

    @Test func tenThousandClonesAreAllServed() async {
        let journal = Journal()
        let (first, task) = start(journal)
        var clones: [RequestStream<RecordingHandler.Request>.Continuation] = []
        for _ in 0..<10_000 { clones.append(await clone(first)) }
        await withTaskGroup(of: Void.self) { group in
            for (index, stream) in clones.enumerated() {
                group.addTask { await work(stream, "\(index)") }
            }
        }
        #expect(Set(journal.handled) == Set((0..<10_000).map { "\($0)" }))
        #expect(journal.maximumActive == 1)
        for stream in clones { stream.yield(.close) }
        #expect(journal.closes == 0)
        first.finish()
        await task.value
        #expect(journal.closes == 1)
    }
}
