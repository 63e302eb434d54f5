/// The Internet checksum of RFC 1071: the 16-bit one's complement of the one's
/// complement sum of the data taken as big-endian 16-bit words.
///
/// Data can be added in pieces (pseudo-header, header, payload) of any length;
/// a piece that starts at an odd position is byte-swapped into place, as RFC 1071
/// §2(B) allows, so no piece is copied. The bulk of the work is 64-bit additions
/// with end-around carry, eight bytes at a time and four words per iteration.
///
/// The sum is kept in the machine's byte order and converted once at the end:
/// one's complement addition is independent of byte order (RFC 1071 §2(B)).
public struct InternetChecksum: Sendable {
    private var sum: UInt64 = 0
    /// Whether an odd number of bytes has been added so far.
    private var odd = false

    public init() {}

    /// Adds a 16-bit word given as its numeric value (it is summed as if stored
    /// big-endian). Must be called at an even position.
    @inline(__always)
    public mutating func add(_ word: UInt16) {
        add64(UInt64(word.bigEndian))
    }

    /// Adds a 32-bit value as two big-endian words.
    @inline(__always)
    public mutating func add(_ value: UInt32) {
        add64(UInt64(value.bigEndian))
    }

    /// Adds the bytes of `data`.
    public mutating func add(_ data: RawSpan) {
        data.withUnsafeBytes { add($0) }
    }

    /// Adds the bytes at `data`.
    public mutating func add(_ data: UnsafeRawBufferPointer) {
        var piece = Self.sum(data)
        if odd {
            // This piece starts at an odd position: each of its words straddles
            // the word boundary, so its sum is the byte-swapped value.
            piece = UInt64(Self.fold16(piece).byteSwapped)
        }
        add64(piece)
        if data.count & 1 == 1 {
            odd.toggle()
        }
    }

    /// The checksum as a number, ready to be stored big-endian in a header. For
    /// data that includes a correct checksum field, this is 0.
    public var value: UInt16 {
        UInt16(bigEndian: ~Self.fold16(sum))
    }

    /// The folded sum, not complemented: what a header's checksum field holds
    /// when the device finishes the checksum ("partial", as Linux's
    /// CHECKSUM_PARTIAL): the device sums from the field's header on, this
    /// included, and stores the complement.
    public var partialValue: UInt16 {
        UInt16(bigEndian: Self.fold16(sum))
    }

    /// The checksum of one piece of data.
    public static func compute(_ data: RawSpan) -> UInt16 {
        var checksum = InternetChecksum()
        checksum.add(data)
        return checksum.value
    }

    @inline(__always)
    private mutating func add64(_ value: UInt64) {
        let (result, overflow) = sum.addingReportingOverflow(value)
        sum = result &+ (overflow ? 1 : 0)
    }

    @inline(__always)
    private static func fold16(_ value: UInt64) -> UInt16 {
        var v = (value & 0xffff_ffff) + (value >> 32)
        v = (v & 0xffff_ffff) + (v >> 32)
        var w = UInt32(truncatingIfNeeded: v)
        w = (w & 0xffff) + (w >> 16)
        w = (w & 0xffff) + (w >> 16)
        return UInt16(truncatingIfNeeded: w)
    }

    /// One's complement sum of `data` in machine byte order, not yet folded.
    private static func sum(_ data: UnsafeRawBufferPointer) -> UInt64 {
        guard let base = data.baseAddress else { return 0 }
        let count = data.count
        var offset = 0
        // Four independent accumulators would need extra folds; a single chain
        // with end-around carry is already memory-bound at these sizes.
        var acc: UInt64 = 0
        var carry: UInt64 = 0
        @inline(__always) func addWord(_ word: UInt64) {
            let (result, overflow) = acc.addingReportingOverflow(word)
            acc = result
            carry &+= overflow ? 1 : 0
        }
        while count - offset >= 32 {
            addWord(base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            addWord(base.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
            addWord(base.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self))
            addWord(base.loadUnaligned(fromByteOffset: offset + 24, as: UInt64.self))
            offset += 32
        }
        while count - offset >= 8 {
            addWord(base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            offset += 8
        }
        if count - offset >= 4 {
            addWord(UInt64(base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            offset += 4
        }
        if count - offset >= 2 {
            addWord(UInt64(base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
            offset += 2
        }
        if count - offset == 1 {
            // A trailing byte is padded with a zero byte after it (RFC 1071 §4.1):
            // the word whose first byte in memory is this byte.
            let byte = base.load(fromByteOffset: offset, as: UInt8.self)
            addWord(UInt64((UInt16(byte) << 8).bigEndian))
        }
        // Fold the carries back in (they are worth 2^64 ≡ 1).
        let (result, overflow) = acc.addingReportingOverflow(carry)
        return result &+ (overflow ? 1 : 0)
    }
}
