import Glibc
import NetstackCore
import NetstackIO
import NetstackTestSupport
import Testing

@Suite struct CaptureFileTests {
    /// libpcap reads back what the encoder writes, in both formats and both
    /// precisions: the frames, their lengths and their timestamps.
    @Test(arguments: CaptureFormat.allCases, [PcapPrecision.microsecond, .nanosecond])
    func bothFormatsReadBackThroughLibpcap(format: CaptureFormat, precision: PcapPrecision) throws {
        let path = temporaryPath("encoded-\(format)-\(precision)")
        defer { unlink(path) }
        let frames = try Fixtures.frames("tcp4-echo.pcap")
        let writer = try PcapWriter(path: path, precision: precision, format: format)
        for (index, frame) in frames.enumerated() {
            let stamp = PcapTimestamp(seconds: 1_700_000_000 + Int64(index), nanoseconds: 987_654_321)
            #expect(writer.write(frame.bytes, timestamp: stamp, direction: index % 2 == 0 ? .received : .sent))
        }
        writer.close()
        let back = try PcapReader(path: path).readAll()
        #expect(back.map(\.bytes) == frames.map(\.bytes))
        for (index, record) in back.enumerated() {
            #expect(record.timestamp.seconds == 1_700_000_000 + Int64(index))
            #expect(record.timestamp.nanoseconds == (precision == .nanosecond ? 987_654_321 : 987_654_000))
        }
    }

    /// Rotation keeps at most `files` files, each a whole capture, newest in PATH.
    @Test func rotationKeepsAtMostTheConfiguredFiles() throws {
        let path = temporaryPath("rotated.pcap")
        let names = [path] + (1...5).map { "\(path).\($0)" }
        defer { for name in names { unlink(name) } }
        let writer = try PcapWriter(path: path, rotation: PcapRotation(maximumBytes: 4096, files: 3))
        let frame = [UInt8](repeating: 0xAB, count: 1000)
        for index in 0..<40 {
            #expect(writer.write(frame, timestamp: PcapTimestamp(seconds: Int64(index), nanoseconds: 0)))
        }
        writer.close()
        #expect(names.filter { access($0, F_OK) == 0 } == Array(names.prefix(3)))
        var seconds: [[Int64]] = []
        for name in names.prefix(3) {
            let records = try PcapReader(path: name).readAll()
            #expect(records.count == 4, "1016 bytes a record, 24 for the header: four fit in 4096")
            seconds.append(records.map(\.timestamp.seconds))
        }
        #expect(seconds[0] == [36, 37, 38, 39], "the newest frames are in PATH")
        #expect(seconds[1] == [32, 33, 34, 35])
        #expect(seconds[2] == [28, 29, 30, 31])
    }

    /// The capture's thread writes the file and streams to live readers; a
    /// reader's filter applies to it alone; a reader that goes away is
    /// dropped; `finish` leaves a complete file.
    @Test func frameCaptureFeedsTheFileAndLiveReaders() async throws {
        let path = temporaryPath("live-file.pcap")
        defer { unlink(path) }
        let frames = try Fixtures.frames("ping4.pcap")
        let capture = FrameCapture(file: try PcapWriter(path: path))
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        try capture.addLiveReader(pair[0], filter: "arp", format: .pcapng, preamble: [1, 2, 3])
        #expect(throws: CaptureError.self) { try capture.addLiveReader(-1, filter: "tcp port banana", format: .pcap) }
        for frame in frames {
            frame.bytes.withUnsafeBytes { capture.record($0, direction: .received) }
        }
        // The reader's stream: the preamble, then a pcapng file of the ARP frames.
        let stream = temporaryPath("live-stream.pcapng")
        defer { unlink(stream) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let expectedARP = try Fixtures.frames("ping4.pcap", filter: "arp")
        while true {
            let n = recv(pair[1], &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 { received += buffer[0..<n] }
            let partial = received.count > 3 ? Array(received[3...]) : []
            if !partial.isEmpty, (try? Self.count(partial, at: stream)) == expectedARP.count { break }
            if n <= 0 { usleep(10_000) }
        }
        #expect(Array(received.prefix(3)) == [1, 2, 3])
        close(pair[1])
        // The reader is gone; the file goes on.
        for _ in 0..<100 where capture.counters.first(where: { $0.name == "capture.liveReaders" })?.value != 0 {
            frames[0].bytes.withUnsafeBytes { capture.record($0, direction: .sent) }
            usleep(10_000)
        }
        #expect(capture.counters.first { $0.name == "capture.liveReaders" }?.value == 0)
        await capture.finish()
        let written = try PcapReader(path: path).readAll()
        #expect(written.count >= frames.count)
        #expect(Array(written.prefix(frames.count).map(\.bytes)) == frames.map(\.bytes))
        #expect(capture.counters.first { $0.name == "capture.written" }?.value == written.count)
    }

    /// With the file as the only sink, its filter runs before the copy:
    /// frames it would not write are not even queued.
    @Test func theFilesFilterRunsBeforeTheQueue() async throws {
        let path = temporaryPath("prefiltered.pcap")
        defer { unlink(path) }
        let capture = FrameCapture(file: try PcapWriter(path: path, filter: "arp"))
        for frame in try Fixtures.frames("ping4.pcap") {
            frame.bytes.withUnsafeBytes { capture.record($0, direction: .received) }
        }
        await capture.finish()
        #expect(capture.counters.first { $0.name == "capture.queued" }?.value == 2)
        #expect(try PcapReader(path: path).readAll().count == 2)
    }

    /// A live reader that does not read loses frames once its 4 MiB are
    /// held (counted); the file beside it gets every frame.
    @Test func aSlowLiveReaderLosesFramesAndTheFileNone() async throws {
        let path = temporaryPath("slow-reader.pcap")
        defer { unlink(path) }
        let capture = FrameCapture(file: try PcapWriter(path: path))
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[1]) }
        try capture.addLiveReader(pair[0], filter: nil, format: .pcap)
        let frame = [UInt8](repeating: 0x5A, count: 60_000)
        for round in 0..<20 {
            for _ in 0..<10 { frame.withUnsafeBytes { capture.record($0, direction: .sent) } }
            // The writer thread keeps the queue short; nobody reads pair[1].
            for _ in 0..<200 where capture.counters.first(where: { $0.name == "capture.written" })?.value ?? 0 < (round + 1) * 10 {
                usleep(1_000)
            }
        }
        await capture.finish()
        let value = { (name: String) in capture.counters.first { $0.name == name }?.value ?? -1 }
        #expect(value("capture.dropped") == 0)
        #expect(value("capture.written") == 200)
        #expect(try PcapReader(path: path).readAll().count == 200)
        #expect(value("capture.liveDropped") > 100, "12 MB for a reader that holds 4 MiB and a socket's buffer")
    }

    private static func count(_ bytes: [UInt8], at path: String) throws -> Int {
        unlink(path)
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        return try PcapReader(path: path).readAll().count
    }
}

@Suite struct FaultInjectionTests {
    @Test func settingsParse() throws {
        let settings = try FaultSettings(parsing: "drop=5%,corrupt=0.1%,duplicate=0.01,reorder=10%,delay=2ms,rate=100mbit,seed=9")
        #expect(settings.drop == 0.05)
        #expect(abs(settings.corrupt - 0.001) < 1e-12)
        #expect(settings.duplicate == 0.01)
        #expect(settings.reorder == 0.1)
        #expect(settings.delay == .milliseconds(2))
        #expect(settings.rate == 100_000_000)
        #expect(settings.seed == 9)
        #expect(try FaultSettings(parsing: "").isEmpty)
        for bad in ["drop=120%", "drop", "drop=x", "delay=5", "delay=-1ms", "rate=10", "rate=fast", "jitter=1ms", "seed=-1"] {
            #expect(throws: FaultSettingsError.self, "\(bad)") { try FaultSettings(parsing: bad) }
        }
    }

    /// Sends `count` numbered frames through `settings` (out, then in) and
    /// returns the numbers that arrived, in order of arrival.
    private func pass(_ count: Int, _ settings: FaultSettings, wait: Duration = .zero,
                      counters: FaultCounters = FaultCounters()) throws -> (out: [Int], in: [Int]) {
        let link = try MemoryLink()
        let device = FaultInjectingDevice(link.first, settings: settings, counters: counters)
        var frame = [UInt8](repeating: 0, count: 100)
        var buffer = [UInt8](repeating: 0, count: 2048)
        func number(_ bytes: ArraySlice<UInt8>) -> Int { Int(bytes[bytes.startIndex + 60]) << 8 | Int(bytes[bytes.startIndex + 61]) }
        for index in 0..<count {
            frame[60] = UInt8(index >> 8)
            frame[61] = UInt8(truncatingIfNeeded: index)
            _ = try frame.withUnsafeBytes { try device.send($0) }
            _ = try frame.withUnsafeBytes { try link.second.send($0) }
        }
        var out: [Int] = []
        var inbound: [Int] = []
        // Until whatever was held back is due (reordered frames wait 1 ms
        // from when they were read), polling as the engine would.
        let end = SystemClock.monotonic() + wait + .milliseconds(5)
        repeat {
            try device.poll(now: SystemClock.monotonic())
            while let n = try buffer.withUnsafeMutableBytes({ try link.second.receive(into: $0) }) {
                out.append(number(buffer[0..<n]))
            }
            while let n = try buffer.withUnsafeMutableBytes({ try device.receive(into: $0) }) {
                inbound.append(number(buffer[0..<n]))
            }
            usleep(500)
        } while SystemClock.monotonic() < end || device.nextDeadline != nil
        return (out, inbound)
    }

    @Test func noFaultsPassesEverythingInOrder() throws {
        let result = try pass(200, FaultSettings())
        #expect(result.out == Array(0..<200))
        #expect(result.in == Array(0..<200))
    }

    @Test func dropDuplicateAndReorderAreCountedAndSeeded() throws {
        var settings = try FaultSettings(parsing: "drop=10%,duplicate=5%,reorder=10%,seed=3")
        let counters = FaultCounters()
        let first = try pass(2000, settings, wait: .milliseconds(2), counters: counters)
        let again = try pass(2000, settings, wait: .milliseconds(2))
        // Which frames are lost or doubled depends on the seed alone (when a
        // held one is overtaken depends on the clock too).
        #expect(first.out.sorted() == again.out.sorted(), "the same seed, the same faults")
        #expect(first.in.sorted() == again.in.sorted())
        let counts = Dictionary(uniqueKeysWithValues: counters.nonZero.map { ($0.name, $0.value) })
        for direction in ["in", "out"] {
            let arrived = direction == "in" ? first.in : first.out
            let dropped = counts["fault.\(direction).dropped"] ?? 0
            let duplicated = counts["fault.\(direction).duplicated"] ?? 0
            #expect((120...280).contains(dropped), "about 10% of 2000: \(counts)")
            #expect((40...170).contains(duplicated), "about 5% of 1800: \(counts)")
            #expect((100...300).contains(counts["fault.\(direction).reordered"] ?? 0), "\(counts)")
            #expect(arrived.count == 2000 - dropped + duplicated)
            #expect(arrived != arrived.sorted(), "some frames came late")
            #expect(Set(arrived).count == 2000 - dropped)
        }
        settings.seed = 4
        #expect(try pass(2000, settings, wait: .milliseconds(2)).out.sorted() != first.out.sorted())
    }

    @Test func delayHoldsFramesUntilTheirTime() throws {
        let link = try MemoryLink()
        let device = FaultInjectingDevice(link.first, settings: try FaultSettings(parsing: "delay=20ms"),
                                          counters: FaultCounters())
        let frame = [UInt8](repeating: 7, count: 64)
        let start = SystemClock.monotonic()
        _ = try frame.withUnsafeBytes { try device.send($0) }
        var buffer = [UInt8](repeating: 0, count: 256)
        #expect(try buffer.withUnsafeMutableBytes { try link.second.receive(into: $0) } == nil, "held")
        let deadline = device.nextDeadline
        let due = try #require(deadline)
        #expect(due - start >= .milliseconds(20))
        #expect(due - start < .milliseconds(200))
        usleep(25_000)
        try device.poll(now: SystemClock.monotonic())
        #expect(try buffer.withUnsafeMutableBytes { try link.second.receive(into: $0) } == 64)
        let after = device.nextDeadline
        #expect(after == nil)
    }

    @Test func rateSpacesFramesOutAndCorruptionFlipsOneBit() throws {
        let link = try MemoryLink()
        let device = FaultInjectingDevice(link.first, settings: try FaultSettings(parsing: "rate=1mbit,corrupt=100%"),
                                          counters: FaultCounters())
        let frame = [UInt8](repeating: 0, count: 1250)  // 10 ms at 1 Mbit/s
        let start = SystemClock.monotonic()
        for _ in 0..<3 { _ = try frame.withUnsafeBytes { try device.send($0) } }
        let deadline = device.nextDeadline
        let last = try #require(deadline)
        #expect(last - start >= .milliseconds(10), "the second and third wait for the link")
        usleep(40_000)
        try device.poll(now: SystemClock.monotonic())
        var buffer = [UInt8](repeating: 0, count: 2048)
        var arrived = 0
        while let n = try buffer.withUnsafeMutableBytes({ try link.second.receive(into: $0) }) {
            arrived += 1
            let flipped = buffer[0..<n].reduce(0) { $0 + $1.nonzeroBitCount }
            #expect(flipped == 1, "one bit flipped")
            #expect(buffer[0..<14].allSatisfy { $0 == 0 }, "never in the Ethernet header")
        }
        #expect(arrived == 3)
    }
}
