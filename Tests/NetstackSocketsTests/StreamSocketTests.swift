import NetstackCore
import NetstackIO
import NetstackSockets
import NetstackTestSupport
import NetstackWire
import Testing

/// TCP sockets on two stacks joined in memory, through their workers and engines.
@Suite struct StreamSocketTests {
    /// Reads until the peer finishes.
    func readAll(_ socket: StreamSocket<some IPVersion>) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        while true {
            let chunk = try await socket.receive()
            if chunk.isEmpty { return bytes }
            bytes += chunk
        }
    }

    @Test func echoServerAndClientOverBothVersions() async throws {
        let stacks = try LinkedStacks()
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await echo(IPv4.self, stacks, server: LinkedStacks.stackIPv4, payload)
        try await echo(IPv6.self, stacks, server: LinkedStacks.stackIPv6, payload)
        await stacks.shutdown()
    }

    func echo<I: IPVersion>(_ version: I.Type, _ stacks: LinkedStacks, server: I.Address, _ payload: [UInt8]) async throws {
        let listener = await StreamSocket<I>.open(stacks.stack.sockets)
        try await listener.bind(.any(port: 7))
        try await listener.listen()
        let serverTask = Task {
            let connection = try await listener.accept()
            while true {
                let chunk = try await connection.receive()
                if chunk.isEmpty { break }
                try await connection.send(chunk)
            }
            try await connection.shutdown()
            await connection.close()
        }
        let client = await StreamSocket<I>.open(stacks.host.sockets)
        try await client.connect(Endpoint(server, 7))
        // Full duplex on one socket: a reader and a writer at once.
        async let echoed = readAll(client)
        try await client.send(payload)
        try await client.shutdown()
        #expect(try await echoed == payload)
        try await serverTask.value
        await client.close()
        await listener.close()
    }

    @Test func connectErrors() async throws {
        let stacks = try LinkedStacks()
        let client = await StreamSocket<IPv4>.open(stacks.host.sockets)
        await #expect(throws: SocketError.connectionRefused) {
            try await client.connect(Endpoint(LinkedStacks.stackIPv4, 4321))
        }
        let unreachable = await StreamSocket<IPv4>.open(stacks.host.sockets)
        await #expect(throws: SocketError.networkUnreachable) {
            try await unreachable.connect(Endpoint(IPv4Address(10, 9, 9, 9), 80))
        }
        await stacks.shutdown()
    }

    @Test func clonesShareTheConnectionAndTheLastCloseEndsIt() async throws {
        let stacks = try LinkedStacks()
        let listener = await StreamSocket<IPv4>.open(stacks.stack.sockets)
        try await listener.bind(.any(port: 9000))
        try await listener.listen()
        let client = await StreamSocket<IPv4>.open(stacks.host.sockets)
        try await client.connect(Endpoint(LinkedStacks.stackIPv4, 9000))
        let server = try await listener.accept()
        let second = try await client.clone()
        try await client.send(Array("one ".utf8))
        try await second.send(Array("two".utf8))
        await client.close()
        // The connection lives on through the clone.
        try await second.send(Array(" three".utf8))
        try await second.shutdown()
        #expect(try await readAll(server) == Array("one two three".utf8))
        await second.close()
        await server.close()
        // Both ends finished: the client's socket leaves the table (after
        // TIME-WAIT on whichever side closed first, which holds no socket).
        var open = 1
        for _ in 0..<200 where open != 0 {
            open = await stacks.host.sockets.perform { stack in
                stack.tcpSockets(IPv4.self).filter { !$0.orphan }.count
            }
            if open != 0 { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(open == 0)
        await listener.close()
        await stacks.shutdown()
    }

    @Test func abortResetsThePeer() async throws {
        let stacks = try LinkedStacks()
        let listener = await StreamSocket<IPv6>.open(stacks.stack.sockets)
        try await listener.bind(.any(port: 9001))
        try await listener.listen()
        let client = await StreamSocket<IPv6>.open(stacks.host.sockets)
        try await client.connect(Endpoint(LinkedStacks.stackIPv6, 9001))
        let server = try await listener.accept()
        let waiting = Task { try await server.receive() }
        try await Task.sleep(for: .milliseconds(20))
        await client.abort()
        await #expect(throws: SocketError.connectionReset) { try await waiting.value }
        await stacks.shutdown()
    }

    @Test func closingAListenerFreesItsPort() async throws {
        let stacks = try LinkedStacks()
        let runtime = stacks.stack.sockets
        let first = await StreamSocket<IPv4>.open(runtime)
        try await first.bind(.any(port: 7070))
        try await first.listen()
        let second = await StreamSocket<IPv4>.open(runtime)
        await #expect(throws: SocketError.addressInUse) { try await second.bind(.any(port: 7070)) }
        await first.close()
        var bound = false
        for _ in 0..<100 where !bound {
            bound = (try? await second.bind(.any(port: 7070))) != nil
            if !bound { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(bound)
        await stacks.shutdown()
    }
}
