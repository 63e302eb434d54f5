import ArgumentParser
import Foundation
import Glibc
import NetstackClient
import NetstackControl

struct Connection: ParsableArguments {
    @Option(name: .long, help: "netstackd's control socket.")
    var socket = ProcessInfo.processInfo.environment["NETSTACKD_SOCKET"] ?? ControlProtocol.defaultSocketPath

    var client: NetstackClient { NetstackClient(path: socket) }
}

struct Output: ParsableArguments {
    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false
}

@main
struct Netstackctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netstackctl",
        abstract: "Ask netstackd about its stack, and use sockets inside it.",
        subcommands: [Status.self, Addresses.self, Neighbors.self, Sockets.self, Stats.self, Netcat.self,
                      Capture.self])
}

/// Prints `value` as JSON, or as a table of `rows` under `header`.
func show<T: Encodable>(_ value: T, json: Bool, header: [String], rows: [[String]]) throws {
    if json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
        return
    }
    let table = [header] + rows
    let widths = header.indices.map { column in table.map { $0[column].count }.max() ?? 0 }
    for row in table {
        print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The daemon: interface, uptime, sockets, clients.")
    @OptionGroup var connection: Connection
    @OptionGroup var output: Output

    func run() async throws {
        let status = try await connection.client.status()
        try show(status, json: output.json, header: ["key", "value"], rows: [
            ["version", status.version], ["interface", status.interface], ["mac", status.mac], ["mtu", "\(status.mtu)"],
            ["uptime", String(format: "%.1f s", status.uptimeSeconds)], ["sockets", "\(status.sockets)"],
            ["control clients", "\(status.controlClients)"], ["offloads", status.offloads ?? "?"],
        ] + (status.resources ?? []).map { [$0.name, "\($0.inUse) of \($0.limit)"] })
    }
}

struct Addresses: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The stack's addresses and their state.")
    @OptionGroup var connection: Connection
    @OptionGroup var output: Output

    func run() async throws {
        let addresses = try await connection.client.addresses()
        try show(addresses, json: output.json, header: ["family", "address", "state"],
                 rows: addresses.map { ["ipv\($0.family.rawValue)", $0.address, $0.state] })
    }
}

struct Neighbors: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The ARP and NDP neighbour tables.")
    @OptionGroup var connection: Connection
    @OptionGroup var output: Output

    func run() async throws {
        let neighbors = try await connection.client.neighbors()
        try show(neighbors, json: output.json, header: ["family", "address", "mac", "state", "router"],
                 rows: neighbors.map { ["ipv\($0.family.rawValue)", $0.address, $0.mac ?? "-", $0.state, $0.isRouter ? "yes" : ""] })
    }
}

struct Sockets: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The stack's sockets, like ss.")
    @OptionGroup var connection: Connection
    @OptionGroup var output: Output

    func run() async throws {
        let sockets = try await connection.client.sockets()
        try show(sockets, json: output.json, header: ["proto", "state", "recv-q", "send-q", "local", "remote"],
                 rows: sockets.map { [$0.proto, $0.state, "\($0.receiveQueue)", "\($0.sendQueue)", $0.local, $0.remote] })
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The stack's counters (drops by reason) and the services' metrics.")
    @OptionGroup var connection: Connection
    @OptionGroup var output: Output

    func run() async throws {
        let stats = try await connection.client.stats()
        try show(stats, json: output.json, header: ["counter", "value"],
                 rows: stats.counters.sorted { $0.key < $1.key }.map { [$0.key, "\($0.value)"] })
        if !output.json && !stats.metrics.isEmpty {
            print("")
            print(stats.metrics.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.contains("_bucket") }.joined(separator: "\n"))
        }
    }
}

struct Capture: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stream the stack's frames as a capture file to standard output, while the daemon runs.",
        discussion: """
            netstackctl capture 'tcp port 7' | tcpdump -r - -nn
            Stops when the reader goes away (or on Ctrl-C). A reader slower than the traffic loses frames \
            (capture.liveDropped in netstackctl stats); the stack never waits for it.
            """)
    @OptionGroup var connection: Connection
    @Option(name: .long, help: "pcap or pcapng.")
    var format = "pcap"
    @Argument(parsing: .remaining, help: "A BPF filter expression, as tcpdump takes it (all frames without one).")
    var filter: [String] = []

    func validate() throws {
        guard ["pcap", "pcapng"].contains(format) else { throw ValidationError("--format is pcap or pcapng") }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let descriptor = try await connection.client.capture(filter: filter.joined(separator: " "),
                                                            format: format == "pcapng" ? .pcapng : .pcap)
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            var offset = 0
            while offset < n {
                let written = buffer.withUnsafeBytes { write(1, $0.baseAddress! + offset, n - offset) }
                if written < 0 && errno == EINTR { continue }
                // The reader is gone (EPIPE): done.
                guard written > 0 else { return }
                offset += written
            }
        }
    }
}
