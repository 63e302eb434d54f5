import CPcap

/// Reads frames from a pcap (or pcapng) file through libpcap, optionally only
/// those matching a BPF filter expression.
///
/// ```swift
/// let reader = try PcapReader(path: "tcp4-echo.pcap", filter: "tcp port 7")
/// while let record = try reader.next() { ... record.bytes ... }
/// ```
public final class PcapReader {
    /// One captured frame.
    public struct Record: Sendable {
        public var timestamp: PcapTimestamp
        /// The captured bytes (possibly fewer than `originalLength`).
        public var bytes: [UInt8]
        public var originalLength: Int
    }

    public let path: String
    private let handle: OpaquePointer
    private let filter: PcapFilter?

    /// Opens `path`; `filter`, when given, is a libpcap filter expression.
    public init(path: String, filter: String? = nil) throws(PcapError) {
        var error = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let handle = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &error)
        else {
            throw PcapError.open(path: path, message: error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        self.path = path
        self.handle = handle
        do {
            self.filter = try filter.map { expression throws(PcapError) in try PcapFilter(expression, handle: handle) }
        } catch {
            pcap_close(handle)
            throw error
        }
    }

    deinit {
        pcap_close(handle)
    }

    /// The file's link-layer type (1 is Ethernet, `DLT_EN10MB`).
    public var linkType: Int32 { pcap_datalink(handle) }

    /// Calls `body` with the next matching frame's bytes, without copying them.
    /// Returns nil at the end of the file. The bytes are valid only during the call.
    public func readNext<R>(_ body: (PcapTimestamp, UnsafeRawBufferPointer, Int) -> R) throws(PcapError) -> R? {
        while true {
            var header: UnsafeMutablePointer<pcap_pkthdr>?
            var data: UnsafePointer<UInt8>?
            let rc = pcap_next_ex(handle, &header, &data)
            switch rc {
            case 1:
                guard let header, let data else { continue }
                let bytes = UnsafeRawBufferPointer(start: data, count: Int(header.pointee.caplen))
                let originalLength = Int(header.pointee.len)
                if let filter, !filter.matches(bytes, originalLength: originalLength) { continue }
                // The handle was opened with nanosecond precision.
                let stamp = PcapTimestamp(seconds: Int64(header.pointee.ts.tv_sec),
                                          nanoseconds: Int32(header.pointee.ts.tv_usec))
                return body(stamp, bytes, originalLength)
            case PCAP_ERROR_BREAK:
                return nil
            default:
                throw PcapError.read(path: path, message: String(cString: pcap_geterr(handle)))
            }
        }
    }

    /// The next matching frame, copied; nil at the end of the file.
    public func next() throws(PcapError) -> Record? {
        try readNext { stamp, bytes, original in
            Record(timestamp: stamp, bytes: Array(bytes), originalLength: original)
        }
    }

    /// Every remaining matching frame.
    public func readAll() throws(PcapError) -> [Record] {
        var records: [Record] = []
        while let record = try next() { records.append(record) }
        return records
    }
}
