import Foundation
import NetstackControl
import NetstackCore
import NetstackIO
import NetstackService
import Prometheus

/// The daemon's own web pages, served by the stack itself over its own TCP:
/// a small HTTP/1.1 server with the metrics at `/metrics` in the Prometheus
/// text format (version 0.0.4: the stack's counters and drops by reason and
/// the services' metrics) and at `/` an HTML status page (interface,
/// addresses, neighbours, sockets, counters) that refreshes itself every
/// 5 s. So `curl http://192.168.69.1:9100/metrics`, a Prometheus scrape and a
/// browser on http://192.168.69.1/ work with nothing of ours on the host.
/// `[services.metrics]` (9100) and `[services.status]` (80) both serve both.
///
/// HTTP (RFC 9112): persistent connections unless the client says `close`
/// (HTTP/1.0: unless it says `keep-alive`), `HEAD`, 404 for other paths, 405
/// for other methods, 400 for what does not parse, 431 for a request head
/// over 8 KiB, which also ends the connection. Request bodies are not read
/// (no method here takes one); a request that announces one gets 400.
/// The service's idle timeout (10 s by default) ends slow and idle clients.
struct StatusServer: Service, Sendable {
    let sockets: SocketRuntime
    let registry: PrometheusCollectorRegistry?
    /// The control queries' JSON answers (status, addresses, ...), for the page.
    let queries: @Sendable (QueryKind) async -> [UInt8]?

    static let maximumHead = 8 * 1024

    func call(_ connection: ServedConnection) async throws -> ConnectionOutcome {
        var outcome = ConnectionOutcome()
        var buffered: [UInt8] = []
        while true {
            // One request head: up to the empty line.
            var end: Int?
            while true {
                end = Self.headEnd(buffered)
                if end != nil || buffered.count > Self.maximumHead { break }
                let chunk = try await connection.receive()
                if chunk.isEmpty {
                    // The client finished: between requests that is the end.
                    if !buffered.isEmpty { outcome.sent += try await respond(connection, HTTPResponse(status: 400), close: true) }
                    try await connection.shutdown()
                    return outcome
                }
                outcome.received += chunk.count
                buffered += chunk
            }
            guard let end, end <= Self.maximumHead else {
                outcome.sent += try await respond(connection, HTTPResponse(status: 431), close: true)
                try await connection.shutdown()
                return outcome
            }
            let head = Array(buffered[..<end])
            buffered.removeFirst(end)
            let (response, close) = await answer(head)
            outcome.sent += try await respond(connection, response, close: close)
            if close {
                try await connection.shutdown()
                return outcome
            }
        }
    }

    struct HTTPResponse {
        var status: Int
        var contentType = "text/plain; charset=utf-8"
        var body: [UInt8] = []
        var headOnly = false
        var extraHeaders: [(String, String)] = []
    }

    /// Where the head ends (after CR LF CR LF, or LF LF as RFC 9112 §2.2 lets
    /// a server accept), if it has.
    static func headEnd(_ bytes: [UInt8]) -> Int? {
        var index = 0
        while index < bytes.count {
            if bytes[index] == 10 {
                if index + 1 < bytes.count, bytes[index + 1] == 10 { return index + 2 }
                if index + 2 < bytes.count, bytes[index + 1] == 13, bytes[index + 2] == 10 { return index + 3 }
            }
            index += 1
        }
        return nil
    }

    /// The response to one request head, and whether the connection ends after it.
    func answer(_ head: [UInt8]) async -> (HTTPResponse, Bool) {
        // Lines split on LF bytes (CR LF is one Character in Swift strings).
        let lines = head.split(separator: 10, omittingEmptySubsequences: false).map { line in
            String(decoding: line.last == 13 ? line.dropLast() : line, as: UTF8.self)
        }
        let parts = lines.first?.split(separator: " ", omittingEmptySubsequences: false) ?? []
        guard parts.count == 3, parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0", parts[1].hasPrefix("/") else {
            return (HTTPResponse(status: 400), true)
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { return (HTTPResponse(status: 400), true) }
            let name = line[..<colon].lowercased()
            guard !name.isEmpty, !name.contains(" ") else { return (HTTPResponse(status: 400), true) }
            headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        // A body would be read as the next request: refuse it and end.
        if let length = headers["content-length"], length != "0" { return (HTTPResponse(status: 400), true) }
        if headers["transfer-encoding"] != nil { return (HTTPResponse(status: 400), true) }
        let connectionOption = headers["connection"]?.lowercased() ?? ""
        let close = parts[2] == "HTTP/1.0" ? !connectionOption.contains("keep-alive") : connectionOption.contains("close")
        let method = parts[0]
        guard method == "GET" || method == "HEAD" else {
            return (HTTPResponse(status: 405, extraHeaders: [("Allow", "GET, HEAD")]), close)
        }
        let path = parts[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        var response: HTTPResponse
        switch path {
        case "/metrics":
            response = HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                body: Array(await exposition().utf8))
        case "/", "/index.html":
            response = HTTPResponse(status: 200, contentType: "text/html; charset=utf-8",
                                    body: Array(await statusPage().utf8))
        default:
            response = HTTPResponse(status: 404, body: Array("not found\n".utf8))
        }
        response.headOnly = method == "HEAD"
        return (response, close)
    }

    /// The Prometheus text: the stack's counters and drops, then the registry's metrics.
    func exposition() async -> String {
        // The stack's counters with the capture's and the fault injector's,
        // as `netstackctl stats` has them.
        let report = await queries(.stats).flatMap { try? JSONDecoder().decode(StatsReport.self, from: Data($0)) }
        let counters = (report?.counters ?? [:]).map { ($0.key, $0.value) }
        let resources = await queries(.status)
            .flatMap { try? JSONDecoder().decode(StatusReport.self, from: Data($0)) }?.resources ?? []
        let (states, rtts, windows) = await sockets.perform { stack -> ([String: Int], [Double], [Double]) in
            var states: [String: Int] = [:]
            var rtts: [Double] = []
            var windows: [Double] = []
            func add<I: IPVersion>(_ version: I.Type, _ name: String) {
                for socket in stack.tcpSockets(I.self) {
                    states["\(name) \(socket.state.rawValue)", default: 0] += 1
                    if let rtt = socket.smoothedRTT { rtts.append(Double(rtt.nanoseconds) / 1e9) }
                    if let window = socket.congestionWindow { windows.append(Double(window)) }
                }
            }
            add(IPv4.self, "tcp")
            add(IPv6.self, "tcp6")
            states["udp", default: 0] += stack.udpSockets(IPv4.self).count
            states["udp6", default: 0] += stack.udpSockets(IPv6.self).count
            return (states, rtts, windows)
        }
        var text = "# HELP netstack_events_total Events the stack counted (frames, bytes, segments, errors sent), by name.\n"
        text += "# TYPE netstack_events_total counter\n"
        var drops = "# HELP netstack_drops_total Frames and segments the stack dropped, by reason.\n"
        drops += "# TYPE netstack_drops_total counter\n"
        for (name, value) in counters.sorted(by: { $0.0 < $1.0 }) {
            if name.hasPrefix("drop.") {
                drops += "netstack_drops_total{reason=\"\(Self.escape(String(name.dropFirst(5))))\"} \(value)\n"
            } else {
                text += "netstack_events_total{name=\"\(Self.escape(name))\"} \(value)\n"
            }
        }
        var sockets = "# HELP netstack_sockets Sockets in the stack now, by protocol and TCP state.\n"
        sockets += "# TYPE netstack_sockets gauge\n"
        for (key, count) in states.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: " ")
            let state = parts.count > 1 ? String(parts[1]) : "open"
            sockets += "netstack_sockets{protocol=\"\(parts[0])\",state=\"\(Self.escape(state))\"} \(count)\n"
        }
        var caps = "# HELP netstack_resource_in_use What each cap of [limits] holds now (bytes or entries).\n"
        caps += "# TYPE netstack_resource_in_use gauge\n"
        var limits = "# HELP netstack_resource_limit Each cap of [limits] (bytes or entries).\n"
        limits += "# TYPE netstack_resource_limit gauge\n"
        for resource in resources {
            caps += "netstack_resource_in_use{resource=\"\(Self.escape(resource.name))\"} \(resource.inUse)\n"
            limits += "netstack_resource_limit{resource=\"\(Self.escape(resource.name))\"} \(resource.limit)\n"
        }
        let connections = Self.summary("netstack_tcp_rtt_seconds",
                                       "Smoothed round-trip times of the TCP connections open now.", rtts)
            + Self.summary("netstack_tcp_cwnd_bytes", "Congestion windows of the TCP connections open now.", windows)
        return text + drops + sockets + caps + limits + connections + Self.withHelp(registry?.emitToString() ?? "")
    }

    /// A Prometheus summary of `values` (the connections open now): the
    /// median, 90th and 99th percentiles, the sum and the count.
    static func summary(_ name: String, _ help: String, _ values: [Double]) -> String {
        var text = "# HELP \(name) \(help)\n# TYPE \(name) summary\n"
        let sorted = values.sorted()
        for quantile in [0.5, 0.9, 0.99] where !sorted.isEmpty {
            let index = min(sorted.count - 1, Int((quantile * Double(sorted.count)).rounded(.up)) - 1)
            text += "\(name){quantile=\"\(quantile)\"} \(sorted[max(0, index)])\n"
        }
        text += "\(name)_sum \(sorted.reduce(0, +))\n\(name)_count \(sorted.count)\n"
        return text
    }

    /// The registry's text with a `# HELP` line before each `# TYPE` line
    /// that has none (swift-prometheus writes only the type; promtool and
    /// Prometheus's own exporters expect both).
    static func withHelp(_ text: String) -> String {
        var out: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# TYPE "), !(out.last?.hasPrefix("# HELP ") ?? false) {
                let name = line.dropFirst(7).split(separator: " ").first.map(String.init) ?? ""
                out.append("# HELP \(name) \(help(for: name))")
            }
            out.append(String(line))
        }
        return out.joined(separator: "\n")
    }

    /// What a swift-metrics metric of the middleware means, from its name.
    static func help(for name: String) -> String {
        if name.hasSuffix("_calls_total") { return "Requests that passed this middleware stage, by result." }
        if name.hasSuffix("_duration") { return "Seconds requests spent in this middleware stage." }
        if name.hasSuffix("_in_flight") { return "Requests inside this middleware stage now." }
        if name == "netstack_iperf3_sessions_total" { return "iperf3 tests the built-in server ran." }
        if name == "netstack_iperf3_failed_sessions_total" { return "iperf3 sessions that broke the protocol." }
        return "A metric of netstackd's services."
    }

    /// A label value escaped as Prometheus's text exposition format wants it.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// The status page: what `netstackctl status`, `addresses`, `neighbors`,
    /// `sockets` and `stats` show, as one HTML page.
    func statusPage() async -> String {
        let decoder = JSONDecoder()
        func report<T: Decodable>(_ kind: QueryKind, _ type: T.Type) async -> T? {
            guard let json = await queries(kind) else { return nil }
            return try? decoder.decode(T.self, from: Data(json))
        }
        let status = await report(.status, StatusReport.self)
        let addresses = await report(.addresses, [AddressReport].self) ?? []
        let neighbors = await report(.neighbors, [NeighborReport].self) ?? []
        let sockets = await report(.sockets, [SocketReport].self) ?? []
        let counters = await report(.stats, StatsReport.self)?.counters ?? [:]
        func table(_ headings: [String], _ rows: [[String]]) -> String {
            let head = headings.map { "<th>\(Self.html($0))</th>" }.joined()
            let body = rows.isEmpty ? "<tr><td colspan=\"\(headings.count)\">none</td></tr>"
                : rows.map { "<tr>" + $0.map { "<td>\(Self.html($0))</td>" }.joined() + "</tr>" }.joined(separator: "\n")
            return "<table><tr>\(head)</tr>\n\(body)</table>"
        }
        var page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
            <title>netstackd on \(Self.html(status?.interface ?? "?"))</title>
            <style>
            body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
            h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.4em; }
            table { border-collapse: collapse; } td, th { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: left; }
            th { background: #f0f0f0; } td { font-family: ui-monospace, monospace; }
            </style></head><body>
            <h1>netstackd on \(Self.html(status?.interface ?? "?"))</h1>

            """
        if let status {
            page += table(["version", "MAC", "MTU", "up", "sockets", "control clients", "offloads"],
                          [[status.version, status.mac, "\(status.mtu)", "\(Int(status.uptimeSeconds)) s",
                            "\(status.sockets)", "\(status.controlClients)", status.offloads ?? "none"]])
        }
        page += "<h2>Addresses</h2>" + table(["family", "address", "state"],
                                             addresses.map { ["\($0.family)", $0.address, $0.state] })
        page += "<h2>Neighbours</h2>" + table(["family", "address", "MAC", "state", "router"],
                                              neighbors.map { ["\($0.family)", $0.address, $0.mac ?? "", $0.state,
                                                               $0.isRouter ? "yes" : ""] })
        page += "<h2>Sockets</h2>" + table(["proto", "state", "local", "remote", "recv-q", "send-q"],
                                           sockets.map { [$0.proto, $0.state, $0.local, $0.remote,
                                                          "\($0.receiveQueue)", "\($0.sendQueue)"] })
        page += "<h2>Limits</h2>" + table(["resource", "in use", "limit"],
                                          (status?.resources ?? []).map { [$0.name, "\($0.inUse)", "\($0.limit)"] })
        page += "<h2>Counters</h2>" + table(["counter", "value"],
                                            counters.sorted { $0.key < $1.key }.map { [$0.key, "\($0.value)"] })
        page += "\n<p>Metrics for Prometheus: <a href=\"/metrics\">/metrics</a>. The page refreshes every 5 s.</p>\n"
        return page + "</body></html>\n"
    }

    /// `text` with HTML's special characters escaped.
    static func html(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }

    /// Sends `response`; the bytes sent.
    private func respond(_ connection: ServedConnection, _ response: HTTPResponse, close: Bool) async throws -> Int {
        var head = "HTTP/1.1 \(response.status) \(Self.reason(response.status))\r\n"
        head += "Content-Type: \(response.contentType)\r\n"
        head += "Content-Length: \(response.body.count)\r\n"
        for (name, value) in response.extraHeaders { head += "\(name): \(value)\r\n" }
        if close { head += "Connection: close\r\n" }
        head += "\r\n"
        let bytes = Array(head.utf8) + (response.headOnly ? [] : response.body)
        try await connection.send(bytes)
        return bytes.count
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 431: "Request Header Fields Too Large"
        default: "Error"
        }
    }
}
