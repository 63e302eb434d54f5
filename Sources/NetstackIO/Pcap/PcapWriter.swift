import CPcap
import Glibc

/// Writes Ethernet frames to a pcap file through libpcap (`pcap_dump`), with
/// microsecond or nanosecond timestamps, optionally only frames matching a BPF
/// filter expression. `tcpdump -r` and Wireshark read the result.
public final class PcapWriter {
    public let path: String
    private let handle: OpaquePointer
    private var dumper: OpaquePointer?
    private let filter: PcapFilter?
    private let precision: PcapPrecision
    private let snapshotLength: Int

    /// Creates (or truncates) `path`.
    public init(path: String, precision: PcapPrecision = .microsecond, snapshotLength: Int = 262_144,
                filter: String? = nil) throws(PcapError) {
        let tsPrecision = precision == .nanosecond ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO
        guard let handle = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, Int32(snapshotLength),
                                                                 UInt32(tsPrecision)) else {
            throw PcapError.open(path: path, message: "pcap_open_dead failed")
        }
        let compiled: PcapFilter?
        do {
            compiled = try filter.map { expression throws(PcapError) in try PcapFilter(expression, handle: handle) }
        } catch {
            pcap_close(handle)
            throw error
        }
        guard let dumper = pcap_dump_open(handle, path) else {
            let message = String(cString: pcap_geterr(handle))
            pcap_close(handle)
            throw PcapError.open(path: path, message: message)
        }
        self.path = path
        self.handle = handle
        self.dumper = dumper
        self.filter = compiled
        self.precision = precision
        self.snapshotLength = snapshotLength
    }

    deinit {
        close()
        pcap_close(handle)
    }

    /// Appends `frame` (if it matches the filter). Returns whether it was written.
    @discardableResult
    public func write(_ frame: UnsafeRawBufferPointer, timestamp: PcapTimestamp) -> Bool {
        guard let dumper, let base = frame.baseAddress else { return false }
        if let filter, !filter.matches(frame, originalLength: frame.count) { return false }
        var header = pcap_pkthdr()
        header.ts.tv_sec = Int(timestamp.seconds)
        header.ts.tv_usec = precision == .nanosecond ? Int(timestamp.nanoseconds) : Int(timestamp.nanoseconds / 1000)
        header.caplen = UInt32(min(frame.count, snapshotLength))
        header.len = UInt32(frame.count)
        pcap_dump(UnsafeMutableRawPointer(dumper).assumingMemoryBound(to: UInt8.self), &header,
                  base.assumingMemoryBound(to: UInt8.self))
        return true
    }

    /// Appends `frame` (if it matches the filter).
    @discardableResult
    public func write(_ frame: [UInt8], timestamp: PcapTimestamp) -> Bool {
        frame.withUnsafeBytes { write($0, timestamp: timestamp) }
    }

    /// Pushes buffered records to the file.
    public func flush() throws(PcapError) {
        guard let dumper else { return }
        if pcap_dump_flush(dumper) != 0 {
            throw PcapError.write(path: path, message: String(cString: strerror(errno)))
        }
    }

    /// Flushes and closes the file; later writes are ignored.
    public func close() {
        if let dumper {
            pcap_dump_close(dumper)
            self.dumper = nil
        }
    }
}
