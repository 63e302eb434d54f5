import Foundation
import NetstackControl
import NetstackCore
import NetstackIO
import NetstackService
import NetstackWire
import Prometheus

/// The stack queries as a `Service`: a query kind to its JSON answer. The
/// daemon wraps it in logging, metrics and a concurrency limit like its
/// other services.
struct ControlQueries: NetstackService.Service, Sendable {
    let engine: Engine<DaemonDevice>
    let link: LinkInstruments
    let configuration: DaemonConfiguration
    let metrics: PrometheusCollectorRegistry?
    let clients: ControlClients
    let offloads: TapOffloadReport
    let started = ContinuousClock.now

    func call(_ kind: QueryKind) async throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        switch kind {
        case .status:
            let (sockets, resources) = await engine.query { stack in
                (stack.tcpSockets(IPv4.self).count + stack.tcpSockets(IPv6.self).count
                    + stack.udpSockets(IPv4.self).count + stack.udpSockets(IPv6.self).count,
                 stack.resources.map { ResourceReport(name: $0.name, inUse: $0.inUse, limit: $0.limit) })
            }
            let control = ResourceReport(name: "control clients", inUse: clients.count,
                                         limit: configuration.controlMaximumClients)
            let elapsed = (ContinuousClock.now - started).components
            return Array(try encoder.encode(StatusReport(
                version: "netstackd 0.1", interface: configuration.interface, mac: "\(configuration.mac)",
                mtu: configuration.mtu,
                uptimeSeconds: Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18,
                sockets: sockets, controlClients: clients.count, offloads: "\(offloads)",
                resources: resources + [control])))
        case .addresses:
            return Array(try encoder.encode(await engine.query { stack in
                stack.ipv4Addresses.map { AddressReport(family: .ipv4, address: "\($0.interface)", state: "\($0.state)") }
                    + stack.ipv6Addresses.map { AddressReport(family: .ipv6, address: "\($0.interface)", state: "\($0.state)") }
            }))
        case .neighbors:
            return Array(try encoder.encode(await engine.query { stack in
                stack.ipv4Neighbors.map { NeighborReport(family: .ipv4, address: "\($0.address)", mac: $0.mac.map { "\($0)" },
                                                         state: "\($0.state)", isRouter: $0.isRouter) }
                    + stack.ipv6Neighbors.map { NeighborReport(family: .ipv6, address: "\($0.address)", mac: $0.mac.map { "\($0)" },
                                                               state: "\($0.state)", isRouter: $0.isRouter) }
            }))
        case .sockets:
            return Array(try encoder.encode(await engine.query { stack in
                Self.sockets(stack, IPv4.self) + Self.sockets(stack, IPv6.self)
            }))
        case .stats:
            let stackCounters = await engine.query { stack in stack.counters.nonZero.map { ($0.name, $0.value) } }
            let counters = Dictionary(stackCounters + link.counters.map { ($0.name, UInt64($0.value)) }, uniquingKeysWith: +)
            return Array(try encoder.encode(StatsReport(counters: counters, metrics: metrics?.emitToString() ?? "")))
        }
    }

    private static func sockets<I: IPVersion>(_ stack: Stack, _ version: I.Type) -> [SocketReport] {
        func text(_ endpoint: Endpoint<I>?) -> String { endpoint.map { "\(ControlEndpoint($0))" } ?? "*" }
        let tcp = stack.tcpSockets(I.self).map { socket in
            SocketReport(proto: I.self == IPv4.self ? "tcp" : "tcp6", state: socket.state.rawValue,
                         local: text(socket.local), remote: text(socket.remote),
                         receiveQueue: max(0, socket.receiveQueue), sendQueue: max(0, socket.sendQueue))
        }
        let udp = stack.udpSockets(I.self).map { socket in
            SocketReport(proto: I.self == IPv4.self ? "udp" : "udp6", state: socket.remote == nil ? "unconnected" : "connected",
                         local: text(socket.local), remote: text(socket.remote),
                         receiveQueue: socket.queuedBytes, sendQueue: 0)
        }
        return tcp + udp
    }
}
