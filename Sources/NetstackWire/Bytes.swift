// Big-endian field access over spans. Every accessor is bounds-checked by the
// span itself, so a view that validated its length once can read its fields
// without further checks, and a bug reads nothing outside the frame.

extension RawSpan {
    @inline(__always)
    func u8(_ offset: Int) -> UInt8 {
        unsafeLoadUnaligned(fromByteOffset: offset, as: UInt8.self)
    }

    @inline(__always)
    func u16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: unsafeLoadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    func u32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: unsafeLoadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    func u64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: unsafeLoadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// The bytes as an array (a copy; for tests, logs and the slow path).
    public var array: [UInt8] {
        withUnsafeBytes { Array($0) }
    }
}

extension MutableRawSpan {
    @inline(__always)
    mutating func put(_ value: UInt8, at offset: Int) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }

    @inline(__always)
    mutating func put(_ value: UInt16, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    @inline(__always)
    mutating func put(_ value: UInt32, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    @inline(__always)
    mutating func put(_ value: UInt64, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt64.self)
    }

    /// Copies `bytes` to `offset`. Traps if they do not fit.
    public mutating func copy(_ bytes: RawSpan, to offset: Int) {
        precondition(offset >= 0 && bytes.byteCount <= byteCount - offset, "copy out of bounds")
        withUnsafeMutableBytes { destination in
            bytes.withUnsafeBytes { source in
                guard let base = source.baseAddress, source.count > 0 else { return }
                (destination.baseAddress! + offset).copyMemory(from: base, byteCount: source.count)
            }
        }
    }

    /// Sets `count` bytes from `offset` to zero.
    public mutating func zero(from offset: Int, count: Int) {
        precondition(offset >= 0 && count >= 0 && count <= byteCount - offset, "zero out of bounds")
        withUnsafeMutableBytes { destination in
            guard count > 0 else { return }
            (destination.baseAddress! + offset).initializeMemory(as: UInt8.self, repeating: 0, count: count)
        }
    }
}

extension MutableRawSpan {
    /// Runs `body` with a span over `range` of this one: the way an emitter
    /// (which writes from offset 0 of the span it is given) is pointed at a
    /// region of a larger buffer.
    public mutating func withRegion<R>(_ range: Range<Int>, _ body: (inout MutableRawSpan) throws -> R) rethrows -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= byteCount, "region out of bounds")
        return try withUnsafeMutableBytes { all in
            var region = MutableRawSpan(_unsafeBytes: UnsafeMutableRawBufferPointer(rebasing: all[range]))
            return try body(&region)
        }
    }

    /// Runs `body` with a span over the bytes from `offset` to the end.
    public mutating func withRegion<R>(from offset: Int, _ body: (inout MutableRawSpan) throws -> R) rethrows -> R {
        try withRegion(offset..<byteCount, body)
    }
}

extension Array where Element == UInt8 {
    /// Runs `body` with a mutable span over `range` of the array's bytes; the way
    /// emitters (which write from offset 0 of the span they are given) are pointed
    /// at a region of a buffer.
    public mutating func withMutableBytes<R>(
        _ range: Range<Int>, _ body: (inout MutableRawSpan) throws -> R
    ) rethrows -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "region out of bounds")
        return try withUnsafeMutableBytes { all in
            var span = MutableRawSpan(_unsafeBytes: UnsafeMutableRawBufferPointer(rebasing: all[range]))
            return try body(&span)
        }
    }

    /// Runs `body` with the array's bytes as a span.
    public func withSpan<R, E: Error>(_ body: (RawSpan) throws(E) -> R) throws(E) -> R {
        try body(span.bytes)
    }

    /// Runs `body` with a mutable span over all of the array's bytes.
    public mutating func withMutableBytes<R>(_ body: (inout MutableRawSpan) throws -> R) rethrows -> R {
        try withMutableBytes(0..<count, body)
    }
}
