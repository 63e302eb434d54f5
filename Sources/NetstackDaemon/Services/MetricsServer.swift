import NetstackCore
import NetstackIO
import NetstackService
import Prometheus

/// The metrics endpoint, served by the stack itself over its own TCP: a
/// small HTTP/1.1 server whose `GET /metrics` answers in the Prometheus text
/// format (version 0.0.4) with the stack's counters and drops by reason and
/// the services' metrics, so that `curl http://192.168.69.1:9100/metrics` and
/// a Prometheus scrape work with nothing of ours on the host.
///
/// HTTP (RFC 9112): persistent connections unless the client says `close`
/// (HTTP/1.0: unless it says `keep-alive`), `HEAD`, 404 for other paths, 405
/// for other methods, 400 for what does not parse, 431 for a request head
/// over 8 KiB, which also ends the connection. Request bodies are not read
/// (no method here takes one); a request that announces one gets 400.
/// The service's idle timeout (10 s by default) ends slow and idle clients.
struct MetricsServer: Service, Sendable {
    let sockets: SocketRuntime
    let registry: PrometheusCollectorRegistry?

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
        case "/":
            response = HTTPResponse(status: 200, body: Array("netstackd: metrics at /metrics\n".utf8))
        default:
            response = HTTPResponse(status: 404, body: Array("not found\n".utf8))
        }
        response.headOnly = method == "HEAD"
        return (response, close)
    }

    /// The Prometheus text: the stack's counters and drops, then the registry's metrics.
    func exposition() async -> String {
        let counters = await sockets.perform { stack in stack.counters.nonZero.map { ($0.name, $0.value) } }
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
        return text + drops + Self.withHelp(registry?.emitToString() ?? "")
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
