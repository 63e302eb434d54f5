import NetstackTestSupport
import NetstackWire
import Testing

/// Inputs the fuzzers found (scripts/fuzz.sh), kept as regressions.
struct FuzzRegressionTests {
    /// What parses emits a frame that parses again and emits the same bytes
    /// (the first emission is the normalised form), as fuzz-wire checks.
    func emissionIsAFixedPoint(_ frame: [UInt8]) throws {
        let parsed = try frame.withSpan { try Dissection($0) }
        let emitted = frame.withSpan { parsed.emit(payload: $0.extracting(parsed.payload)) }
        let reparsed = try emitted.withSpan { try Dissection($0) }
        let again = emitted.withSpan { reparsed.emit(payload: $0.extracting(reparsed.payload)) }
        #expect(again == emitted)
        #expect(reparsed.transport == parsed.transport)
    }

    /// fuzz-wire: a UDP length shorter than its IPv4 packet (the 14 bytes after
    /// it are not the datagram's, as Linux trims them) made `emit` keep the
    /// packet's old length with the bytes gone: a frame that did not parse.
    @Test func aUDPLengthShorterThanItsPacket() throws {
        let frame = hex("02000000000102000000006408004500002a519240004011dd7ac0a84564c0a84501be290078"
                        + "000800000000000a74776f0a74687265650a")
        try emissionIsAFixedPoint(frame)
        let parsed = try frame.withSpan { try Dissection($0) }
        #expect(parsed.payload.isEmpty, "the datagram ends where its length says")
    }

    /// fuzz-wire: an IPv6 fragment header with its reserved byte and bits set
    /// (RFC 8200 §4.5: zero on transmission, ignored on reception). Not a bug:
    /// `emit` zeroes them, which broke the harness's first property (the same
    /// values after a round trip); the property is now the fixed point.
    @Test func reservedFragmentBitsAreZeroWhenEmitted() throws {
        let host = HostFrames()
        // Next header UDP, reserved 0xAB, offset 2 (×8) with both reserved bits set, id 7.
        let fragment: [UInt8] = [17, 0xAB, 0x00, 0x16, 0, 0, 0, 7]
        let frame = host.ipv6Packet(.fragment, [UInt8](repeating: 0x5A, count: 16), extensionHeaders: fragment)
        try emissionIsAFixedPoint(frame)
        let parsed = try frame.withSpan { try Dissection($0) }
        let emitted = frame.withSpan { parsed.emit(payload: $0.extracting(parsed.payload)) }
        #expect(emitted[14 + 40 + 1] == 0 && emitted[14 + 40 + 3] & 0x06 == 0)
    }

    private func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }
}
