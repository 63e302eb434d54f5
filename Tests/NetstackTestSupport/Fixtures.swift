import NetstackIO
import NetstackWire

/// The real Linux captures copied from `../shared/fixtures/pcap` into
/// `Tests/Fixtures/pcap` (see that folder's README for what each holds).
public enum Fixtures {
    /// Every capture, by file name.
    public static let all = [
        "ping4.pcap", "ping6.pcap", "ping4-frag.pcap", "ping6-frag.pcap",
        "udp4-echo.pcap", "udp6-echo.pcap", "udp4-closed-port.pcap",
        "tcp4-echo.pcap", "tcp6-echo.pcap", "tcp4-closed-port.pcap", "tcp6-closed-port.pcap",
        "tcp4-bulk.pcap", "tcp6-bulk.pcap", "tcp4-lossy.pcap",
    ]

    /// The captures with few frames (everything but bulk and lossy transfers).
    public static let small = all.filter { !$0.contains("bulk") && !$0.contains("lossy") }

    /// `Tests/Fixtures/pcap`, found relative to this source file.
    public static let directory: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(2) // NetstackTestSupport/Fixtures.swift
        return parts.joined(separator: "/") + "/Fixtures/pcap"
    }()

    public static func path(_ name: String) -> String { directory + "/" + name }

    /// Every frame of the capture `name`.
    public static func frames(_ name: String, filter: String? = nil) throws -> [PcapReader.Record] {
        try PcapReader(path: path(name), filter: filter).readAll()
    }

    /// The stack's side and the host's side, as the fixture README gives them.
    public static let hostMAC = MACAddress(0x02, 0, 0, 0, 0, 0x64)
    public static let stackMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)
}
