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
        /// `move` for the socket's IP version.
        let move: (inout Bridge, Stack) -> Void
        /// Edge-triggered readiness: assumed until a call says EAGAIN.
        var readable = true
        var writable = true
        /// The program's end of stream was passed on as a FIN.
        var readEnded = false
        /// The peer's FIN was passed on as a shutdown of the descriptor.
        var writeEnded = false
        var failure: BridgeEnd?
        let onEnd: @Sendable (BridgeEnd) -> Void
    }

    private let poller: Int32
    private var bridges: [UInt64: Bridge] = [:]
    private var bySocket: [SocketID: UInt64] = [:]
    private var nextKey: UInt64 = 0
    /// Bridges to pump before the engine next waits.
    private var dirty: Set<UInt64> = []
    /// Tags below this are the engine's own descriptors.
    static let firstTag: UInt64 = 16

    init(poller: Int32) {
        self.poller = poller
    }

    var isEmpty: Bool { bridges.isEmpty }
    var count: Int { bridges.count }

    /// Joins `descriptor` (a connected stream descriptor, now ours) to `socket`.
    func add<I: IPVersion>(_ version: I.Type, _ socket: SocketID, descriptor: Int32,
                           onEnd: @escaping @Sendable (BridgeEnd) -> Void) {
        let key = nextKey + Self.firstTag
        nextKey += 1
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
        let events = UInt32(CTAP_EPOLL_IN | CTAP_EPOLL_OUT | CTAP_EPOLL_RDHUP) | CTAP_EPOLL_EDGE
        guard ctap_epoll_add(poller, descriptor, events, key) == 0 else {
            close(descriptor)
            onEnd(.failed(nil))
            return
        }
        bridges[key] = Bridge(descriptor: descriptor, socket: socket, move: { Self.move(&$0, $1, I.self, socket) },
                              onEnd: onEnd)
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

    /// The stack has news for `socket` (bytes, room, an end of stream, an error).
    func socketEvent(_ socket: SocketID) {
        if let key = bySocket[socket] { dirty.insert(key) }
    }

    /// Moves what can be moved on every bridge with news.
    func pump(_ stack: Stack) {
        while let key = dirty.popFirst() {
            guard var bridge = bridges[key] else { continue }
            bridge.move(&bridge, stack)
            if let end = bridge.failure ?? (bridge.readEnded && bridge.writeEnded ? .finished : nil) {
                bridges.removeValue(forKey: key)
                bySocket.removeValue(forKey: bridge.socket)
                _ = ctap_epoll_remove(poller, bridge.descriptor)
                close(bridge.descriptor)
                bridge.onEnd(end)
            } else {
                bridges[key] = bridge
            }
        }
    }

    /// Ends every bridge (the engine is stopping): descriptors closed.
    func closeAll() {
        for (_, bridge) in bridges {
            close(bridge.descriptor)
            bridge.onEnd(.failed(.closed))
        }
        bridges.removeAll()
        bySocket.removeAll()
    }

    private static func move<I: IPVersion>(_ bridge: inout Bridge, _ stack: Stack, _ version: I.Type, _ id: SocketID) {
        let descriptor = bridge.descriptor
        do throws(SocketError) {
            // Program → stack, while the descriptor has bytes and the ring room.
            while bridge.readable && !bridge.readEnded {
                var endOfStream = false, wouldBlock = false
                var error: Int32 = 0
                let queued = try stack.tcpSend(I.self, id, maximum: 1 << 20) { space in
                    while true {
                        let n = read(descriptor, space.baseAddress, space.count)
                        if n > 0 { return n }
                        if n == 0 { endOfStream = true } else if errno == EINTR { continue }
                        else if errno == EAGAIN { wouldBlock = true } else { error = errno }
                        return 0
                    }
                }
                if error != 0 { bridge.failure = .failed(nil); return }
                if wouldBlock { bridge.readable = false }
                if endOfStream {
                    bridge.readEnded = true
                    try stack.tcpShutdown(I.self, id, read: false, write: true)
                }
                if queued == 0 { break }
            }
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
        }
    }
}
