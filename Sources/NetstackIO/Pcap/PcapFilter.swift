import CPcap

/// A BPF program compiled by libpcap from a filter expression ("tcp port 7"),
/// applied to frames in memory (`pcap_offline_filter`).
final class PcapFilter {
    private var program = bpf_program()
    let expression: String

    /// Compiles `expression` for the link type and snapshot length of `handle`.
    init(_ expression: String, handle: OpaquePointer) throws(PcapError) {
        self.expression = expression
        guard pcap_compile(handle, &program, expression, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            throw PcapError.filter(expression: expression, message: String(cString: pcap_geterr(handle)))
        }
    }

    /// Compiles `expression` for Ethernet frames of at most `snapshotLength` bytes.
    convenience init(_ expression: String, snapshotLength: Int) throws(PcapError) {
        guard let handle = pcap_open_dead(DLT_EN10MB, Int32(snapshotLength)) else {
            throw PcapError.filter(expression: expression, message: "pcap_open_dead failed")
        }
        defer { pcap_close(handle) }
        try self.init(expression, handle: handle)
    }

    deinit {
        pcap_freecode(&program)
    }

    /// Whether the frame `data` (of original length `originalLength`) matches.
    func matches(_ data: UnsafeRawBufferPointer, originalLength: Int) -> Bool {
        var header = pcap_pkthdr()
        header.caplen = UInt32(data.count)
        header.len = UInt32(originalLength)
        guard let base = data.baseAddress else { return false }
        return pcap_offline_filter(&program, &header, base.assumingMemoryBound(to: UInt8.self)) != 0
    }
}
