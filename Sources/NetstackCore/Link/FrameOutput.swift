import NetstackWire

/// A frame the stack has built: a pooled byte buffer and how many of its bytes
/// are the frame.
///
/// Pass frames on with `consume` (`enqueue(consume frame)`): a copy left
/// alive would make the next write to the buffer copy it, an allocation per
/// frame.
public struct OutputFrame {
    /// The buffer; its `count` is the pool's buffer size, not the frame length.
    var storage: [UInt8]
    public var length: Int

    /// The frame's bytes.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
    }

    /// Writes the Ethernet destination (the frame was built before its next
    /// hop's address was known).
    mutating func setDestination(_ mac: MACAddress) {
        storage.withMutableBytes { mac.write(to: &$0, at: 0) }
    }
}

/// The stack's outgoing frames: a pool of reusable buffers and the queue of
/// frames ready for the device. In steady state no frame allocates: buffers go
/// out to the device and come back to the pool.
struct FrameOutput {
    /// Bytes per buffer: the largest frame (MTU plus an Ethernet header with a
    /// VLAN tag).
    let bufferSize: Int
    /// Buffers that may exist at once (queued, waiting for a neighbour, or free).
    let maximumBuffers: Int
    private var free: [[UInt8]] = []
    private(set) var allocated = 0
    /// Frames ready to send, oldest first.
    private(set) var queue: [OutputFrame] = []

    init(mtu: Int, maximumBuffers: Int = 4096) {
        bufferSize = mtu + EthernetFrame.taggedHeaderLength
        self.maximumBuffers = maximumBuffers
        queue.reserveCapacity(256)
        free.reserveCapacity(256)
    }

    /// A buffer for a frame of `length` bytes, or nil when the pool is spent.
    mutating func makeFrame(length: Int) -> OutputFrame? {
        precondition(length <= bufferSize, "frame of \(length) bytes exceeds the buffer size \(bufferSize)")
        if let storage = free.popLast() {
            return OutputFrame(storage: storage, length: length)
        }
        guard allocated < maximumBuffers else { return nil }
        allocated += 1
        return OutputFrame(storage: [UInt8](repeating: 0, count: bufferSize), length: length)
    }

    /// Returns a frame's buffer to the pool.
    mutating func recycle(_ frame: consuming OutputFrame) {
        free.append(frame.storage)
    }

    /// Queues a finished frame for the device.
    mutating func enqueue(_ frame: consuming OutputFrame) {
        queue.append(frame)
    }

    var isEmpty: Bool { queue.isEmpty }

    /// Hands every queued frame to `send`, oldest first, and recycles it.
    /// `send` returns false when the device would not take the frame.
    mutating func drain(_ send: (UnsafeRawBufferPointer) -> Bool) -> (sent: Int, bytes: Int, refused: Int) {
        var sent = 0, bytes = 0, refused = 0
        for frame in queue {
            if frame.withBytes(send) {
                sent += 1
                bytes += frame.length
            } else {
                refused += 1
            }
            free.append(frame.storage)
        }
        queue.removeAll(keepingCapacity: true)
        return (sent, bytes, refused)
    }
}
