import NetstackControl
import Testing

/// Every control message survives encoding and decoding; what does not
/// parse is a typed error.
struct ControlCodecTests {
    static let peer = ControlEndpoint(host: "192.168.69.100", port: 40000)!
    static let local6 = ControlEndpoint(host: "fdaa::1", port: 7)!

    static let messages: [ControlMessage] = [
        .hello(version: 1), .query(.sockets), .openSocket(.ipv6, .stream), .join(token: 0x0102_0304_0506_0708),
        .bind(local6), .listen(backlog: 4096), .accept, .acceptStream, .connect(peer),
        .capture(filter: "tcp port 7", format: .pcapng), .capture(filter: "", format: .pcap),
        .send([1, 2, 3], to: nil), .send([9], to: peer), .receive(maximum: 65536),
        .shutdown(read: false, write: true), .clone, .close, .getEndpoints, .setOption(.noDelay, 1), .stream,
        .streamOption(key: 0xFEED_0000_0000_0001, .resetOnClose, 1),
        .acceptedStream(key: 9, local: local6, remote: peer), .acceptedStream(key: 1, local: nil, remote: nil),
        .welcome(version: 1), .queryResult(Array("{}".utf8)), .done(42), .endpoints(local: local6, remote: nil),
        .endpoints(local: local6, remote: peer), .data([0, 255], from: peer), .token(7, peer: peer),
        .failure(ControlError(.socket, errno: 111, "refused")),
    ]

    @Test(arguments: messages)
    func roundTrips(_ message: ControlMessage) throws {
        let frame = ControlCodec.encode(message)
        let length = try ControlCodec.frameLength(Array(frame[0..<4]))
        #expect(length == frame.count - 4)
        #expect(try ControlCodec.decode(Array(frame[4...])) == message)
    }

    @Test func anUnknownTypeIsATypedError() {
        #expect(throws: ControlError.self) { try ControlCodec.decode([0x7E]) }
    }

    @Test func anUnknownOptionOfAStreamIsATypedError() {
        // streamOption: key 1, option 0x7F (none), value 0.
        #expect(throws: ControlError.self) {
            try ControlCodec.decode([0x1E] + [0, 0, 0, 0, 0, 0, 0, 1] + [0x7F] + [UInt8](repeating: 0, count: 8))
        }
    }
}
