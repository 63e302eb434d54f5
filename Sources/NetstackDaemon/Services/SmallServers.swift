import Glibc
import NetstackCore
import NetstackService

/// What the small servers say.
enum SmallServers {
    /// RFC 867 leaves the format free and suggests
    /// "Weekday, Month Day, Year HH:MM:SS-Zone"; that, with CR LF.
    static func daytime() -> [UInt8] {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 128)
        let length = strftime(&buffer, buffer.count, "%A, %B %d, %Y %H:%M:%S-%Z", &parts)
        return buffer[0..<length].map { UInt8(bitPattern: $0) } + [13, 10]
    }

    /// RFC 864's pattern: lines of 72 printable characters (the 95 from ' '
    /// to '~'), each starting one character later than the one before, ended
    /// by CR LF. `line` selects where in the rotation a line starts.
    static func chargenLine(_ line: Int) -> [UInt8] {
        (0..<72).map { UInt8(32 + (line + $0) % 95) } + [13, 10]
    }

    /// One UDP chargen answer: RFC 864 says a random number of characters
    /// between 0 and 512.
    static func chargenDatagram() -> [UInt8] {
        let length = Int.random(in: 0...512)
        var bytes: [UInt8] = []
        var line = 0
        while bytes.count < length {
            bytes += chargenLine(line)
            line += 1
        }
        return Array(bytes.prefix(length))
    }

    /// 95 lines of the chargen pattern (one whole rotation), repeated to about
    /// 64 KiB, so that sending needs no work per line.
    static let chargenBlock: [UInt8] = {
        let rotation = (0..<95).flatMap { chargenLine($0) }
        return Array(repeating: rotation, count: 9).flatMap { $0 }
    }()
}

/// A built-in service over UDP: a datagram's payload to the answer, if any.
struct SmallDatagramServer: Service, Sendable {
    let kind: BuiltinServiceKind

    func call(_ payload: [UInt8]) async throws -> [UInt8]? {
        switch kind {
        case .echo: payload
        case .discard: nil
        case .daytime: SmallServers.daytime()
        case .chargen: SmallServers.chargenDatagram()
        case .iperf3, .metrics, .status: nil   // served by IperfServer and StatusServer, never here
        }
    }
}

/// A built-in service over TCP: one connection, served until it is done.
/// Throws when the peer resets or vanishes.
struct SmallStreamServer: Service, Sendable {
    let kind: BuiltinServiceKind

    func call(_ connection: ServedConnection) async throws -> ConnectionOutcome {
        var outcome = ConnectionOutcome()
        switch kind {
        case .echo:
            // RFC 862: send back what arrives; finish when the client does.
            while true {
                let chunk = try await connection.receive()
                if chunk.isEmpty { break }
                outcome.received += chunk.count
                try await connection.send(chunk)
                outcome.sent += chunk.count
            }
            try await connection.shutdown()
        case .discard:
            // RFC 863: read and drop until the client finishes.
            while true {
                let chunk = try await connection.receive()
                if chunk.isEmpty { break }
                outcome.received += chunk.count
            }
        case .daytime:
            // RFC 867: the time, then close.
            let time = SmallServers.daytime()
            try await connection.send(time)
            outcome.sent = time.count
            try await connection.shutdown()
        case .iperf3, .metrics, .status:
            // Served by IperfServer and StatusServer, never here.
            break
        case .chargen:
            // RFC 864: characters until the client goes away (which ends
            // this with the error of the failed send); what it sends is read
            // and dropped meanwhile.
            let reader = try await connection.clone()
            let drain = Task {
                while let chunk = try? await reader.receive(), !chunk.isEmpty {}
            }
            defer { drain.cancel() }
            let block = SmallServers.chargenBlock
            while true {
                try await connection.send(block)
                outcome.sent += block.count
            }
        }
        return outcome
    }
}
