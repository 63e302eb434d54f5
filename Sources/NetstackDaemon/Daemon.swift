import ArgumentParser
import Glibc
import Logging
import Metrics
import NetstackCore
import NetstackIO
import NetstackService
import NetstackWire
import Prometheus
import ServiceLifecycle

/// `netstackd`: parses the command line, opens the TAP device, and runs the
/// stack until SIGINT or SIGTERM.
///
/// Exit status: 0 after a clean stop, 2 for bad flags or configuration (and
/// for a TAP device that cannot be opened, which is a configuration matter:
/// a name or a permission), 1 when the device fails while running.
public enum Daemon {
    public static func main(arguments: [String]) async -> Never {
        if arguments.dropFirst().first == "replay" { replay(Array(arguments.dropFirst(2))) }
        let command: NetstackdCommand
        do {
            command = try NetstackdCommand.parse(Array(arguments.dropFirst()))
        } catch {
            if NetstackdCommand.exitCode(for: error) == .success {
                print(NetstackdCommand.fullMessage(for: error))
                exit(0)
            }
            fail(NetstackdCommand.fullMessage(for: error), status: 2)
        }
        let configuration: DaemonConfiguration
        do {
            configuration = try command.resolve()
        } catch {
            fail("\(error)", status: 2)
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = configuration.logLevel
            return handler
        }
        // The services' middleware reports through swift-metrics into a
        // Prometheus registry, which the exit summary prints.
        let metrics = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics))
        do {
            try await run(configuration, metrics: metrics)
            exit(0)
        } catch let error as StartupError {
            fail("\(error)", status: 2)
        } catch {
            fail("\(error)", status: 1)
        }
    }

    /// `netstackd replay ...`: runs the replay and exits.
    static func replay(_ arguments: [String]) -> Never {
        do {
            let command = try ReplayCommand.parse(arguments)
            print(try command.replay())
            exit(0)
        } catch let error as ReplayError {
            fail("replay: \(error)", status: error.status)
        } catch {
            if ReplayCommand.exitCode(for: error) == .success {
                print(ReplayCommand.fullMessage(for: error))
                exit(0)
            }
            fail(ReplayCommand.fullMessage(for: error), status: 2)
        }
    }

    /// Writes `message` to standard error and exits.
    static func fail(_ message: String, status: Int32) -> Never {
        writeStandardError("netstackd: \(message)\n")
        exit(status)
    }

    /// A failure to set up what the configuration names.
    struct StartupError: Error, CustomStringConvertible {
        var description: String
    }

    /// Frames the kernel may queue for the engine, at least.
    static let minimumQueueLength = 16_384

    /// Opens the TAP device at the configured MTU and a queue of at least
    /// `minimumQueueLength` frames, with the offloads the kernel accepts, and
    /// brings it up.
    static func openDevice(_ configuration: DaemonConfiguration,
                           offloads: inout TapOffloadReport) throws(StartupError) -> TapDevice {
        do {
            let device = try TapDevice.openForStack(name: configuration.interface, offloads: configuration.offloads,
                                                    report: &offloads)
            if try device.mtu() != configuration.mtu { try device.setMTU(configuration.mtu) }
            // The TAP's queue is the stack's receive ring: a deeper one rides
            // out the moments the engine thread is not running (under a SYN
            // flood the default 1000 overflowed and real clients' SYNs went).
            if try device.queueLength() < Self.minimumQueueLength { try device.setQueueLength(Self.minimumQueueLength) }
            try device.bringUp()
            return device
        } catch {
            throw StartupError(description: "interface \(error)")
        }
    }

    /// Raises the soft limit on open descriptors to the hard one, as a
    /// server does: every control connection (every socket of a program
    /// under `netstack-run`) is a descriptor, and the soft default of 1,024
    /// would stop the daemon long before `control.max-clients`.
    static func raiseDescriptorLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let before = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            logger.debug("open descriptors: soft limit raised from \(before) to \(limit.rlim_max)")
        }
    }

    /// Runs the daemon until a stop signal.
    public static func run(_ configuration: DaemonConfiguration, metrics: PrometheusCollectorRegistry? = nil) async throws {
        let logger = Logger(label: "netstackd")
        raiseDescriptorLimit(logger: logger)
        var offloads = TapOffloadReport()
        var tapConfiguration = configuration
        if let faults = configuration.faults {
            // Each fault then hits one wire-sized frame, and a corrupted one
            // carries a checksum that catches it (with offloads the kernel
            // would checksum the corrupted bytes).
            logger.notice("injecting faults both ways: \(faults); offloads off")
            tapConfiguration.offloads = false
        }
        let tap = try openDevice(tapConfiguration, offloads: &offloads)
        if offloads.refusal != nil {
            logger.warning("offloads: \(offloads)")
        } else {
            logger.info("offloads: \(offloads)")
        }
        let file: PcapWriter?
        do {
            file = try configuration.pcap.map { path throws(PcapError) in
                try PcapWriter(path: path, format: configuration.pcapFormat, filter: configuration.pcapFilter,
                               rotation: configuration.pcapRotation)
            }
        } catch {
            if case .filter = error { throw StartupError(description: "pcap-filter: \(error)") }
            throw StartupError(description: "pcap: \(error)")
        }
        let capture = FrameCapture(file: file, report: { logger.error("\($0)") })
        let faultCounters = FaultCounters()
        let virtioHeader = offloads.link.virtioHeader
        let device = DaemonDevice(CapturingDevice(tap, capture: capture, virtioHeader: virtioHeader),
                                  settings: configuration.faults, counters: faultCounters,
                                  skip: virtioHeader ? VirtioNetHeader.length : 0)
        var system = SystemRandomNumberGenerator()
        let stack = Stack(configuration: configuration.stackConfiguration, now: SystemClock.monotonic(),
                          seed: system.next())
        stack.offloads = offloads.link
        let engine = try Engine(stack: stack, device: device, logger: logger,
                                statisticsInterval: configuration.statisticsInterval,
                                busyPoll: configuration.busyPoll)
        let link = LinkInstruments(capture: capture, faults: faultCounters)
        let service = EngineService(engine: engine, link: link, configuration: configuration, metrics: metrics,
                                    logger: logger)
        // The stack queries serve the control socket and the status page alike.
        let clients = ControlClients(maximum: configuration.controlMaximumClients,
                                     perProcess: configuration.controlMaximumClientsPerProcess)
        let queries = AnySendableService(ServiceBuilder
            .layer(LoggingLayer(logger: logger, name: "control query"))
            .layer(MetricsLayer(name: "netstack_control_queries"))
            .layer(ConcurrencyLimitLayer(limit: 4))
            .service(ControlQueries(engine: engine, link: link, configuration: configuration, metrics: metrics,
                                    clients: clients, offloads: offloads)))
        let builtins = BuiltinServices(settings: configuration.services, sockets: engine.sockets, logger: logger,
                                       metrics: metrics, queries: { try? await queries.call($0) })
        // Built-in services may all end (none configured, or none could bind):
        // the daemon goes on serving the network and the control socket.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: service), .init(service: builtins, successTerminationBehavior: .ignore),
        ]
        if let path = configuration.controlSocket {
            let context = ControlContext(runtime: engine.sockets, clients: clients, queries: queries, capture: capture)
            services.append(.init(service: try ControlServer(path: path, group: configuration.controlGroup,
                                                             context: context, logger: logger)))
        }
        // Shutdown goes in reverse: control clients and services close their
        // sockets, then the engine stops.
        let group = ServiceGroup(configuration: .init(services: services,
                                                      gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: logger))
        try await group.run()
    }
}

/// The engine as a lifecycle service: runs its loop on a dedicated thread,
/// announces readiness, and on graceful shutdown stops it, flushes the
/// capture and prints the counters.
struct EngineService: ServiceLifecycle.Service {
    let engine: Engine<DaemonDevice>
    let link: LinkInstruments
    let configuration: DaemonConfiguration
    let metrics: PrometheusCollectorRegistry?
    let logger: Logger

    func run() async throws {
        let failure = FailureBox()
        let thread = DedicatedThread { [engine] in
            do {
                try engine.run()
            } catch {
                failure.set(error)
            }
        }
        logger.info("running on \(configuration.interface)")
        // A graceful shutdown (a signal) and a cancellation of the group
        // (another service failed) both stop the engine thread.
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await announceReadiness() }
                    await thread.wait()
                    group.cancelAll()
                }
            } onGracefulShutdown: {
                engine.stop()
            }
        } onCancel: {
            engine.stop()
        }
        // The thread has ended: the stack is ours to read, and the capture
        // has every frame it will get.
        await link.capture.finish()
        let summary = ([Engine<DaemonDevice>.summary(engine.stack.counters)]
            + link.counters.map { "\($0.name)=\($0.value)" }).joined(separator: " ")
        writeStandardError("netstackd: stopped; counters: \(summary)\n")
        if let metrics {
            // Counters, meters and histogram totals; the buckets would be noise here.
            let lines = metrics.emitToString().split(separator: "\n").filter { !$0.contains("_bucket") && !$0.hasPrefix("#") }
            writeStandardError("netstackd: metrics:\n" + lines.map { "  \($0)\n" }.joined())
        }
        if let error = failure.error { throw error }
    }

    /// Prints one "ready" line on standard output once every address has
    /// finished duplicate address detection (scripts and tests wait for it).
    private func announceReadiness() async {
        while true {
            let settled = await engine.query { $0.addressesSettled }
            if settled { break }
            do { try await Task.sleep(for: .milliseconds(50)) } catch { return }
        }
        let addresses = await engine.query { stack in
            stack.ipv4Addresses.map { "\($0.interface)" } + stack.ipv6Addresses.map { "\($0.interface)" }
        }
        print("netstackd: ready on \(configuration.interface): \(addresses.joined(separator: " "))")
        fflush(nil)
    }
}

/// The daemon's device: the TAP, seen by the capture as frames cross it,
/// behind the fault injector (which passes frames untouched when no fault
/// is set), so a capture shows the wire and faults hit the stack's side.
typealias DaemonDevice = FaultInjectingDevice<CapturingDevice<TapDevice>>

/// What the device wrappers count, for `netstackctl stats` and /metrics.
struct LinkInstruments: Sendable {
    let capture: FrameCapture
    let faults: FaultCounters

    /// Every non-zero counter of the capture and the fault injector.
    var counters: [(name: String, value: Int)] {
        (capture.counters + faults.nonZero).filter { $0.value != 0 }
    }
}

/// The engine thread's error, handed to the service task. Written once by the
/// thread before it ends; read after `DedicatedThread.wait()` returned.
final class FailureBox: @unchecked Sendable {
    // @unchecked: `set` runs on the engine thread before the thread finishes;
    // `error` is read only after `wait()` observed that finish (through the
    // thread's Mutex), which orders the two accesses.
    private(set) var error: (any Error)?
    func set(_ error: any Error) { self.error = error }
}

/// Writes `text` to standard error, unbuffered.
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if n <= 0 { return }
        offset += n
    }
}
