// fuzz-wire: libFuzzer harness for the wire views, built only by
// scripts/fuzz.sh. The input is read as every header type at once (each
// view over the same bytes, checksums not in the way), with every field and
// option walked; and as a whole frame through `Dissection`, whose values
// must survive `emit` and a second parse.
import NetstackWire

/// Touches a value so that reading it is not optimised away.
@inline(never)
private func use<T>(_ value: T) { withExtendedLifetime(value) {} }

private func views(_ bytes: RawSpan) {
    if let header = try? VirtioNetHeader(bytes) { use(header) }
    if let frame = try? EthernetFrame(bytes) {
        use(EthernetHeader(frame))
        use(frame.payload.byteCount)
    }
    if let arp = try? ARPPacket(bytes) { use(ARPMessage(arp)) }
    if let ip = try? IPv4Packet(bytes) {
        use(IPv4Header(ip))
        use(ip.payload.byteCount)
    }
    if let ip = try? IPv6Packet(bytes) {
        use((ip.source, ip.destination, ip.flowLabel))
        // The extension header chain, as far as it parses (bounded).
        var kind = ip.nextHeader
        var offset = 0
        for _ in 0..<64 {
            guard let header = try? ip.extensionHeader(kind, at: offset) else { break }
            use((header.fragment, header.routing))
            try? header.forEachOption { use($0) }
            kind = header.nextHeader
            offset += header.length
        }
    }
    if let segment = try? TCPSegment(bytes) {
        use(TCPHeader(segment))
        try? segment.forEachOption { use($0) }
        use(segment.sequenceLength)
    }
    if let datagram = try? UDPDatagram(bytes) { use(UDPHeader(datagram)) }
    if let icmp = try? ICMPv4Packet(bytes) { use(ICMPv4Message(icmp)) }
    if let icmp = try? ICMPv6Packet(bytes) { use(try? ICMPv6Message(icmp)) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    bytes.withSpan { span in
        views(span)
        guard let dissection = try? Dissection(span) else { return }
        let payload = span.extracting(dissection.payload)
        let emitted = dissection.emit(payload: payload)
        guard let reparsed = emitted.withSpan({ try? Dissection($0) }) else {
            fatalError("\(dissection) parsed, but its emitted frame does not")
        }
        // Emitting normalises what receivers ignore (reserved bits, padding),
        // so the first emission is the fixed point: parsing it and emitting
        // again gives the same bytes.
        let again = emitted.withSpan { reparsed.emit(payload: $0.extracting(reparsed.payload)) }
        guard again == emitted else { fatalError("\(dissection) emits differently after a second parse") }
    }
    return 0
}
