import NetstackTestSupport
import NetstackWire
import Testing

/// The definition of RFC 1071, byte by byte: the reference the fast
/// implementation is checked against.
func referenceChecksum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var i = 0
    while i + 1 < bytes.count {
        sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
        i += 2
    }
    if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
    while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
    return ~UInt16(sum)
}

@Suite struct ChecksumTests {
    @Test func rfc1071Example() {
        // RFC 1071 §3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2, so the
        // checksum is its complement.
        let data: [UInt8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
        #expect(data.withSpan { InternetChecksum.compute($0) } == ~UInt16(0xddf2))
    }

    @Test func emptyDataChecksumIsAllOnes() {
        #expect([UInt8]().withSpan { InternetChecksum.compute($0) } == 0xffff)
    }

    @Test func matchesReferenceForEveryLengthAndSplit() {
        var rng = SplitMix64(seed: 1071)
        for length in 0...300 {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let expected = referenceChecksum(data)
            #expect(data.withSpan { InternetChecksum.compute($0) } == expected, "length \(length)")
            // Any split into two or three pieces, odd positions included, gives the same sum.
            for split in stride(from: 0, through: length, by: max(1, length / 7)) {
                let split2 = min(length, split + 3)
                var checksum = InternetChecksum()
                Array(data[..<split]).withSpan { checksum.add($0) }
                Array(data[split..<split2]).withSpan { checksum.add($0) }
                Array(data[split2...]).withSpan { checksum.add($0) }
                #expect(checksum.value == expected, "length \(length) split \(split)/\(split2)")
            }
        }
    }

    @Test func allOnesWordsDoNotLoseCarries() {
        // 0xffff words stress the end-around carry at every width.
        for length in [2, 8, 32, 64, 1500, 65534] {
            let data = [UInt8](repeating: 0xff, count: length)
            #expect(data.withSpan { InternetChecksum.compute($0) } == referenceChecksum(data))
        }
    }

    @Test func wordAdditionsMatchByteAdditions() {
        var a = InternetChecksum()
        a.add(UInt16(0x1234))
        a.add(UInt32(0xdead_beef))
        var b = InternetChecksum()
        [0x12, 0x34, 0xde, 0xad, 0xbe, 0xef].withSpan { b.add($0) }
        #expect(a.value == b.value)
        #expect(a.value == referenceChecksum([0x12, 0x34, 0xde, 0xad, 0xbe, 0xef]))
    }

    @Test func dataWithItsChecksumSumsToZero() {
        var data: [UInt8] = [0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0, 0,
                             192, 168, 69, 1, 192, 168, 69, 100]
        let checksum = data.withSpan { InternetChecksum.compute($0) }
        data[10] = UInt8(checksum >> 8)
        data[11] = UInt8(checksum & 0xff)
        #expect(data.withSpan { InternetChecksum.compute($0) } == 0)
    }
}
