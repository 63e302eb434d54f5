import NetstackCore
import NetstackIO
import NetstackSockets
import NetstackTestSupport
import NetstackWire
import Testing

/// UDP sockets on two stacks joined in memory, through their workers and engines.
@Suite struct DatagramSocketTests {
    @Test func echoBetweenTwoStacksOverBothVersions() async throws {
        let stacks = try LinkedStacks()
        let server4 = await DatagramSocket<IPv4>.open(stacks.stack.sockets)
        let server6 = await DatagramSocket<IPv6>.open(stacks.stack.sockets)
        try await server4.bind(.any(port: 7))
        try await server6.bind(.any(port: 7))
        let echo = Task {
            for _ in 0..<3 {
                let datagram = try await server4.receive()
                try await server4.send(datagram.payload, to: datagram.source)
            }
            for _ in 0..<3 {
                let datagram = try await server6.receive()
                try await server6.send(datagram.payload, to: datagram.source)
            }
        }
        let client4 = await DatagramSocket<IPv4>.open(stacks.host.sockets)
        try await client4.connect(Endpoint(LinkedStacks.stackIPv4, 7))
        let client6 = await DatagramSocket<IPv6>.open(stacks.host.sockets)
        try await client6.connect(Endpoint(LinkedStacks.stackIPv6, 7))
        for size in [0, 1000, 8000] {
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 * 13) }
            try await client4.send(payload)
            #expect(try await client4.receive().payload == payload)
        }
        for size in [1, 1452, 20_000] {
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 * 7) }
            try await client6.send(payload)
            let echoed = try await client6.receive()
            #expect(echoed.payload == payload)
            #expect(echoed.source == Endpoint(LinkedStacks.stackIPv6, 7))
        }
        try await echo.value
        await stacks.shutdown()
    }

    @Test func aWaitingReceiveDoesNotBlockOtherRequests() async throws {
        let stacks = try LinkedStacks()
        let socket = await DatagramSocket<IPv4>.open(stacks.stack.sockets)
        let local = try await socket.bind(.any(port: 5555))
        let sender = try await socket.clone()
        // A receive waits in the engine while the clone sends.
        let waiting = Task { try await socket.receive() }
        try await Task.sleep(for: .milliseconds(20))
        let peer = await DatagramSocket<IPv4>.open(stacks.host.sockets)
        try await peer.bind(.any(port: 6666))
        try await sender.send([1, 2, 3], to: Endpoint(LinkedStacks.hostIPv4, 6666))
        #expect(try await peer.receive().payload == [1, 2, 3])
        try await peer.send([4, 5], to: Endpoint(LinkedStacks.stackIPv4, local.port))
        #expect(try await waiting.value.payload == [4, 5])
        await stacks.shutdown()
    }

    @Test func closingTheLastCloneFreesThePort() async throws {
        let stacks = try LinkedStacks()
        let runtime = stacks.stack.sockets
        let first = await DatagramSocket<IPv4>.open(runtime)
        try await first.bind(.any(port: 4000))
        let second = try await first.clone()
        await first.close()
        #expect(try await second.localEndpoint()?.port == 4000, "the socket lives on through its clone")
        let other = await DatagramSocket<IPv4>.open(runtime)
        await #expect(throws: SocketError.addressInUse) { try await other.bind(.any(port: 4000)) }
        // A receive waiting when the socket closes is answered "closed".
        let waiting = Task { try await second.receive() }
        try await Task.sleep(for: .milliseconds(20))
        await second.close()
        await #expect(throws: SocketError.closed) { try await waiting.value }
        // The worker closed the core socket: the port can be bound again.
        var rebound = false
        for _ in 0..<100 where !rebound {
            rebound = (try? await other.bind(.any(port: 4000))) != nil
            if !rebound { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(rebound)
        #expect(await runtime.perform { $0.udpSockets(IPv4.self).count } == 1)
        await stacks.shutdown()
    }

    @Test func droppingEveryHandleClosesTheSocket() async throws {
        let stacks = try LinkedStacks()
        let runtime = stacks.stack.sockets
        do {
            let socket = await DatagramSocket<IPv6>.open(runtime)
            try await socket.bind(.any(port: 4001))
            _ = try await socket.clone()
        }
        var count = 1
        for _ in 0..<100 where count != 0 {
            count = await runtime.perform { $0.udpSockets(IPv6.self).count }
            if count != 0 { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(count == 0)
        await stacks.shutdown()
    }

    /// A socket whose application never reads: its queue stays at the cap and
    /// the rest is counted as dropped.
    @Test func floodOfANeverReadSocket() async throws {
        let stacks = try LinkedStacks()
        let idle = await DatagramSocket<IPv4>.open(stacks.stack.sockets)
        try await idle.bind(.any(port: 7777))
        try await idle.setReceiveBufferSize(100_000)
        let flooder = await DatagramSocket<IPv4>.open(stacks.host.sockets)
        let payload = [UInt8](repeating: 0x5a, count: 1000)
        for _ in 0..<3000 { try await flooder.send(payload, to: Endpoint(LinkedStacks.stackIPv4, 7777)) }
        // Wait until the datagrams have been through the stack: all 3000, or
        // as many as came (the flooder's stack drops a few while it resolves
        // the address), unchanged for 300 ms; at most a minute.
        var handled: UInt64 = 0
        var unchanged = 0
        for _ in 0..<6000 where handled < 3000 && (unchanged < 30 || handled == 0) {
            let now = await stacks.stack.sockets.perform { stack in stack.counters[.udpDatagramsReceived] }
            unchanged = now == handled ? unchanged + 1 : 0
            handled = now
            if handled < 3000 { try await Task.sleep(for: .milliseconds(10)) }
        }
        let (info, dropped) = await stacks.stack.sockets.perform { stack in
            (stack.udpSockets(IPv4.self).first { $0.local?.port == 7777 }, stack.counters[.udpReceiveQueueFull])
        }
        let queue = try #require(info)
        #expect(queue.queuedDatagrams == 100_000 / 1064, "the cap holds 93 datagrams")
        #expect(queue.queuedBytes + queue.queuedDatagrams * 64 <= 100_000)
        // What reached the socket and did not fit was dropped, nothing else.
        #expect(dropped == handled - UInt64(queue.queuedDatagrams), "\(handled) of 3000 reached the stack")
        #expect(queue.overflows == dropped)
        await stacks.shutdown()
    }

    @Test func connectedSocketHearsConnectionRefused() async throws {
        let stacks = try LinkedStacks()
        let socket = await DatagramSocket<IPv4>.open(stacks.stack.sockets)
        try await socket.connect(Endpoint(LinkedStacks.hostIPv4, 9))
        try await socket.send([1])
        await #expect(throws: SocketError.connectionRefused) { try await socket.receive() }
        await stacks.shutdown()
    }
}
