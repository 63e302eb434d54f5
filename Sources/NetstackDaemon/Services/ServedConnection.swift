import NetstackCore
import NetstackSockets
import Synchronization

/// A TCP connection as the built-in services see it, whichever IP version
/// it came over: its byte operations, and a count of those that moved bytes,
/// which the idle timeout watches.
final class ServedConnection: Sendable {
    private let describePeer: @Sendable () async -> String
    private let receiveBytes: @Sendable () async throws(SocketError) -> [UInt8]
    private let sendBytes: @Sendable ([UInt8]) async throws(SocketError) -> Void
    private let finishSending: @Sendable () async throws(SocketError) -> Void
    private let cloneSocket: @Sendable () async throws(SocketError) -> ServedConnection
    private let resetSocket: @Sendable () async -> Void
    private let activity = Atomic<UInt64>(0)
    private let idled = Atomic<Bool>(false)

    /// `peer` names the remote end in logs; without it, it is asked of the
    /// socket when a log wants it (most connections are never logged).
    init<I: IPVersion>(_ socket: StreamSocket<I>, peer: String? = nil) {
        describePeer = { [peer] in
            if let peer { return peer }
            return (try? await socket.remoteEndpoint()).flatMap { $0.map { "\($0)" } } ?? "?"
        }
        receiveBytes = { () throws(SocketError) in try await socket.receive() }
        sendBytes = { bytes throws(SocketError) in try await socket.send(bytes) }
        finishSending = { () throws(SocketError) in try await socket.shutdown() }
        cloneSocket = { () throws(SocketError) in ServedConnection(try await socket.clone(), peer: peer) }
        resetSocket = { await socket.abort() }
    }

    /// The remote endpoint, for a log line.
    func peer() async -> String { await describePeer() }

    /// Waits for data; empty when the peer has finished sending.
    func receive() async throws(SocketError) -> [UInt8] {
        let bytes = try await receiveBytes()
        activity.add(1, ordering: .relaxed)
        return bytes
    }

    func send(_ bytes: [UInt8]) async throws(SocketError) {
        try await sendBytes(bytes)
        activity.add(1, ordering: .relaxed)
    }

    /// Sends FIN after what was sent.
    func shutdown() async throws(SocketError) { try await finishSending() }

    /// Another handle on the same socket (for a reader beside a writer).
    func clone() async throws(SocketError) -> ServedConnection { try await cloneSocket() }

    /// Resets the connection; operations waiting on it fail.
    func reset() async { await resetSocket() }

    /// Operations that moved bytes so far.
    var activityCount: UInt64 { activity.load(ordering: .relaxed) }

    /// Marks the connection as reset by the idle timeout.
    func markIdled() { idled.store(true, ordering: .relaxed) }
    var wasIdled: Bool { idled.load(ordering: .relaxed) }
}

/// What serving one connection came to.
struct ConnectionOutcome: Sendable {
    var received = 0
    var sent = 0
}
