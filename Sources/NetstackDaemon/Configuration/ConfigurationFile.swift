import Glibc
import Logging
import NetstackCore
import NetstackIO
import NetstackWire
import TOMLKit

/// Reads `netstackd.toml`. Strict: an unknown section or key, or a value of
/// the wrong kind, is an error naming it, so a typo never silently falls back
/// to a default.
public enum ConfigurationFile {
    /// Refuses what TOML 1.0 forbids and the TOML parser underneath
    /// (toml++) does not always refuse cleanly: control characters other
    /// than tab, newline and carriage return anywhere, and non-ASCII
    /// characters outside strings and comments (bare keys are ASCII, TOML 1.0
    /// "Keys"). A fuzzer found `[` followed by a non-ASCII character to trip an
    /// assertion inside toml++ (undefined behaviour in a release build).
    static func screen(_ text: String, source: String) throws(ConfigurationError) {
        enum Context { case code, comment, basic, literal, multiBasic, multiLiteral }
        var context = Context.code
        var line = 1, column = 0
        let bytes = Array(text.utf8)
        var index = 0
        func starts(_ prefix: String) -> Bool {
            let p = Array(prefix.utf8)
            return index + p.count <= bytes.count && Array(bytes[index..<(index + p.count)]) == p
        }
        func fail(_ what: String) -> ConfigurationError {
            ConfigurationError(field: "syntax", message: "\(what) at line \(line), column \(column)", source: source)
        }
        func isKeyStart(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'")
        }
        /// At the start of a line in code: a table header's first key must
        /// begin like a key (toml++ asserts it does instead of checking).
        func checkHeader(at start: Int) throws(ConfigurationError) {
            var at = start
            while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x09 { at += 1 }
            guard at < bytes.count, bytes[at] == UInt8(ascii: "[") else { return }
            at += 1
            if at < bytes.count, bytes[at] == UInt8(ascii: "[") { at += 1 }
            while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x09 { at += 1 }
            guard at < bytes.count, isKeyStart(bytes[at]) || bytes[at] == UInt8(ascii: "]") else {
                throw fail("a table header that does not start with a key")
            }
        }
        try checkHeader(at: 0)
        while index < bytes.count {
            let byte = bytes[index]
            column += 1
            if byte < 0x20 && byte != 0x09 && byte != 0x0A && byte != 0x0D || byte == 0x7F {
                throw fail("control character 0x\(String(byte, radix: 16))")
            }
            switch context {
            case .code:
                if byte >= 0x80 { throw fail("a non-ASCII character outside a string or comment") }
                if byte == UInt8(ascii: "#") { context = .comment }
                else if starts("\"\"\"") { context = .multiBasic; index += 2; column += 2 }
                else if starts("'''") { context = .multiLiteral; index += 2; column += 2 }
                else if byte == UInt8(ascii: "\"") { context = .basic }
                else if byte == UInt8(ascii: "'") { context = .literal }
            case .comment:
                if byte == 0x0A { context = .code }
            case .basic:
                if byte == UInt8(ascii: "\\") { index += 1; column += 1 }
                else if byte == UInt8(ascii: "\"") || byte == 0x0A { context = .code }
            case .literal:
                if byte == UInt8(ascii: "'") || byte == 0x0A { context = .code }
            case .multiBasic:
                if byte == UInt8(ascii: "\\") { index += 1; column += 1 }
                else if starts("\"\"\"") { context = .code; index += 2; column += 2 }
            case .multiLiteral:
                if starts("'''") { context = .code; index += 2; column += 2 }
            }
            if byte == 0x0A {
                line += 1
                column = 0
                if context == .code { try checkHeader(at: index + 1) }
            }
            index += 1
        }
    }

    /// Parses `text`; `source` names it in errors (a path).
    public static func parse(_ text: String, source: String) throws(ConfigurationError) -> DaemonConfiguration {
        try screen(text, source: source)
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(field: "syntax", message: "\(error.description) at line \(error.source.begin.line), "
                                     + "column \(error.source.begin.column)", source: source)
        } catch {
            throw ConfigurationError(field: "syntax", message: "\(error)", source: source)
        }
        do {
            return try read(table)
        } catch {
            var located = error
            located.source = source
            throw located
        }
    }

    /// Reads `path` from disk.
    public static func load(path: String) throws(ConfigurationError) -> DaemonConfiguration {
        guard let text = readFile(path) else {
            throw ConfigurationError(field: "--config", message: "cannot read \(path)")
        }
        return try parse(text, source: path)
    }

    private static func read(_ root: TOMLTable) throws(ConfigurationError) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        var top = Section(root, name: nil)
        if var interface = try top.section("interface") {
            if let name = try interface.string("name") { configuration.interface = name }
            if let text = try interface.string("mac") {
                guard let mac = MACAddress(text) else { throw interface.error("mac", "\"\(text)\" is not a MAC address") }
                configuration.mac = mac
            }
            if let mtu = try interface.int("mtu") { configuration.mtu = mtu }
            if let addresses = try interface.strings("addresses") {
                for text in addresses {
                    guard let address = AnyInterfaceAddress(text) else {
                        throw interface.error("addresses", "\"\(text)\" is not an address with a prefix (a.b.c.d/n or x::y/n)")
                    }
                    configuration.add(address)
                }
            }
            if let gateways = try interface.strings("gateways") {
                for text in gateways {
                    guard let gateway = AnyIPAddress(text) else {
                        throw interface.error("gateways", "\"\(text)\" is not an IP address")
                    }
                    guard configuration.setGateway(gateway) else {
                        throw interface.error("gateways", "more than one gateway for the version of \(text)")
                    }
                }
            }
            if let linkLocal = try interface.bool("ipv6-link-local") { configuration.ipv6LinkLocal = linkLocal }
            if let offloads = try interface.bool("offloads") { configuration.offloads = offloads }
            try interface.finish()
        }
        if var daemon = try top.section("daemon") {
            if let text = try daemon.string("log-level") {
                guard let level = Logger.Level(rawValue: text) else {
                    throw daemon.error("log-level", "\"\(text)\" is not one of "
                                       + Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))
                }
                configuration.logLevel = level
            }
            if let pcap = try daemon.string("pcap") { configuration.pcap = pcap }
            if let filter = try daemon.string("pcap-filter") { configuration.pcapFilter = filter }
            if let format = try daemon.string("pcap-format") {
                try configuration.setPcapFormat(format, field: daemon.path("pcap-format"))
            }
            if let size = try daemon.string("pcap-rotate") {
                try configuration.setPcapRotate(size, field: daemon.path("pcap-rotate"))
            }
            if let files = try daemon.int("pcap-files") {
                try configuration.setPcapFiles(files, field: daemon.path("pcap-files"), rotate: "pcap-rotate")
            }
            if let fault = try daemon.string("fault") { try configuration.setFaults(fault, field: daemon.path("fault")) }
            if let seconds = try daemon.int("statistics-interval") {
                guard seconds >= 0 else { throw daemon.error("statistics-interval", "must not be negative") }
                configuration.statisticsInterval = seconds == 0 ? nil : .seconds(seconds)
            }
            if let microseconds = try daemon.int("busy-poll-us") {
                guard (0...1_000_000).contains(microseconds) else {
                    throw daemon.error("busy-poll-us", "\(microseconds) is outside 0...1000000")
                }
                configuration.busyPoll = microseconds == 0 ? nil : .microseconds(microseconds)
            }
            try daemon.finish()
        }
        if var control = try top.section("control") {
            if let path = try control.string("socket") { configuration.controlSocket = path.isEmpty ? nil : path }
            if let name = try control.string("group") {
                guard let group = getgrnam(name) else { throw control.error("group", "no group is named \"\(name)\"") }
                configuration.controlGroup = group.pointee.gr_gid
            }
            if let maximum = try control.int("max-clients") {
                guard (1...1_000_000).contains(maximum) else {
                    throw control.error("max-clients", "\(maximum) is outside 1...1000000")
                }
                configuration.controlMaximumClients = maximum
            }
            if let maximum = try control.int("max-clients-per-process") {
                guard (1...1_000_000).contains(maximum) else {
                    throw control.error("max-clients-per-process", "\(maximum) is outside 1...1000000")
                }
                configuration.controlMaximumClientsPerProcess = maximum
            }
            try control.finish()
        }
        if var ipv6 = try top.section("ipv6") {
            if let transmits = try ipv6.int("dad-transmits") { configuration.dadTransmits = transmits }
            if let robustness = try ipv6.int("mld-robustness") { configuration.mldRobustness = robustness }
            if let solicitations = try ipv6.int("router-solicitations") {
                configuration.routerSolicitations = solicitations
            }
            try ipv6.finish()
        }
        if var tcp = try top.section("tcp") {
            if let text = try tcp.string("ecn") {
                guard let mode = ECNMode(rawValue: text) else {
                    throw tcp.error("ecn", "\"\(text)\" is not one of "
                                    + ECNMode.allCases.map(\.rawValue).joined(separator: ", "))
                }
                configuration.ecn = mode
            }
            try tcp.finish()
        }
        if var limits = try top.section("limits") {
            if let bytes = try limits.int("reassembly-memory") { configuration.reassemblyMemory = bytes }
            if let entries = try limits.int("neighbor-entries") { configuration.neighborEntries = entries }
            if let rate = try limits.int("icmp-errors-per-second") { configuration.icmpErrorsPerSecond = rate }
            if let burst = try limits.int("icmp-error-burst") { configuration.icmpErrorBurst = burst }
            if let interval = try limits.int("icmp-destination-interval-ms") {
                configuration.icmpDestinationIntervalMilliseconds = interval
            }
            if let burst = try limits.int("icmp-destination-burst") { configuration.icmpDestinationBurst = burst }
            if let count = try limits.int("tcp-connections") { configuration.tcpConnections = count }
            if let count = try limits.int("tcp-connections-per-peer") { configuration.tcpConnectionsPerPeer = count }
            if let count = try limits.int("syn-queue") { configuration.synQueue = count }
            if let bytes = try limits.int("socket-buffer-memory") { configuration.socketBufferMemory = bytes }
            if let count = try limits.int("path-mtu-entries") { configuration.pathMTUEntries = count }
            try limits.finish()
        }
        if var services = try top.section("services") {
            for kind in BuiltinServiceKind.allCases {
                guard var section = try services.section(kind.rawValue) else { continue }
                var setting = ServiceSetting(kind: kind, transports: kind.isWeb ? [.tcp] : [.udp])
                if let port = try section.int("port") {
                    guard (1...65_535).contains(port) else { throw section.error("port", "\(port) is outside 1...65535") }
                    setting.port = UInt16(port)
                }
                if let names = try section.strings("transports") {
                    setting.transports = []
                    for name in names {
                        guard let transport = TransportKind(rawValue: name) else {
                            throw section.error("transports", "\"\(name)\" is not one of udp, tcp")
                        }
                        setting.transports.insert(transport)
                    }
                }
                if let limit = try section.int("max-connections") {
                    guard limit >= 1 else { throw section.error("max-connections", "\(limit) is less than 1") }
                    setting.maxConnections = limit
                }
                if let name = try section.string("overflow") {
                    guard let overflow = OverflowPolicy(rawValue: name) else {
                        throw section.error("overflow", "\"\(name)\" is not one of wait, refuse")
                    }
                    setting.overflow = overflow
                }
                if let seconds = try section.int("idle-timeout") {
                    guard seconds >= 0 else { throw section.error("idle-timeout", "\(seconds) is negative") }
                    setting.idleTimeout = seconds == 0 ? nil : .seconds(seconds)
                }
                if let rate = try section.int("rate-limit") {
                    guard rate >= 0 else { throw section.error("rate-limit", "\(rate) is negative") }
                    setting.rateLimit = rate == 0 ? nil : Double(rate)
                }
                if kind.isWeb && setting.transports != [.tcp] {
                    throw section.error("transports", "\(kind.rawValue) is served over HTTP: only \"tcp\"")
                }
                try section.finish()
                configuration.services.append(setting)
            }
            try services.finish()
        }
        try top.finish()
        try configuration.validate()
        return configuration
    }

    /// One table being read; remembers which keys were used, so that the
    /// rest can be reported as unknown.
    struct Section {
        let table: TOMLTable
        let name: String?
        private var used: Set<String> = []

        init(_ table: TOMLTable, name: String?) {
            self.table = table
            self.name = name
        }

        func path(_ key: String) -> String { name.map { "\($0).\(key)" } ?? key }

        func error(_ key: String, _ message: String) -> ConfigurationError {
            ConfigurationError(field: path(key), message: message)
        }

        private mutating func value(_ key: String) -> (any TOMLValueConvertible)? {
            used.insert(key)
            return table[key]
        }

        mutating func section(_ key: String) throws(ConfigurationError) -> Section? {
            guard let value = value(key) else { return nil }
            guard let table = value.table else { throw error(key, "must be a table ([\(key)])") }
            return Section(table, name: path(key))
        }

        mutating func string(_ key: String) throws(ConfigurationError) -> String? {
            guard let value = value(key) else { return nil }
            guard let string = value.string else { throw error(key, "must be a string") }
            return string
        }

        mutating func int(_ key: String) throws(ConfigurationError) -> Int? {
            guard let value = value(key) else { return nil }
            guard let int = value.int else { throw error(key, "must be an integer") }
            return int
        }

        mutating func bool(_ key: String) throws(ConfigurationError) -> Bool? {
            guard let value = value(key) else { return nil }
            guard let bool = value.bool else { throw error(key, "must be true or false") }
            return bool
        }

        mutating func strings(_ key: String) throws(ConfigurationError) -> [String]? {
            guard let value = value(key) else { return nil }
            guard let array = value.array else { throw error(key, "must be an array of strings") }
            var strings: [String] = []
            for element in array {
                guard let string = element.string else { throw error(key, "must be an array of strings") }
                strings.append(string)
            }
            return strings
        }

        /// Throws for the first key that was not read.
        func finish() throws(ConfigurationError) {
            if let unknown = table.keys.sorted().first(where: { !used.contains($0) }) {
                let place = name.map { " in [\($0)]" } ?? ""
                throw ConfigurationError(field: path(unknown), message: "unknown key \"\(unknown)\"\(place)")
            }
        }
    }
}

/// The whole file at `path`, or nil.
func readFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buffer, 1, buffer.count, file)
        if n <= 0 { break }
        bytes += buffer[..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}
