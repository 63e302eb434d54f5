import NetstackCore

/// Something that carries Ethernet frames to and from the stack: a TAP
/// device, or a test double. The engine waits for `readinessDescriptor` to be
/// readable, then receives until nothing is left, and sends what the stack
/// queued.
public protocol FrameDevice: ~Copyable {
    /// A descriptor that `poll` reports readable when a frame is waiting.
    var readinessDescriptor: Int32 { get }
    /// Receives one frame into `buffer`; its length, or nil when none is waiting.
    func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> Int?
    /// Sends one frame; false when the device's queue is full (the frame is lost).
    func send(_ frame: UnsafeRawBufferPointer) throws -> Bool
    /// When the device has work of its own to do (frames it holds back to
    /// send or deliver later); nil when it has none.
    var nextDeadline: Instant? { get }
    /// Does the device's own work that is due by `now`.
    func poll(now: Instant) throws
}

extension FrameDevice where Self: ~Copyable {
    public var nextDeadline: Instant? { nil }
    public func poll(now: Instant) throws {}
}

extension TapDevice: FrameDevice {
    public var readinessDescriptor: Int32 { fileDescriptor }

    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        try read(into: buffer)
    }

    public func send(_ frame: UnsafeRawBufferPointer) throws -> Bool {
        try write(frame)
    }
}
