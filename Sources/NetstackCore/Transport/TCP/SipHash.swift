/// SipHash-2-4 (Aumasson and Bernstein): a keyed 64-bit hash, the pseudo-random
/// function behind initial sequence numbers (RFC 6528) and SYN cookies.
struct SipHash {
    private var v0: UInt64, v1: UInt64, v2: UInt64, v3: UInt64
    private var tail: UInt64 = 0
    private var tailBytes = 0
    private var length = 0

    init(key: (UInt64, UInt64)) {
        v0 = key.0 ^ 0x736f_6d65_7073_6575
        v1 = key.1 ^ 0x646f_7261_6e64_6f6d
        v2 = key.0 ^ 0x6c79_6765_6e65_7261
        v3 = key.1 ^ 0x7465_6462_7974_6573
    }

    private mutating func round() {
        v0 &+= v1; v1 = (v1 << 13) | (v1 >> 51); v1 ^= v0; v0 = (v0 << 32) | (v0 >> 32)
        v2 &+= v3; v3 = (v3 << 16) | (v3 >> 48); v3 ^= v2
        v0 &+= v3; v3 = (v3 << 21) | (v3 >> 43); v3 ^= v0
        v2 &+= v1; v1 = (v1 << 17) | (v1 >> 47); v1 ^= v2; v2 = (v2 << 32) | (v2 >> 32)
    }

    private mutating func compress(_ word: UInt64) {
        v3 ^= word
        round(); round()
        v0 ^= word
    }

    mutating func add(_ byte: UInt8) {
        tail |= UInt64(byte) << (8 * UInt64(tailBytes))
        tailBytes += 1
        length += 1
        if tailBytes == 8 {
            compress(tail)
            tail = 0
            tailBytes = 0
        }
    }

    mutating func add(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { add(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    mutating func add(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { add(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    mutating func add(_ value: UInt16) {
        add(UInt8(truncatingIfNeeded: value))
        add(UInt8(truncatingIfNeeded: value >> 8))
    }

    consuming func finalize() -> UInt64 {
        compress(tail | UInt64(UInt8(truncatingIfNeeded: length)) << 56)
        v2 ^= 0xff
        round(); round(); round(); round()
        return v0 ^ v1 ^ v2 ^ v3
    }
}
