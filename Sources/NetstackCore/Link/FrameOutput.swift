import NetstackWire

/// A frame the stack has built: a pooled byte buffer and how many of its bytes
/// are the frame.
///
/// The buffer starts with room for a virtio-net header, which the frame's
/// builder fills in (zeros when the link is to do nothing), so a device that
/// takes such headers gets header and frame in one piece, with no copy.
///
/// Pass frames on with `consume` (`enqueue(consume frame)`): a copy left
/// alive would make the next write to the buffer copy it, an allocation per
/// frame.
public struct OutputFrame {
    /// Bytes before the frame: where its virtio-net header goes.
    static let headroom = VirtioNetHeader.length

    /// Headroom, then the frame; its `count` is the pool's buffer size, not
    /// the frame length.
    var storage: [UInt8]
    public var length: Int

    /// The frame's bytes (without the virtio-net header).
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes {
            try body(UnsafeRawBufferPointer(rebasing: $0[Self.headroom..<(Self.headroom + length)]))
        }
    }

    /// The frame's bytes with its virtio-net header in front.
    func withVirtioBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<(Self.headroom + length)])) }
    }

    /// Runs `body` over `range` of the frame (offsets from its first byte).
    mutating func withMutableBytes<R>(_ range: Range<Int>, _ body: (inout MutableRawSpan) throws -> R) rethrows -> R {
        try storage.withMutableBytes((Self.headroom + range.lowerBound)..<(Self.headroom + range.upperBound), body)
    }

    /// Sets what the link is to finish for this frame.
    mutating func setVirtioHeader(_ header: VirtioNetHeader) {
        storage.withMutableBytes(0..<Self.headroom) { header.emit(into: &$0) }
    }

    /// Writes the Ethernet destination (the frame was built before its next
    /// hop's address was known).
    mutating func setDestination(_ mac: MACAddress) {
        storage.withMutableBytes { mac.write(to: &$0, at: Self.headroom) }
    }
}

/// The stack's outgoing frames: pools of reusable buffers and the queue of
/// frames ready for the device. In steady state no frame allocates: buffers go
/// out to the device and come back to their pool.
///
/// There are two sizes: link-sized buffers for everything, and 64 KiB ones
/// for TCP segments the link will cut (TSO), fewer of them.
struct FrameOutput {
    /// Frame bytes per small buffer: the MTU plus an Ethernet header with a
    /// VLAN tag.
    let smallFrameSize: Int
    /// Frame bytes per large buffer: an Ethernet header and the largest IP packet.
    static let largeFrameSize = EthernetFrame.headerLength + LinkOffloads.segmentationLimit
    private var small: Pool
    private var large: Pool
    /// Frames ready to send, oldest first.
    private(set) var queue: [OutputFrame] = []

    init(mtu: Int, maximumBuffers: Int = 4096, maximumLargeBuffers: Int = 256) {
        smallFrameSize = mtu + EthernetFrame.taggedHeaderLength
        small = Pool(bufferSize: OutputFrame.headroom + smallFrameSize, maximum: maximumBuffers)
        large = Pool(bufferSize: OutputFrame.headroom + Self.largeFrameSize, maximum: maximumLargeBuffers)
        queue.reserveCapacity(256)
    }

    /// Buffers in use or pooled, of both sizes.
    var allocated: Int { small.allocated + large.allocated }

    /// Whether a frame of `length` bytes can be had now.
    func canMakeFrame(length: Int) -> Bool {
        length <= smallFrameSize ? small.available : large.available
    }

    /// A buffer for a frame of `length` bytes with a zeroed virtio-net header,
    /// or nil when the pool is spent.
    mutating func makeFrame(length: Int) -> OutputFrame? {
        precondition(length <= Self.largeFrameSize, "frame of \(length) bytes exceeds the largest buffer")
        guard let storage = length <= smallFrameSize ? small.take() : large.take() else { return nil }
        var frame = OutputFrame(storage: storage, length: length)
        frame.storage.withUnsafeMutableBytes { _ = $0.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: OutputFrame.headroom) }
        return frame
    }

    /// Returns a frame's buffer to its pool.
    mutating func recycle(_ frame: consuming OutputFrame) {
        give(frame.storage)
    }

    private mutating func give(_ storage: [UInt8]) {
        if storage.count == small.bufferSize { small.give(storage) } else { large.give(storage) }
    }

    /// Queues a finished frame for the device.
    mutating func enqueue(_ frame: consuming OutputFrame) {
        queue.append(frame)
    }

    var isEmpty: Bool { queue.isEmpty }

    /// Hands every queued frame to `send`, oldest first, and recycles it;
    /// with `virtioHeader`, each with its header in front. `send` returns
    /// false when the device would not take the frame.
    mutating func drain(virtioHeader: Bool,
                        _ send: (UnsafeRawBufferPointer) -> Bool) -> (sent: Int, bytes: Int, refused: Int) {
        var sent = 0, bytes = 0, refused = 0
        for frame in queue {
            if virtioHeader ? frame.withVirtioBytes(send) : frame.withBytes(send) {
                sent += 1
                bytes += frame.length
            } else {
                refused += 1
            }
            give(frame.storage)
        }
        queue.removeAll(keepingCapacity: true)
        return (sent, bytes, refused)
    }

    /// Buffers of one size: the free ones, and how many exist.
    private struct Pool {
        let bufferSize: Int
        let maximum: Int
        var free: [[UInt8]] = []
        var allocated = 0

        init(bufferSize: Int, maximum: Int) {
            self.bufferSize = bufferSize
            self.maximum = maximum
            free.reserveCapacity(min(maximum, 256))
        }

        var available: Bool { !free.isEmpty || allocated < maximum }

        mutating func take() -> [UInt8]? {
            if let storage = free.popLast() { return storage }
            guard allocated < maximum else { return nil }
            allocated += 1
            return [UInt8](repeating: 0, count: bufferSize)
        }

        mutating func give(_ storage: [UInt8]) {
            free.append(storage)
        }
    }
}
