import Glibc
import NetstackCore
import NetstackWire

/// The stack a script runs against: packetdrill's default addresses (the
/// stack 192.168.0.1 and fd3d:fa7b:d17d::1, the remote 192.0.2.1 and
/// 2001:db8::1 behind a gateway that needs no resolution), no start-up
/// chatter (announcements, DAD, router solicitations), and the FreeBSD
/// settings the script asked for.
///
/// The scripts set FreeBSD sysctls in backquotes. `scripts/packetdrill/sysctl`
/// runs in their place: it accepts a setting only when the stack has it (or
/// behaves as it asks), records it in the file named by
/// `NETSTACK_PACKETDRILL_SYSCTL`, and fails for the rest, which fails the
/// script there. The stack is made at the first socket call or packet, after
/// the script's sysctls, from what the file holds.
enum ScriptConfiguration {
    static let stackMAC = MACAddress(2, 0, 0, 0, 0, 1)
    static let gatewayMAC = MACAddress(2, 0, 0, 0, 0, 2)
    static let gateway4 = IPv4Address(192, 168, 0, 2)
    static let gateway6 = IPv6Address(0xfd3d, 0xfa7b, 0xd17d, 0, 0, 0, 0, 2)

    /// The sysctls recorded for this script: name → value.
    static func recordedSettings() -> [String: String] {
        guard let path = getenv("NETSTACK_PACKETDRILL_SYSCTL").map({ String(cString: $0) }),
              let file = fopen(path, "r") else { return [:] }
        defer { fclose(file) }
        var settings: [String: String] = [:]
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line).trimmed()
            guard let equals = text.firstIndex(of: "=") else { continue }
            settings[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        free(line)
        return settings
    }

    static func stack(settings: [String: String]) -> StackConfiguration {
        var configuration = StackConfiguration(mac: stackMAC)
        configuration.ipv4Addresses = [InterfaceAddress(IPv4Address(192, 168, 0, 1), prefixLength: 16)]
        configuration.ipv6Addresses = [InterfaceAddress(IPv6Address(0xfd3d, 0xfa7b, 0xd17d, 0, 0, 0, 0, 1),
                                                        prefixLength: 64)]
        configuration.ipv4Gateway = gateway4
        configuration.ipv6Gateway = gateway6
        configuration.ipv6LinkLocal = false
        configuration.ipv6Startup.dadTransmits = 0
        configuration.ipv6Startup.routerSolicitations = 0
        configuration.ipv6Startup.mldRobustness = 0
        configuration.gratuitousARPCount = 0
        func number(_ name: String) -> Int? { settings[name].flatMap { Int($0) } }
        if let bytes = number("net.inet.tcp.recvspace") { configuration.tcp.receiveBuffer = bytes }
        if let bytes = number("net.inet.tcp.sendspace") { configuration.tcp.sendBuffer = bytes }
        if let bytes = number("kern.ipc.maxsockbuf") { configuration.tcp.maximumBuffer = bytes }
        if let on = number("net.inet.tcp.sack.enable") { configuration.tcp.selectiveAcknowledgments = on != 0 }
        if let on = number("net.inet.tcp.rfc1323") {
            configuration.tcp.timestamps = on != 0
            configuration.tcp.windowScaling = on != 0
        }
        // FreeBSD's ecn.enable: 0 off, 1 asked for on connect too, 2 answered.
        switch number("net.inet.tcp.ecn.enable") {
        case 0?: configuration.tcp.ecn = .off
        case 1?: configuration.tcp.ecn = .active
        case 2?: configuration.tcp.ecn = .passive
        default: break
        }
        if let on = number("net.inet.tcp.syncookies") { configuration.tcp.synCookies = on != 0 }
        // FreeBSD's insecure modes: RFC 793's RST and SYN rules, not RFC 5961's.
        if let on = number("net.inet.tcp.insecure_rst") { configuration.tcp.challengeResets = on == 0 }
        if let on = number("net.inet.tcp.insecure_syn") { configuration.tcp.challengeSyns = on == 0 }
        if let milliseconds = number("net.inet.tcp.delacktime") {
            configuration.tcp.delayedAckTimeout = .milliseconds(milliseconds)
        }
        if let milliseconds = number("net.inet.tcp.rexmit_initial") {
            configuration.tcp.initialRTO = .milliseconds(milliseconds)
        }
        if let milliseconds = number("net.inet.tcp.rexmit_min") {
            configuration.tcp.minimumRTO = .milliseconds(milliseconds)
        }
        // FreeBSD's keepalive timing, in milliseconds, for new sockets.
        if let milliseconds = number("net.inet.tcp.keepidle") {
            configuration.tcp.keepalive.idle = .milliseconds(milliseconds)
        }
        if let milliseconds = number("net.inet.tcp.keepintvl") {
            configuration.tcp.keepalive.interval = .milliseconds(milliseconds)
        }
        if let count = number("net.inet.tcp.keepcnt") { configuration.tcp.keepalive.probes = count }
        if let milliseconds = number("net.inet.tcp.msl") { configuration.tcp.timeWait = .milliseconds(2 * milliseconds) }
        return configuration
    }
}

private extension String {
    /// Without leading and trailing spaces and newlines.
    func trimmed() -> Substring {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\n" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\n" { text = text.dropLast() }
        return text
    }
}
