import CTap
import Glibc
import NetstackWire
import Synchronization

/// Captures frames without slowing the engine: the engine copies each frame
/// into a bounded queue, and a thread of the capture's own filters, encodes
/// and writes them to a file (optionally rotated) and to live readers (the
/// control connections of `netstackctl capture`).
///
/// Nothing here blocks the engine. A full queue drops the frame (counted as
/// `capture.dropped`); a live reader that does not keep up loses frames
/// (`capture.liveDropped`) while the others, and the file, get them all. With
/// no file and no reader, `record` is one atomic load.
public final class FrameCapture: Sendable {
    /// Bytes the queue holds between two wake-ups of the writer thread.
    public static let queueBytes = 8 << 20
    /// Output held for one live reader before its frames are dropped.
    public static let liveBufferBytes = 4 << 20
    /// Live readers at once.
    public static let maximumLiveReaders = 8
    /// The per-record header in the queue: timestamp, length, direction.
    private static let recordHeader = 13

    private struct Shared {
        var filling: [UInt8] = []
        var newReaders: [(descriptor: Int32, filter: String?, format: CaptureFormat, preamble: [UInt8])] = []
        var stopping = false
    }

    private let shared = Mutex(Shared())
    /// The file (0 or 1) and the live readers: while zero, nothing is queued.
    private let sinks = Atomic<Int>(0)
    private let liveReaders = Atomic<Int>(0)
    private let queued = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)
    private let written = Atomic<Int>(0)
    private let liveDropped = Atomic<Int>(0)
    private let writeErrors = Atomic<Int>(0)
    private let wakeDescriptor: Int32
    private let thread: DedicatedThread
    /// The file's filter, applied by the engine before it copies a frame
    /// while the file is the only sink: frames nobody wants are not copied.
    private let fileOnly: EngineSideFilter?

    /// Starts the writer thread; `file`, if given, receives every frame that
    /// matches its filter. `report` is told of a failed file write once.
    public init(file: sending PcapWriter?, report: @escaping @Sendable (String) -> Void = { _ in }) {
        let wake = ctap_eventfd()
        wakeDescriptor = wake
        fileOnly = file?.filterExpression.flatMap { try? PcapFilter($0, snapshotLength: PcapEncoder().snapshotLength) }
            .map(EngineSideFilter.init)
        if file != nil { sinks.store(1, ordering: .relaxed) }
        let writer = CaptureWriter(file: file)
        thread = DedicatedThread(name: "netstack-pcap") { [writer] in writer.run() }
        writer.capture = self
        writer.report = report
        writer.start.send()
    }

    deinit {
        close(wakeDescriptor)
    }

    /// Whether anything listens (a file or a live reader).
    public var isActive: Bool { sinks.load(ordering: .relaxed) > 0 }

    /// Queues `frame` (engine thread). Drops it when the queue is full.
    public func record(_ frame: UnsafeRawBufferPointer, direction: CaptureDirection) {
        guard isActive else { return }
        if let fileOnly, liveReaders.load(ordering: .relaxed) == 0,
           !fileOnly.filter.matches(frame, originalLength: frame.count) {
            return
        }
        var stamp = SystemClock.wallClock().totalNanoseconds
        var length = UInt32(frame.count)
        var way = direction.rawValue
        let wake = shared.withLock { shared -> Bool? in
            guard shared.filling.count + Self.recordHeader + frame.count <= Self.queueBytes else { return nil }
            let wasEmpty = shared.filling.isEmpty
            withUnsafeBytes(of: &stamp) { shared.filling.append(contentsOf: $0) }
            withUnsafeBytes(of: &length) { shared.filling.append(contentsOf: $0) }
            withUnsafeBytes(of: &way) { shared.filling.append(contentsOf: $0) }
            shared.filling.append(contentsOf: frame)
            return wasEmpty
        }
        guard let wake else {
            dropped.add(1, ordering: .relaxed)
            return
        }
        queued.add(1, ordering: .relaxed)
        if wake { signal() }
    }

    /// Streams every frame matching `filter` to `descriptor` (a connected
    /// stream socket the capture owns and closes once this returned), as a
    /// capture file in `format` after the bytes of `preamble`, until the
    /// reader goes away.
    public func addLiveReader(_ descriptor: Int32, filter: String?, format: CaptureFormat,
                              preamble: [UInt8] = []) throws(CaptureError) {
        // Compiled here to report a bad expression to the asker; the writer
        // thread compiles its own copy.
        if let filter {
            do { _ = try PcapFilter(filter, snapshotLength: PcapEncoder().snapshotLength) } catch {
                throw .pcap(error)
            }
        }
        let accepted = shared.withLock { shared -> Bool in
            guard !shared.stopping, liveReaders.load(ordering: .relaxed) < Self.maximumLiveReaders else { return false }
            liveReaders.add(1, ordering: .relaxed)
            shared.newReaders.append((descriptor, filter, format, preamble))
            return true
        }
        guard accepted else { throw .tooManyReaders(Self.maximumLiveReaders) }
        sinks.add(1, ordering: .relaxed)
        signal()
    }

    /// Writes what is queued, closes the file and the live readers, and ends
    /// the writer thread. Call once the engine has stopped.
    public func finish() async {
        shared.withLock { $0.stopping = true }
        signal()
        await thread.wait()
    }

    /// The capture's counters, for `netstackctl stats` and /metrics.
    public var counters: [(name: String, value: Int)] {
        [("capture.queued", queued.load(ordering: .relaxed)), ("capture.dropped", dropped.load(ordering: .relaxed)),
         ("capture.written", written.load(ordering: .relaxed)),
         ("capture.liveReaders", liveReaders.load(ordering: .relaxed)),
         ("capture.liveDropped", liveDropped.load(ordering: .relaxed)),
         ("capture.writeErrors", writeErrors.load(ordering: .relaxed))]
    }

    private func signal() {
        var one: UInt64 = 1
        _ = write(wakeDescriptor, &one, 8)
    }

    // MARK: The writer thread's side

    fileprivate var wake: Int32 { wakeDescriptor }

    /// Swaps the queue for `empty`; the new readers; whether to stop.
    fileprivate func take(_ buffer: inout [UInt8]) -> (readers: [(Int32, String?, CaptureFormat, [UInt8])], stopping: Bool) {
        shared.withLock { shared in
            swap(&buffer, &shared.filling)
            defer { shared.newReaders.removeAll() }
            return (shared.newReaders.map { ($0.descriptor, $0.filter, $0.format, $0.preamble) }, shared.stopping)
        }
    }

    fileprivate func count(written frames: Int, liveDropped lost: Int) {
        if frames > 0 { written.add(frames, ordering: .relaxed) }
        if lost > 0 { liveDropped.add(lost, ordering: .relaxed) }
    }

    fileprivate func readerEnded() {
        liveReaders.subtract(1, ordering: .relaxed)
        sinks.subtract(1, ordering: .relaxed)
    }

    fileprivate func fileFailed() {
        writeErrors.add(1, ordering: .relaxed)
        sinks.subtract(1, ordering: .relaxed)
    }
}

/// The engine's copy of the file's filter.
private final class EngineSideFilter: @unchecked Sendable {
    // @unchecked: `filter` is used only by `FrameCapture.record`, which the
    // engine thread alone calls (one thread, one frame at a time); the BPF
    // program is never changed after it was compiled in `init`.
    let filter: PcapFilter
    init(_ filter: PcapFilter) { self.filter = filter }
}

/// Why a live capture was refused.
public enum CaptureError: Error, Hashable, Sendable, CustomStringConvertible {
    case pcap(PcapError)
    case tooManyReaders(Int)

    public var description: String {
        switch self {
        case .pcap(let error): "\(error)"
        case .tooManyReaders(let limit): "\(limit) live captures are running already"
        }
    }
}

/// The writer thread's state: the file and the live readers.
private final class CaptureWriter: @unchecked Sendable {
    // @unchecked: `capture`, `report` and `start` are set by `FrameCapture.init`
    // before `start.send()`, and the thread reads them only after
    // `start.wait()` returns (a semaphore orders the two). Everything else is
    // touched by the writer thread alone.
    weak var capture: FrameCapture?
    var report: @Sendable (String) -> Void = { _ in }
    let start = Semaphore()
    private var file: PcapWriter?
    private var readers: [LiveReader] = []

    init(file: sending PcapWriter?) {
        self.file = file
    }

    func run() {
        start.wait()
        guard let capture else { return }
        let wake = capture.wake
        var draining: [UInt8] = []
        var stopping = false
        while true {
            var descriptors = [pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
            for reader in readers {
                descriptors.append(pollfd(fd: reader.descriptor,
                                          events: Int16(POLLIN) | (reader.output.isEmpty ? 0 : Int16(POLLOUT)), revents: 0))
            }
            if !stopping {
                _ = poll(&descriptors, nfds_t(descriptors.count), 1000)
            }
            if descriptors[0].revents & Int16(POLLIN) != 0 {
                var count: UInt64 = 0
                _ = read(wake, &count, 8)
            }
            // Readers that went away (a closed connection, or bytes the
            // reader should not send) end here, before anything is queued.
            for (index, entry) in descriptors.enumerated().dropFirst() where entry.revents != 0 {
                readers[index - 1].checkHangUp(entry.revents)
            }
            let (added, stop) = capture.take(&draining)
            for (descriptor, filter, format, preamble) in added {
                readers.append(LiveReader(descriptor: descriptor, filter: filter, format: format, preamble: preamble))
            }
            stopping = stop
            let frames = deliver(draining)
            draining.removeAll(keepingCapacity: true)
            if let current = file {
                do throws(PcapError) {
                    try current.flush()
                } catch {
                    report("capture stopped: \(error)")
                    file = nil
                    capture.fileFailed()
                }
            }
            var lost = 0
            for index in readers.indices {
                readers[index].flush()
                lost += readers[index].dropped
                readers[index].dropped = 0
            }
            capture.count(written: frames, liveDropped: lost)
            readers.removeAll { reader in
                guard reader.ended else { return false }
                close(reader.descriptor)
                capture.readerEnded()
                return true
            }
            if stopping && frames == 0 {
                file?.close()
                for reader in readers {
                    close(reader.descriptor)
                    capture.readerEnded()
                }
                readers.removeAll()
                return
            }
        }
    }

    /// Writes the queued records; how many reached the file.
    private func deliver(_ records: [UInt8]) -> Int {
        var frames = 0
        records.withUnsafeBytes { all in
            var offset = 0
            while offset + 13 <= all.count {
                let stamp = all.loadUnaligned(fromByteOffset: offset, as: Int64.self)
                let length = Int(all.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self))
                let direction = CaptureDirection(rawValue: all[offset + 12])
                let frame = UnsafeRawBufferPointer(rebasing: all[(offset + 13)..<(offset + 13 + length)])
                offset += 13 + length
                let timestamp = PcapTimestamp(totalNanoseconds: stamp)
                if let file, file.write(frame, timestamp: timestamp, direction: direction) { frames += 1 }
                for index in readers.indices { readers[index].offer(frame, timestamp: timestamp, direction: direction) }
            }
        }
        return frames
    }
}

/// One `netstackctl capture`: its connection, filter and unsent output.
private struct LiveReader {
    let descriptor: Int32
    let filter: PcapFilter?
    let encoder: PcapEncoder
    var output: [UInt8]
    var dropped = 0
    var ended = false

    init(descriptor: Int32, filter: String?, format: CaptureFormat, preamble: [UInt8]) {
        self.descriptor = descriptor
        let encoder = PcapEncoder(format: format, precision: .microsecond)
        self.encoder = encoder
        self.filter = filter.flatMap { try? PcapFilter($0, snapshotLength: encoder.snapshotLength) }
        output = preamble + encoder.header()
    }

    mutating func offer(_ frame: UnsafeRawBufferPointer, timestamp: PcapTimestamp, direction: CaptureDirection?) {
        guard !ended else { return }
        if let filter, !filter.matches(frame, originalLength: frame.count) { return }
        guard output.count + encoder.recordSize(frame.count) <= FrameCapture.liveBufferBytes else {
            dropped += 1
            return
        }
        encoder.append(frame, timestamp: timestamp, direction: direction, to: &output)
    }

    /// Sends what the socket takes now, never waiting.
    mutating func flush() {
        guard !ended, !output.isEmpty else { return }
        let n = output.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        if n > 0 {
            output.removeFirst(n)
        } else if n < 0 && errno != EAGAIN && errno != EINTR {
            ended = true
        }
    }

    /// The connection said something: the end (or bytes nobody asked for).
    mutating func checkHangUp(_ events: Int16) {
        if events & Int16(POLLHUP | POLLERR) != 0 {
            ended = true
            return
        }
        if events & Int16(POLLIN) != 0 {
            var scratch = [UInt8](repeating: 0, count: 512)
            let n = recv(descriptor, &scratch, scratch.count, Int32(MSG_DONTWAIT))
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { ended = true }
        }
    }
}

/// A counting semaphore for one hand-off between threads.
final class Semaphore: @unchecked Sendable {
    // @unchecked: the sem_t is only used through sem_post and sem_wait,
    // which are safe from any thread; it lives as long as the object.
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() { sem_init(semaphore, 0, 0) }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    func send() { sem_post(semaphore) }

    func wait() {
        while sem_wait(semaphore) != 0 && errno == EINTR {}
    }
}

/// A device that shows a `FrameCapture` every frame it carries, both ways,
/// as it crosses the device (without the virtio header, when frames carry
/// one: a capture holds Ethernet frames, and large segments appear as they
/// crossed the TAP). While nothing listens, `record` returns at once.
public struct CapturingDevice<Base: FrameDevice & ~Copyable>: ~Copyable, FrameDevice {
    private let base: Base
    private let capture: FrameCapture
    private let skip: Int

    public init(_ base: consuming Base, capture: FrameCapture, virtioHeader: Bool) {
        self.base = base
        self.capture = capture
        skip = virtioHeader ? VirtioNetHeader.length : 0
    }

    public var readinessDescriptor: Int32 { base.readinessDescriptor }

    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        let length = try base.receive(into: buffer)
        if let length, length >= skip {
            capture.record(UnsafeRawBufferPointer(rebasing: buffer[skip..<length]), direction: .received)
        }
        return length
    }

    public func send(_ frame: UnsafeRawBufferPointer) throws -> Bool {
        let sent = try base.send(frame)
        if sent, frame.count >= skip {
            capture.record(UnsafeRawBufferPointer(rebasing: frame[skip...]), direction: .sent)
        }
        return sent
    }
}
