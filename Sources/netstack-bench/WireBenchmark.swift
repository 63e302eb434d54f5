import NetstackIO
import NetstackWire

/// Parse and checksum throughput over the bulk captures.
///
/// Three measurements, each over every frame of the capture, repeated until
/// about a second has passed:
/// - `views`: what the stack's receive path does: Ethernet, IP and TCP views,
///   the IPv4 header checksum, the TCP checksum over pseudo-header and segment,
///   and a walk over the TCP options;
/// - `dissect`: the complete slow path (`Dissection`), header values copied;
/// - `checksum`: the Internet checksum alone over every frame's bytes.
enum WireBenchmark {
    struct Result {
        var name: String
        var frames: Int
        var bytes: Int
        var seconds: Double
        var framesPerSecond: Double { Double(frames) / seconds }
        var gigabitsPerSecond: Double { Double(bytes) * 8 / seconds / 1e9 }
    }

    static func run(fixtures: [String], minimumSeconds: Double) throws -> [Result] {
        var results: [Result] = []
        for path in fixtures {
            let frames = try PcapReader(path: path).readAll().map(\.bytes)
            let name = path.split(separator: "/").last.map(String.init) ?? path
            let totalBytes = frames.reduce(0) { $0 + $1.count }
            results.append(measure("\(name) views", frames.count, totalBytes, minimumSeconds) {
                var sink = 0
                for frame in frames { sink &+= parseWithViews(frame.span.bytes) }
                return sink
            })
            results.append(measure("\(name) dissect", frames.count, totalBytes, minimumSeconds) {
                var sink = 0
                for frame in frames {
                    if let d = try? Dissection(frame.span.bytes) { sink &+= d.payload.count }
                }
                return sink
            })
            results.append(measure("\(name) checksum", frames.count, totalBytes, minimumSeconds) {
                var sink = 0
                for frame in frames { sink &+= Int(InternetChecksum.compute(frame.span.bytes)) }
                return sink
            })
        }
        return results
    }

    /// The receive path's parsing: returns the TCP payload length (or 0), so the
    /// work cannot be optimised away.
    @inline(never)
    static func parseWithViews(_ bytes: RawSpan) -> Int {
        guard let ethernet = try? EthernetFrame(bytes) else { return 0 }
        switch ethernet.etherType {
        case .ipv4:
            guard let ip = try? IPv4Packet(ethernet.payload), ip.isChecksumValid,
                  ip.protocol == .tcp, let tcp = try? TCPSegment(ip.payload),
                  tcp.isChecksumValid(source: ip.source, destination: ip.destination) else { return 0 }
            return walkOptions(tcp) + tcp.payload.byteCount
        case .ipv6:
            guard let ip = try? IPv6Packet(ethernet.payload), ip.nextHeader == .tcp,
                  let tcp = try? TCPSegment(ip.payload),
                  tcp.isChecksumValid(source: ip.source, destination: ip.destination) else { return 0 }
            return walkOptions(tcp) + tcp.payload.byteCount
        default:
            return 0
        }
    }

    static func walkOptions(_ tcp: borrowing TCPSegment) -> Int {
        var timestamp: UInt32 = 0
        try? tcp.forEachOption { option in
            if case .timestamps(let value, _) = option { timestamp = value }
        }
        return Int(timestamp & 1)
    }

    static func measure(_ name: String, _ frames: Int, _ bytes: Int, _ minimumSeconds: Double,
                        _ body: () -> Int) -> Result {
        let clock = ContinuousClock()
        var sink = body() // warm up
        var rounds = 0
        let start = clock.now
        var elapsed = Duration.zero
        repeat {
            sink &+= body()
            rounds += 1
            elapsed = clock.now - start
        } while elapsed < .seconds(minimumSeconds)
        blackHole(sink)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Result(name: name, frames: frames * rounds, bytes: bytes * rounds, seconds: seconds)
    }
}

@inline(never)
func blackHole(_ value: Int) {
    if value == 0x5eed_5eed { print("") }
}
