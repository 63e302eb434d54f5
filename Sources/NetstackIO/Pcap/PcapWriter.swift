import Glibc

/// When a capture file is full, and how many are kept.
///
/// The file being written is always the configured path; when it reaches
/// `maximumBytes` it becomes `PATH.1`, the older ones move up a number
/// (`PATH.1` to `PATH.2`, ...), the one past `files - 1` is deleted, and a new
/// `PATH` starts with its own header. So at most `files` files exist, each
/// readable on its own, and the newest frames are always in `PATH`.
public struct PcapRotation: Sendable, Hashable {
    public var maximumBytes: Int
    public var files: Int

    public init(maximumBytes: Int, files: Int) {
        self.maximumBytes = maximumBytes
        self.files = max(1, files)
    }
}

/// Writes Ethernet frames to a capture file (pcap or pcapng, microsecond or
/// nanosecond timestamps), optionally only frames matching a BPF filter
/// expression, optionally rotating files. `tcpdump -r` and Wireshark read
/// the result. Writes are buffered: `flush` or `close` makes them durable.
public final class PcapWriter {
    public let path: String
    public let encoder: PcapEncoder
    private let filter: PcapFilter?
    private let rotation: PcapRotation?
    private var descriptor: Int32
    private var buffer: [UInt8] = []
    /// Bytes in the current file, buffered ones included.
    private var fileBytes = 0
    private var failure: PcapError?
    private let headerSize: Int

    private static let bufferLimit = 256 * 1024

    /// Creates (or truncates) `path`.
    public init(path: String, precision: PcapPrecision = .microsecond, snapshotLength: Int = 262_144,
                format: CaptureFormat = .pcap, filter: String? = nil, rotation: PcapRotation? = nil) throws(PcapError) {
        self.path = path
        encoder = PcapEncoder(format: format, precision: precision, snapshotLength: snapshotLength)
        self.filter = try filter.map { expression throws(PcapError) in try PcapFilter(expression, snapshotLength: snapshotLength) }
        self.rotation = rotation
        headerSize = encoder.header().count
        descriptor = try Self.create(path)
        buffer.reserveCapacity(Self.bufferLimit + 65_536)
        startFile()
    }

    deinit {
        close()
    }

    /// The filter expression frames must match, if any.
    public var filterExpression: String? { filter?.expression }

    /// Appends `frame` (if it matches the filter). Returns whether it was written.
    @discardableResult
    public func write(_ frame: UnsafeRawBufferPointer, timestamp: PcapTimestamp,
                      direction: CaptureDirection? = nil) -> Bool {
        guard descriptor >= 0, failure == nil else { return false }
        if let filter, !filter.matches(frame, originalLength: frame.count) { return false }
        if let rotation, fileBytes > headerSize,
           fileBytes + encoder.recordSize(frame.count) > rotation.maximumBytes {
            rotate(rotation)
            guard descriptor >= 0 else { return false }
        }
        let before = buffer.count
        encoder.append(frame, timestamp: timestamp, direction: direction, to: &buffer)
        fileBytes += buffer.count - before
        if buffer.count >= Self.bufferLimit { drain() }
        return failure == nil
    }

    /// Appends `frame` (if it matches the filter).
    @discardableResult
    public func write(_ frame: [UInt8], timestamp: PcapTimestamp, direction: CaptureDirection? = nil) -> Bool {
        frame.withUnsafeBytes { write($0, timestamp: timestamp, direction: direction) }
    }

    /// Pushes buffered records to the file.
    public func flush() throws(PcapError) {
        drain()
        if let failure { throw failure }
    }

    /// Flushes and closes the file; later writes are ignored.
    public func close() {
        guard descriptor >= 0 else { return }
        drain()
        Glibc.close(descriptor)
        descriptor = -1
    }

    private func startFile() {
        buffer += encoder.header()
        fileBytes = buffer.count
    }

    private func drain() {
        guard descriptor >= 0, failure == nil else { return }
        var offset = 0
        while offset < buffer.count {
            let n = buffer.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                failure = .write(path: path, message: String(cString: strerror(errno)))
                break
            }
            offset += n
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Closes the full file, shifts the older ones, starts a new one.
    private func rotate(_ rotation: PcapRotation) {
        drain()
        Glibc.close(descriptor)
        descriptor = -1
        if rotation.files == 1 {
            unlink(path)
        } else {
            unlink("\(path).\(rotation.files - 1)")
            for index in stride(from: rotation.files - 2, through: 1, by: -1) {
                rename("\(path).\(index)", "\(path).\(index + 1)")
            }
            rename(path, "\(path).1")
        }
        do {
            descriptor = try Self.create(path)
            startFile()
        } catch {
            failure = error
        }
    }

    private static func create(_ path: String) throws(PcapError) -> Int32 {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw PcapError.open(path: path, message: String(cString: strerror(errno))) }
        return descriptor
    }
}
