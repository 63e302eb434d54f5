import ArgumentParser
import NetstackCore
import NetstackIO
import NetstackWire

/// `netstackd replay FILE --out OUT`: a capture's host-side frames through
/// a fresh stack, for debugging a report from the field.
///
/// The stack is the configured one (addresses, MAC, limits; nothing sent
/// unprompted at start), on a virtual clock that follows the capture's
/// timestamps, so the replay takes milliseconds and its timers fire when they
/// would have. The daemon's built-in services are tasks on the engine's real
/// clock, so the replay serves their synchronous equivalents: TCP and UDP
/// echo on port 7, TCP discard on port 9 (what the fixtures recorded). The
/// output holds the host's frames as fed and the stack's answers, in time
/// order; pcapng says which is which.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netstackd replay",
        abstract: "Replay a capture's host-side frames through a fresh stack and write what it answered.")

    @Argument(help: "The capture to replay (pcap or pcapng, Ethernet).")
    var capture: String

    @Option(name: .long, help: "Where to write the replay (the host's frames and the stack's answers).")
    var out: String

    @Option(name: .long, help: "pcap or pcapng.")
    var format = "pcap"

    @Option(name: .long, help: "The configuration whose stack to replay against (the built-in one by default).")
    var config: String?

    /// Replays, writes `out`, and returns a summary line.
    func replay() throws -> String {
        let settings: DaemonConfiguration
        do {
            settings = try config.map { path throws(ConfigurationError) in try ConfigurationFile.load(path: path) }
                ?? DaemonConfiguration.standard()
        } catch {
            throw ReplayError(status: 2, message: "\(error)")
        }
        guard let outputFormat = CaptureFormat(rawValue: format) else {
            throw ReplayError(status: 2, message: "--format: \"\(format)\" is not pcap or pcapng")
        }
        let records: [PcapReader.Record]
        do {
            let reader = try PcapReader(path: capture)
            guard reader.linkType == 1 else {
                throw ReplayError(status: 2, message: "\(capture): not an Ethernet capture (link type \(reader.linkType))")
            }
            records = try reader.readAll()
        } catch let error as PcapError {
            throw ReplayError(status: 2, message: "\(error)")
        }
        let writer: PcapWriter
        do {
            writer = try PcapWriter(path: out, precision: .nanosecond, format: outputFormat)
        } catch {
            throw ReplayError(status: 2, message: "--out: \(error)")
        }
        let udp = DirectUDPEcho()
        let tcp = DirectTCPServices()
        let replay = CaptureReplay(records: records, stackMAC: settings.mac,
                                   configuration: CaptureReplay.quiet(settings.stackConfiguration),
                                   setUp: { stack in
                                       udp.setUp(stack)
                                       tcp.setUp(stack)
                                   }, application: { stack in
                                       udp.run(stack)
                                       tcp.run(stack)
                                   })
        for event in replay.events { writer.write(event.bytes, timestamp: event.time, direction: event.direction) }
        do {
            try writer.flush()
        } catch {
            throw ReplayError(status: 1, message: "\(error)")
        }
        writer.close()
        let fed = replay.events.count - replay.produced.count
        return "replayed \(fed) frames of \(capture) to \(settings.mac); the stack sent \(replay.produced.count) "
            + "(the recorded stack \(replay.expected.count)); counters: \(Engine<TapDevice>.summary(replay.stack.counters))"
    }
}

struct ReplayError: Error, CustomStringConvertible {
    var status: Int32
    var message: String
    var description: String { message }
}
