import CTap
import Glibc
import NetstackWire

/// A Linux TAP interface, open for reading and writing Ethernet frames.
///
/// Owns the file descriptor: the interface (unless made persistent by someone
/// else) lives exactly as long as this value. One read returns one frame, one
/// write sends one frame; the descriptor is non-blocking, and the engine waits
/// for readiness with `poll`.
public struct TapDevice: ~Copyable {
    /// How to open the device; room for the offloads the design plans.
    public struct Options: Sendable, Hashable {
        /// Frames carry a 12-byte virtio-net header (for checksum offload, TSO, GRO).
        public var virtioHeader = false
        /// Open one queue of a multi-queue device (one per engine shard).
        public var multiQueue = false

        public init(virtioHeader: Bool = false, multiQueue: Bool = false) {
            self.virtioHeader = virtioHeader
            self.multiQueue = multiQueue
        }
    }

    /// The interface name the kernel gave (the one asked for, normally).
    public let name: String
    public let fileDescriptor: Int32
    public let options: Options

    /// Opens (creating if missing) the TAP interface `name`.
    public init(name: String, options: Options = Options()) throws(TapError) {
        var actual = [CChar](repeating: 0, count: 32)
        var flags: Int32 = 0
        if options.virtioHeader { flags |= Int32(CTAP_OPEN_VNET_HDR) }
        if options.multiQueue { flags |= Int32(CTAP_OPEN_MULTI_QUEUE) }
        let fd = ctap_open(name, &actual, actual.count, flags)
        guard fd >= 0 else { throw TapError(interface: name, operation: .open, code: -fd) }
        self.fileDescriptor = fd
        self.name = actual.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        self.options = options
    }

    deinit {
        close(fileDescriptor)
    }

    private func check(_ rc: Int32, _ operation: TapError.Operation) throws(TapError) {
        if rc < 0 { throw TapError(interface: name, operation: operation, code: -rc) }
    }

    /// Sets the interface administratively up.
    public func bringUp() throws(TapError) {
        try check(ctap_set_up(name), .bringUp)
    }

    /// The interface MTU.
    public func mtu() throws(TapError) -> Int {
        var value: Int32 = 0
        try check(ctap_get_mtu(name, &value), .readMTU)
        return Int(value)
    }

    public func setMTU(_ mtu: Int) throws(TapError) {
        try check(ctap_set_mtu(name, Int32(clamping: mtu)), .setMTU)
    }

    /// How many frames the kernel holds for the stack to read before it
    /// drops them (the interface's txqueuelen; a tun device starts at 1000).
    public func queueLength() throws(TapError) -> Int {
        var value: Int32 = 0
        try check(ctap_get_queue_length(name, &value), .queueLength)
        return Int(value)
    }

    public func setQueueLength(_ length: Int) throws(TapError) {
        try check(ctap_set_queue_length(name, Int32(clamping: length)), .queueLength)
    }

    /// The kernel side's MAC address (the host's end of the link, not the stack's).
    public func kernelMAC() throws(TapError) -> MACAddress {
        var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0)
        let rc = withUnsafeMutableBytes(of: &bytes) { ctap_get_mac(name, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        try check(rc, .readMAC)
        return MACAddress(bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5)
    }

    public func setKernelMAC(_ mac: MACAddress) throws(TapError) {
        let bytes = (mac[byte: 0], mac[byte: 1], mac[byte: 2], mac[byte: 3], mac[byte: 4], mac[byte: 5])
        let rc = withUnsafeBytes(of: bytes) { ctap_set_mac(name, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        try check(rc, .setMAC)
    }

    /// Offloads the reader of a TAP can take from the kernel (`TUN_F_*`):
    /// frames with partial checksums, large TCP segments (with ECN), large
    /// UDP datagram trains.
    public struct Offloads: OptionSet, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let checksum = Offloads(rawValue: CTAP_OFFLOAD_CSUM)
        public static let tso4 = Offloads(rawValue: CTAP_OFFLOAD_TSO4)
        public static let tso6 = Offloads(rawValue: CTAP_OFFLOAD_TSO6)
        public static let tsoECN = Offloads(rawValue: CTAP_OFFLOAD_TSO_ECN)
        public static let uso4 = Offloads(rawValue: CTAP_OFFLOAD_USO4)
        public static let uso6 = Offloads(rawValue: CTAP_OFFLOAD_USO6)

        public var description: String {
            let names: [(Offloads, String)] = [(.checksum, "csum"), (.tso4, "tso4"), (.tso6, "tso6"),
                                               (.tsoECN, "tso-ecn"), (.uso4, "uso4"), (.uso6, "uso6")]
            let present = names.filter { contains($0.0) }.map(\.1)
            return present.isEmpty ? "none" : present.joined(separator: ",")
        }
    }

    /// Tells the kernel which offloads the reader handles (`TUNSETOFFLOAD`).
    /// Needs `virtioHeader`.
    public func setOffloads(_ offloads: Offloads) throws(TapError) {
        try check(ctap_set_offload(fileDescriptor, offloads.rawValue), .setOffload)
    }

    public func setVirtioHeaderSize(_ size: Int) throws(TapError) {
        try check(ctap_set_vnet_hdr_size(fileDescriptor, Int32(size)), .setVirtioHeaderSize)
    }

    /// Reads one frame into `buffer`. Returns its length, or nil when no frame
    /// is waiting.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(TapError) -> Int? {
        while true {
            let n = Glibc.read(fileDescriptor, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            switch errno {
            case EINTR: continue
            case EAGAIN: return nil
            default: throw TapError(interface: name, operation: .read, code: errno)
            }
        }
    }

    /// Writes one frame. Returns false when the kernel queue is full (the frame
    /// is not sent, as a full NIC queue would drop it).
    @discardableResult
    public func write(_ frame: UnsafeRawBufferPointer) throws(TapError) -> Bool {
        while true {
            let n = Glibc.write(fileDescriptor, frame.baseAddress, frame.count)
            if n >= 0 { return true }
            switch errno {
            case EINTR: continue
            case EAGAIN, ENOBUFS: return false
            default: throw TapError(interface: name, operation: .write, code: errno)
            }
        }
    }
}
