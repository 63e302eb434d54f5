import NetstackCore
import NetstackWire

/// A UDP echo service driving a stack directly (no sockets layer): binds
/// port 7 on both versions, and echoes whatever is queued.
public final class DirectUDPEcho {
    public private(set) var sockets: (v4: SocketID, v6: SocketID)?
    public private(set) var echoed = 0

    public init() {}

    public func setUp(_ stack: Stack) {
        let v4 = stack.udpOpen(IPv4.self)
        let v6 = stack.udpOpen(IPv6.self)
        try! stack.udpBind(IPv4.self, v4, to: .any(port: 7))
        try! stack.udpBind(IPv6.self, v6, to: .any(port: 7))
        sockets = (v4, v6)
    }

    public func run(_ stack: Stack) {
        guard let sockets else { return }
        echo(IPv4.self, sockets.v4, stack)
        echo(IPv6.self, sockets.v6, stack)
    }

    private func echo<I: IPVersion>(_ version: I.Type, _ id: SocketID, _ stack: Stack) {
        while let (source, payload) = try? stack.udpReceive(I.self, id, { ($0.source, $1.array) }) {
            _ = try? stack.udpSend(I.self, id, to: source, payload: payload.span.bytes)
            echoed += 1
        }
    }
}

/// TCP echo (port 7) and discard (port 9) on both versions, driving a stack
/// directly: accept everything, echo or drop what arrives, and close after
/// the peer has (a fast application: it runs after every frame). Like the
/// discard server recorded in the captures, discard shuts down its sending
/// side at once.
public final class DirectTCPServices {
    private var listeners: [(id: SocketID, v6: Bool)] = []
    private var connections: [(id: SocketID, v6: Bool, echo: Bool, closed: Bool)] = []
    public private(set) var received: [UInt8] = []
    public private(set) var accepted = 0

    public init() {}

    public func setUp(_ stack: Stack) {
        for port: UInt16 in [7, 9] {
            let v4 = stack.tcpOpen(IPv4.self)
            try! stack.tcpBind(IPv4.self, v4, to: .any(port: port))
            try! stack.tcpListen(IPv4.self, v4, backlog: 16)
            let v6 = stack.tcpOpen(IPv6.self)
            try! stack.tcpBind(IPv6.self, v6, to: .any(port: port))
            try! stack.tcpListen(IPv6.self, v6, backlog: 16)
            listeners += [(v4, false), (v6, true)]
        }
    }

    public func run(_ stack: Stack) {
        for listener in listeners {
            while let id = listener.v6 ? try? stack.tcpAccept(IPv6.self, listener.id)
                    : try? stack.tcpAccept(IPv4.self, listener.id) {
                let port = listener.v6 ? (try? stack.tcpLocalEndpoint(IPv6.self, id))??.port
                    : (try? stack.tcpLocalEndpoint(IPv4.self, id))??.port
                connections.append((id, listener.v6, port == 7, false))
                accepted += 1
                if port == 9 {
                    if listener.v6 {
                        try? stack.tcpShutdown(IPv6.self, id, read: false, write: true)
                    } else {
                        try? stack.tcpShutdown(IPv4.self, id, read: false, write: true)
                    }
                }
            }
        }
        for index in connections.indices where !connections[index].closed {
            let connection = connections[index]
            connections[index].closed = connection.v6 ? serve(IPv6.self, connection.id, echo: connection.echo, stack)
                : serve(IPv4.self, connection.id, echo: connection.echo, stack)
        }
    }

    /// Reads what is there, echoes it; returns true once closed.
    private func serve<I: IPVersion>(_ version: I.Type, _ id: SocketID, echo: Bool, _ stack: Stack) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let result: Int?? = buffer.withUnsafeMutableBytes { try? stack.tcpReceive(I.self, id, into: $0) }
            guard let outcome = result else {
                // An error (reset): the connection is gone.
                stack.tcpClose(I.self, id)
                return true
            }
            guard let count = outcome else { return false }
            if count == 0 {
                try? stack.tcpShutdown(I.self, id, read: false, write: true)
                stack.tcpClose(I.self, id)
                return true
            }
            received += buffer[0..<count]
            if echo {
                var offset = 0
                while offset < count {
                    let chunk = Array(buffer[offset..<count])
                    guard let sent = try? stack.tcpSend(I.self, id, chunk.span.bytes), sent > 0 else { break }
                    offset += sent
                }
            }
        }
    }
}

