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
