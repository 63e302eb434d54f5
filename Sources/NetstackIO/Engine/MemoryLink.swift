import CTap
import DequeModule
import Glibc
import Synchronization

/// Two devices joined back to back in memory: what one sends, the other
/// receives. Lets two engines (two stacks) talk inside one process, for tests
/// of everything above the device with real threads and real sockets code.
public final class MemoryLink: Sendable {
    public let first: MemoryLinkEnd
    public let second: MemoryLinkEnd

    public init() throws(TapError) {
        first = try MemoryLinkEnd()
        second = try MemoryLinkEnd()
        first.peer.withLock { $0.end = second }
        second.peer.withLock { $0.end = first }
    }
}

/// One end of a `MemoryLink`. Frames are copied across (this is for tests,
/// not the fast path); `drop` can make the link lose frames.
public final class MemoryLinkEnd: FrameDevice, Sendable {
    private let inbound = Mutex<Deque<[UInt8]>>([])
    /// Weak, so the two ends do not keep each other (and their eventfds) alive.
    fileprivate let peer = Mutex(WeakPeer())
    private let descriptor: Int32
    /// Frames sent through this end that the link lost on purpose.
    public let lost = Atomic<Int>(0)
    private let dropFilter = Mutex<(@Sendable ([UInt8]) -> Bool)?>(nil)

    init() throws(TapError) {
        let fd = ctap_eventfd()
        guard fd >= 0 else { throw TapError(interface: "memory", operation: .poll, code: -fd) }
        descriptor = fd
    }

    deinit {
        close(descriptor)
    }

    /// Frames for which `filter` returns true are lost instead of delivered.
    public func drop(where filter: (@Sendable ([UInt8]) -> Bool)?) {
        dropFilter.withLock { $0 = filter }
    }

    public var readinessDescriptor: Int32 { descriptor }

    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        inbound.withLock { queue -> Int? in
            guard let frame = queue.popFirst() else {
                // Empty: clear the eventfd under the lock, so no wake-up is lost.
                var count: UInt64 = 0
                _ = read(descriptor, &count, 8)
                return nil
            }
            let length = min(frame.count, buffer.count)
            frame.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            return length
        }
    }

    public func send(_ frame: UnsafeRawBufferPointer) throws -> Bool {
        let bytes = Array(frame)
        if let filter = dropFilter.withLock({ $0 }), filter(bytes) {
            lost.add(1, ordering: .relaxed)
            return true
        }
        peer.withLock { $0.end }?.deliver(bytes)
        return true
    }

    /// Queues a frame as if the peer had sent it.
    public func deliver(_ frame: [UInt8]) {
        inbound.withLock { queue in
            queue.append(frame)
            var one: UInt64 = 1
            _ = write(descriptor, &one, 8)
        }
    }
}

fileprivate struct WeakPeer {
    weak var end: MemoryLinkEnd?
}
