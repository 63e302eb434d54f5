import CTap
import Glibc
import NetstackCore

/// How a bridge ended: both directions finished (a clean end of stream each
/// way), or not (the connection failed, or the program went away).
public enum BridgeEnd: Sendable, Hashable {
    case finished
    case failed(SocketError?)
}

/// Connected TCP sockets joined to stream descriptors (a local program's
/// control connection, switched to carry the bytes): what the program writes
/// is sent, what arrives is written to it, each end of stream is passed on.
///
/// A Unix stream cannot say "reset" apart from "closed" but in one way: a
/// socket closed with bytes still queued to it makes its peer's next read
/// fail with `ECONNRESET` (after the bytes queued for the peer; its writes
/// then fail with `EPIPE`), which is what a program's socket should do when
/// the TCP connection is reset or the daemon stops. So the program's first
/// byte on a TCP stream is a marker (docs/control-protocol.md), and the
/// engine always leaves one byte unread on the descriptor: it peeks at what
/// follows (`SO_PEEK_OFF`) and then consumes as much from the front, so the
/// last byte it has taken stays queued. A clean end reads that byte before
/// closing (the program reads end of file); a failure, `closeAll` or the
/// daemon dying closes with it queued (the program reads `ECONNRESET`).
///
/// The engine does the moving, between batches of frames, as readiness
/// comes: `read` goes straight into the socket's send ring and `send`
/// straight from its receive ring, so a byte is copied by the kernel into the
/// stack and by the kernel out of it, and no task or thread is involved.
/// Each side waits for the other: a full send ring stops reading the
/// descriptor (the program's writes block), a descriptor that takes no more
/// stops draining the receive ring (the stack's window closes).
final class StreamBridges {
    private struct Bridge {
        let descriptor: Int32
        let socket: SocketID
        /// UDP: the IPv4 socket that shares the descriptor, if any.
        var companion: SocketID?
        /// `move` (TCP) or `moveDatagrams` (UDP) for the socket's IP version,
        /// given the engine's scratch buffer.
        let move: (inout Bridge, Stack, UnsafeMutableRawBufferPointer) -> Void
        /// TCP: one byte stays unread on the descriptor (see above).
        let holdsByte: Bool
        /// Done with the socket in the stack before the descriptor closes (a
        /// UDP socket's port is free again by the time the program sees the end).
        var release: ((Stack) -> Void)?
        /// UDP: bytes read and not yet a whole frame; a frame not yet written.
        var input: [UInt8] = []
        var output: [UInt8] = []
        /// UDP with an IPv4 companion: it is the one connected (frames with
        /// no endpoint go through it).
        var companionConnected = false
        /// Edge-triggered readiness: assumed until a call says EAGAIN.
        var readable = true
        var writable = true
        /// The program's end of stream was passed on as a FIN.
        var readEnded = false
        /// The peer's FIN was passed on as a shutdown of the descriptor.
        var writeEnded = false
        /// TCP, SO_LINGER on with a zero time: the program closing its end
        /// fails the bridge (its owner resets the connection).
        var resetOnClose = false
        var failure: BridgeEnd?
        let onEnd: @Sendable (BridgeEnd) -> Void
    }

    private let poller: Int32
    private var bridges: [UInt64: Bridge] = [:]
    private var bySocket: [SocketID: UInt64] = [:]
    private var nextKey: UInt64 = 0
    /// Bridges to pump before the engine next waits.
    private var dirty: Set<UInt64> = []
    /// Where bytes already taken by a peek go when they are consumed.
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 17, alignment: 64)
    /// Tags below this are the engine's own descriptors.
    static let firstTag: UInt64 = 16

    init(poller: Int32) {
        self.poller = poller
    }

    deinit {
        scratch.deallocate()
    }

    var isEmpty: Bool { bridges.isEmpty }
    var count: Int { bridges.count }

    /// Joins `descriptor` (a connected stream descriptor, now ours) to `socket`.
    func add<I: IPVersion>(_ version: I.Type, _ socket: SocketID, descriptor: Int32,
                           onEnd: @escaping @Sendable (BridgeEnd) -> Void) {
        // The marker is the first byte: peeks start after it.
        var offset: Int32 = 1
        guard setsockopt(descriptor, SOL_SOCKET, SO_PEEK_OFF, &offset, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            close(descriptor)
            onEnd(.failed(nil))
            return
        }
        register(descriptor, socket, move: { Self.move(&$0, $1, $2, I.self, socket) }, holdsByte: true, onEnd: onEnd)
    }

    /// Joins `descriptor` to the UDP socket `socket` (datagram frames both
    /// ways; see `DatagramFrames`).
    func addDatagrams<I: IPVersion>(_ version: I.Type, _ socket: SocketID, descriptor: Int32, companion: SocketID?,
                                    onEnd: @escaping @Sendable (BridgeEnd) -> Void) {
        register(descriptor, socket, move: { bridge, stack, _ in
                     Self.moveDatagrams(&bridge, stack, I.self, socket, companion: companion)
                 }, holdsByte: false, release: { stack in
                     stack.udpClose(I.self, socket)
                     if let companion { stack.udpClose(IPv4.self, companion) }
                 }, onEnd: onEnd)
        if let companion, let key = bySocket[socket] {
            bySocket[companion] = key
            bridges[key]?.companion = companion
        }
    }

    private func register(_ descriptor: Int32, _ socket: SocketID,
                          move: @escaping (inout Bridge, Stack, UnsafeMutableRawBufferPointer) -> Void,
                          holdsByte: Bool, release: ((Stack) -> Void)? = nil,
                          onEnd: @escaping @Sendable (BridgeEnd) -> Void) {
        let key = nextKey + Self.firstTag
        nextKey += 1
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
        ByteStreamBuffers.enlarge(descriptor)
        let events = UInt32(CTAP_EPOLL_IN | CTAP_EPOLL_OUT | CTAP_EPOLL_RDHUP) | CTAP_EPOLL_EDGE
        guard ctap_epoll_add(poller, descriptor, events, key) == 0 else {
            close(descriptor)
            onEnd(.failed(nil))
            return
        }
        bridges[key] = Bridge(descriptor: descriptor, socket: socket, move: move, holdsByte: holdsByte,
                              release: release, onEnd: onEnd)
        bySocket[socket] = key
        dirty.insert(key)
    }

    /// The poller says the descriptor tagged `tag` changed.
    func ready(tag: UInt64, events: UInt32) {
        guard bridges[tag] != nil else { return }
        let hangup = events & UInt32(CTAP_EPOLL_HUP | CTAP_EPOLL_RDHUP | CTAP_EPOLL_ERR) != 0
        if events & UInt32(CTAP_EPOLL_IN) != 0 || hangup { bridges[tag]!.readable = true }
        if events & UInt32(CTAP_EPOLL_OUT) != 0 || hangup { bridges[tag]!.writable = true }
        dirty.insert(tag)
    }

    /// See `Bridge.resetOnClose`.
    func setResetOnClose(_ socket: SocketID, _ on: Bool) {
        guard let key = bySocket[socket], bridges[key]?.holdsByte == true else { return }
        bridges[key]!.resetOnClose = on
        dirty.insert(key)
    }

    /// The stack has news for `socket` (bytes, room, an end of stream, an error).
    func socketEvent(_ socket: SocketID) {
        if let key = bySocket[socket] { dirty.insert(key) }
    }

    /// Moves what can be moved on every bridge with news.
    func pump(_ stack: Stack) {
        while let key = dirty.popFirst() {
            guard var bridge = bridges[key] else { continue }
            bridge.move(&bridge, stack, scratch)
            if let end = bridge.failure ?? (bridge.readEnded && bridge.writeEnded ? .finished : nil) {
                // A clean end takes the held byte: the program reads end of
                // file, not a reset.
                if end == .finished && bridge.holdsByte { Self.consume(bridge.descriptor, .max, scratch) }
                bridges.removeValue(forKey: key)
                forget(bridge.socket, key)
                if let companion = bridge.companion { forget(companion, key) }
                _ = ctap_epoll_remove(poller, bridge.descriptor)
                bridge.release?(stack)
                close(bridge.descriptor)
                bridge.onEnd(end)
            } else {
                bridges[key] = bridge
            }
        }
    }

    /// Drops `socket`'s entry if it still names the bridge `key`.
    private func forget(_ socket: SocketID, _ key: UInt64) {
        if bySocket[socket] == key { bySocket.removeValue(forKey: socket) }
    }

    /// Ends every bridge (the engine is stopping): descriptors closed with
    /// their held byte, so that each program's next read says `ECONNRESET`.
    func closeAll() {
        for (_, bridge) in bridges {
            close(bridge.descriptor)
            bridge.onEnd(.failed(.closed))
        }
        bridges.removeAll()
        bySocket.removeAll()
    }

    /// Whether the program has closed its end of `descriptor` (not only shut
    /// down writing): a Unix stream whose peer is gone hangs up.
    private static func programClosed(_ descriptor: Int32) -> Bool {
        var end = pollfd(fd: descriptor, events: 0, revents: 0)
        return poll(&end, 1, 0) == 1 && end.revents & Int16(POLLHUP) != 0
    }

    /// Reads and drops up to `count` bytes from the front of `descriptor`
    /// (fewer when fewer are queued).
    private static func consume(_ descriptor: Int32, _ count: Int, _ scratch: UnsafeMutableRawBufferPointer) {
        var left = count
        while left > 0 {
            let n = recv(descriptor, scratch.baseAddress, min(left, scratch.count), Int32(MSG_DONTWAIT))
            if n > 0 { left -= n } else if n < 0 && errno == EINTR { continue } else { return }
        }
    }

    private static func move<I: IPVersion>(_ bridge: inout Bridge, _ stack: Stack, _ scratch: UnsafeMutableRawBufferPointer,
                                           _ version: I.Type, _ id: SocketID) {
        let descriptor = bridge.descriptor
        if bridge.resetOnClose && bridge.readEnded && Self.programClosed(descriptor) {
            // SO_LINGER's zero time, and the program closed after it shut
            // down writing (its FIN went already): a reset now.
            bridge.failure = .failed(nil)
            return
        }
        // A failed connection (a reset, a timeout) refuses what the program
        // sends, but what arrived before it is still the program's to read,
        // as from a kernel socket: the bridge ends once that is written.
        var sendFailure: SocketError?
        do throws(SocketError) {
            // Program → stack, while the descriptor has bytes and the ring room.
            while bridge.readable && !bridge.readEnded {
                var endOfStream = false, wouldBlock = false
                var error: Int32 = 0
                let queued = try stack.tcpSend(I.self, id, maximum: 1 << 20) { space in
                    while true {
                        // The new bytes, then as many off the front: the
                        // last one stays queued.
                        let n = recv(descriptor, space.baseAddress, space.count, Int32(MSG_PEEK))
                        if n > 0 {
                            consume(descriptor, n, scratch)
                            return n
                        }
                        if n == 0 { endOfStream = true } else if errno == EINTR { continue }
                        else if errno == EAGAIN { wouldBlock = true } else { error = errno }
                        return 0
                    }
                }
                if error != 0 { bridge.failure = .failed(nil); return }
                if wouldBlock { bridge.readable = false }
                if endOfStream {
                    bridge.readEnded = true
                    if bridge.resetOnClose && Self.programClosed(descriptor) {
                        // The program closed with SO_LINGER's zero time: a
                        // reset, not a FIN (RFC 9293 §3.10.5, ABORT).
                        bridge.failure = .failed(nil)
                        return
                    }
                    try stack.tcpShutdown(I.self, id, read: false, write: true)
                }
                if queued == 0 { break }
            }
        } catch {
            sendFailure = error
        }
        do throws(SocketError) {
            // Stack → program, while there are bytes and the descriptor takes them.
            while bridge.writable && !bridge.writeEnded {
                var wouldBlock = false
                var error: Int32 = 0
                let taken = try stack.tcpReceive(I.self, id) { piece in
                    while true {
                        let n = send(descriptor, piece.baseAddress, piece.count, Int32(MSG_NOSIGNAL))
                        if n >= 0 { return n }
                        if errno == EINTR { continue }
                        if errno == EAGAIN { wouldBlock = true } else { error = errno }
                        return 0
                    }
                }
                if error != 0 {
                    // The program is gone (EPIPE, ECONNRESET): nobody reads.
                    bridge.failure = .failed(nil)
                    return
                }
                if wouldBlock {
                    bridge.writable = false
                    break
                }
                guard let taken else { break }
                if taken == 0 {
                    bridge.writeEnded = true
                    shutdown(descriptor, Int32(SHUT_WR))
                }
            }
        } catch {
            bridge.failure = .failed(error)
            return
        }
        // The send side failed and nothing waits for room on the descriptor
        // (whatever had arrived is written): the bridge ends with that error.
        if let sendFailure, bridge.writable || bridge.writeEnded { bridge.failure = .failed(sendFailure) }
    }

    // MARK: Datagrams

    /// Frames from the descriptor become datagrams sent (or a new peer);
    /// datagrams that arrive become frames written. A frame that does not
    /// parse ends the bridge. While the descriptor takes no more, datagrams
    /// wait in the socket's queue (and past its size are dropped, counted).
    private static func moveDatagrams<I: IPVersion>(_ bridge: inout Bridge, _ stack: Stack, _ version: I.Type,
                                                    _ id: SocketID, companion: SocketID?) {
        let descriptor = bridge.descriptor
        // Program → stack.
        var buffer = [UInt8](repeating: 0, count: 0)
        while bridge.readable && !bridge.readEnded {
            if buffer.isEmpty { buffer = [UInt8](repeating: 0, count: 65_536 + 64) }
            let n = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n == 0 {
                bridge.readEnded = true
                bridge.writeEnded = true
                break
            }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { bridge.readable = false; break }
                bridge.failure = .failed(nil)
                return
            }
            bridge.input += buffer[0..<n]
            while let frame = DatagramFrames.next(&bridge.input) {
                guard case .valid(let type, let body) = frame else {
                    bridge.failure = .failed(.protocolError)
                    return
                }
                // An IPv4 endpoint goes through the companion, if any, and
                // so does "the connected peer" when the companion connected.
                if let companion, body.first == 4 || (body.first == 0 && bridge.companionConnected) {
                    if type == DatagramFrames.connect { bridge.companionConnected = true }
                    DatagramFrames.apply(type, body, stack, IPv4.self, companion)
                } else {
                    if type == DatagramFrames.connect { bridge.companionConnected = false }
                    DatagramFrames.apply(type, body, stack, I.self, id)
                }
            }
            guard bridge.input.count <= DatagramFrames.largest else {
                bridge.failure = .failed(.protocolError)
                return
            }
        }
        // Stack → program.
        while bridge.writable {
            if bridge.output.isEmpty {
                let queued: Bool
                do throws(SocketError) {
                    queued = try stack.udpReceive(I.self, id) { metadata, payload in
                        bridge.output = DatagramFrames.encode(from: metadata.source, payload)
                    } != nil || companion.map { companion in
                        ((try? stack.udpReceive(IPv4.self, companion) { metadata, payload in
                            bridge.output = DatagramFrames.encode(from: metadata.source, payload)
                        }) ?? nil) != nil
                    } == true
                } catch .closed {
                    bridge.failure = .failed(.closed)
                    return
                } catch {
                    // An ICMP error reported on a connected socket: there is
                    // no way to tell the program but to keep going.
                    continue
                }
                if !queued { break }
            }
            let n = bridge.output.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { bridge.writable = false; break }
                bridge.failure = .failed(nil)
                return
            }
            bridge.output.removeFirst(n)
        }
    }
}

/// The framing of a UDP socket's control connection once it carries the
/// datagrams (`stream` on a datagram socket): each frame is a 4-byte
/// big-endian length, a type and its body.
///
/// - type 0, datagram: an endpoint (or a single 0 byte: the connected peer)
///   and the payload. From the program: send it; to the program: it arrived
///   from that endpoint.
/// - type 1, connect: an endpoint; from then on the socket talks to that
///   peer only.
///
/// An endpoint is a family byte (4 or 6), the address and a 2-byte port, as
/// in the control protocol.
public enum DatagramFrames {
    /// The largest frame: a 64 KiB datagram, its endpoint and the type.
    static let largest = 4 + 1 + 19 + 65_535
    static let datagram: UInt8 = 0
    static let connect: UInt8 = 1

    enum Frame {
        case valid(type: UInt8, body: ArraySlice<UInt8>)
        case invalid
    }

    /// Takes the next whole frame off the front of `input`, or nil.
    static func next(_ input: inout [UInt8]) -> Frame? {
        guard input.count >= 4 else { return nil }
        let length = input[0..<4].reduce(0) { $0 << 8 | Int($1) }
        guard (1...(largest - 4)).contains(length) else { return .invalid }
        guard input.count >= 4 + length else { return nil }
        let body = input[5..<(4 + length)]
        let type = input[4]
        defer { input.removeFirst(4 + length) }
        return .valid(type: type, body: ArraySlice(body))
    }

    /// Parses an endpoint at the start of `bytes`; the endpoint (nil for the
    /// single 0 byte) and its length, or nil when it does not parse.
    static func endpoint<I: IPVersion>(_ bytes: ArraySlice<UInt8>, _ version: I.Type) -> (Endpoint<I>?, Int)? {
        guard let family = bytes.first else { return nil }
        if family == 0 { return (nil, 1) }
        guard family == (I.Address.byteCount == 4 ? 4 : 6), bytes.count >= 1 + I.Address.byteCount + 2 else {
            return nil
        }
        let start = bytes.startIndex + 1
        let address = Array(bytes[start..<(start + I.Address.byteCount)]).withSpan { I.Address($0, at: 0) }
        let portIndex = start + I.Address.byteCount
        let port = UInt16(bytes[portIndex]) << 8 | UInt16(bytes[portIndex + 1])
        return (Endpoint(address, port), 1 + I.Address.byteCount + 2)
    }

    /// Does what a frame from the program says; bad frames are dropped.
    static func apply<I: IPVersion>(_ type: UInt8, _ body: ArraySlice<UInt8>, _ stack: Stack, _ version: I.Type,
                                    _ id: SocketID) {
        guard let (peer, used) = endpoint(body, I.self) else { return }
        switch type {
        case datagram:
            let payload = Array(body.dropFirst(used))
            _ = try? payload.withSpan { span throws(SocketError) in
                try stack.udpSend(I.self, id, to: peer, payload: span)
            }
        case connect:
            if let peer { try? stack.udpConnect(I.self, id, to: peer) }
        default:
            break
        }
    }

    /// A datagram frame of `payload` from `source`.
    static func encode<I: IPVersion>(from source: Endpoint<I>, _ payload: RawSpan) -> [UInt8] {
        let size = I.Address.byteCount
        let length = 1 + 1 + size + 2 + payload.byteCount
        var frame = [UInt8](repeating: 0, count: 4 + length)
        frame[0] = UInt8(length >> 24)
        frame[1] = UInt8(length >> 16 & 0xff)
        frame[2] = UInt8(length >> 8 & 0xff)
        frame[3] = UInt8(length & 0xff)
        frame[4] = 0
        frame[5] = size == 4 ? 4 : 6
        frame.withMutableBytes { span in
            source.address.write(to: &span, at: 6)
            span.copy(payload, to: 6 + size + 2)
        }
        frame[6 + size] = UInt8(source.port >> 8)
        frame[7 + size] = UInt8(source.port & 0xff)
        return frame
    }
}

/// The Unix sockets that carry byte streams queue up to 1 MiB from either
/// end (the kernel's default is about 208 KiB): with the default, a local
/// program received at about 0.6 of the built-in services' rate, with 1 MiB
/// at 0.8–1.0. A Unix stream's sender's buffer is what bounds it, so both
/// ends get it: the engine's, and the program's end of a socket pair the
/// daemon makes for an accepted connection.
public enum ByteStreamBuffers {
    public static let bytes: Int32 = 1 << 20

    /// Raises the send buffer of `descriptor` past the system's maximum where
    /// the daemon may (root: SO_SNDBUFFORCE), else to that maximum.
    public static func enlarge(_ descriptor: Int32) {
        var value = bytes
        let size = socklen_t(MemoryLayout<Int32>.size)
        if setsockopt(descriptor, SOL_SOCKET, SO_SNDBUFFORCE, &value, size) != 0 {
            _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &value, size)
        }
    }
}
