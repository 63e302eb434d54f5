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
        subcommands: [Status.self, Addresses.self, Neighbors.self, Sockets.self, Stats.self, Netcat.self])
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
        ])
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
