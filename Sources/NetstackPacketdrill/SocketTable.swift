import Glibc
import NetstackCore
import NetstackWire

/// The stack's sockets for `scripts/packetdrill/sockstat`, which stands in
/// for FreeBSD's sockstat in the scripts' backquoted checks ("how many
/// connections are in SYN_RCVD now"). The stub runs as a child of
/// packetdrill and cannot ask the stack, so the backend keeps the table in
/// the file named by `NETSTACK_PACKETDRILL_SOCKETS`, rewritten after each
/// call that changed it: one socket per line, `tcp4 LOCAL FOREIGN STATE`,
/// with FreeBSD's state names.
extension Backend {
    func publishSockets() {
        guard let path = getenv("NETSTACK_PACKETDRILL_SOCKETS"), let stack = existingStack else { return }
        let text = lines(stack, IPv4.self, "4") + lines(stack, IPv6.self, "6")
        guard text != publishedSockets else { return }
        publishedSockets = text
        guard let file = fopen(path, "w") else { return }
        fputs(text, file)
        fclose(file)
    }

    private func lines<I: IPVersion>(_ stack: Stack, _ version: I.Type, _ suffix: String) -> String {
        var text = ""
        for socket in stack.tcpSockets(I.self) {
            text += "tcp\(suffix) \(socket.local.map { "\($0)" } ?? "*:*") \(socket.remote.map { "\($0)" } ?? "*:*") "
                + Self.freeBSDName(socket.state) + "\n"
        }
        for socket in stack.udpSockets(I.self) {
            text += "udp\(suffix) \(socket.local.map { "\($0)" } ?? "*:*") \(socket.remote.map { "\($0)" } ?? "*:*") -\n"
        }
        return text
    }

    static func freeBSDName(_ state: TCPState) -> String {
        switch state {
        case .closed: "CLOSED"
        case .listen: "LISTEN"
        case .synSent: "SYN_SENT"
        case .synReceived: "SYN_RCVD"
        case .established: "ESTABLISHED"
        case .finWait1: "FIN_WAIT_1"
        case .finWait2: "FIN_WAIT_2"
        case .closeWait: "CLOSE_WAIT"
        case .closing: "CLOSING"
        case .lastAck: "LAST_ACK"
        case .timeWait: "TIME_WAIT"
        }
    }
}
