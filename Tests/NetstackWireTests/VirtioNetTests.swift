import NetstackWire
import Testing

@Suite struct VirtioNetTests {
    /// A header followed by `frameLength` zero bytes.
    func bytes(_ header: VirtioNetHeader, frameLength: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: VirtioNetHeader.length + frameLength)
        bytes.withMutableBytes { header.emit(into: &$0) }
        return bytes
    }

    @Test func layoutIsLittleEndianAsTheKernelWritesIt() throws {
        let header = VirtioNetHeader(flags: .needsChecksum, segmentation: .tcpv6, ecn: true, headerLength: 86,
                                     segmentSize: 1428, checksumStart: 54, checksumOffset: 16)
        let encoded = bytes(header, frameLength: 200)
        #expect(Array(encoded[0..<12]) == [0x01, 0x84, 86, 0, 0x94, 0x05, 54, 0, 16, 0, 0, 0])
        #expect(try encoded.withSpan { try VirtioNetHeader($0) } == header)
    }

    @Test func plainHeaderIsAllZeros() throws {
        let encoded = bytes(.plain, frameLength: 60)
        #expect(encoded.allSatisfy { $0 == 0 })
        let parsed = try encoded.withSpan { try VirtioNetHeader($0) }
        #expect(parsed == .plain && !parsed.checksumTrusted)
    }

    @Test func liesAreRefused() {
        func reason(_ encoded: [UInt8]) -> WireError.Reason? {
            do throws(WireError) {
                _ = try encoded.withSpan { span throws(WireError) in try VirtioNetHeader(span) }
                return nil
            } catch {
                return error.reason
            }
        }
        #expect(reason([0, 0, 0]) == .truncated)
        #expect(reason(bytes(VirtioNetHeader(flags: .needsChecksum, segmentation: .tcpv4, headerLength: 54,
                                             segmentSize: 0, checksumStart: 34, checksumOffset: 16),
                             frameLength: 100)) == .badSegmentSize)
        #expect(reason(bytes(VirtioNetHeader(flags: .needsChecksum, checksumStart: 90, checksumOffset: 16),
                             frameLength: 100)) == .badOffset, "the checksum field would end past the frame")
        #expect(reason(bytes(VirtioNetHeader(flags: .needsChecksum, checksumStart: 82, checksumOffset: 16),
                             frameLength: 100)) == nil, "a field ending at the frame's end is fine")
        #expect(reason(bytes(VirtioNetHeader(flags: .needsChecksum, segmentation: .tcpv4, headerLength: 101,
                                             segmentSize: 100, checksumStart: 34, checksumOffset: 16),
                             frameLength: 100)) == .badOffset)
        #expect(reason(bytes(VirtioNetHeader(ecn: true), frameLength: 100)) == .badValue,
                "ECN without segmentation")
        var unknownType = bytes(.plain, frameLength: 100)
        unknownType[1] = 3
        #expect(reason(unknownType) == .badValue)
        var unknownFlag = bytes(.plain, frameLength: 100)
        unknownFlag[0] = 0x80
        #expect(reason(unknownFlag) == .badValue)
    }
}
