import Glibc
import NetstackCore
import NetstackWire

/// Socket options, descriptor flags and readiness. Options the stack has
/// no notion of fail with ENOPROTOOPT, as Linux answers an unknown one.
extension Backend {
    func getOption(_ fd: Int32, level: Int32, name: Int32, _ value: UnsafeMutableRawPointer?,
                   _ length: UnsafeMutablePointer<socklen_t>?) throws(Errno) {
        let descriptor = try self.descriptor(fd)
        guard let value, let length else { throw Errno(EFAULT) }
        func integer(_ number: Int) throws(Errno) {
            guard length.pointee >= 4 else { throw Errno(EINVAL) }
            value.storeBytes(of: Int32(clamping: number), as: Int32.self)
            length.pointee = 4
        }
        switch (level, name) {
        case (SOL_SOCKET, SO_RCVBUF) where descriptor.transport == .tcp:
            var size = descriptor.receiveBuffer
            try apply { () throws(SocketError) in size = try receiveBufferSize(descriptor.family, descriptor) }
            try integer(size)
        case (SOL_SOCKET, SO_RCVBUF): try integer(descriptor.receiveBuffer)
        case (SOL_SOCKET, SO_SNDBUF): try integer(descriptor.sendBuffer)
        case (SOL_SOCKET, SO_REUSEADDR): try integer(descriptor.reuseAddress ? 1 : 0)
        case (SOL_SOCKET, SO_KEEPALIVE): try integer(descriptor.keepalive ? 1 : 0)
        // Urgent data always stays in the stream (RFC 6093 §5).
        case (SOL_SOCKET, SO_OOBINLINE) where descriptor.transport == .tcp: try integer(1)
        case (SOL_SOCKET, SO_TYPE):
            try integer(Int(descriptor.transport == .tcp ? SOCK_STREAM.rawValue : SOCK_DGRAM.rawValue))
        case (SOL_SOCKET, SO_ERROR): try integer(Int(pendingError(fd, descriptor)))
        case (SOL_SOCKET, SO_LINGER):
            guard length.pointee >= MemoryLayout<linger>.size else { throw Errno(EINVAL) }
            value.storeBytes(of: linger(l_onoff: descriptor.linger.on ? 1 : 0, l_linger: descriptor.linger.seconds),
                             as: linger.self)
            length.pointee = socklen_t(MemoryLayout<linger>.size)
        case (Int32(IPPROTO_TCP), TCP_NODELAY) where descriptor.transport == .tcp:
            try integer(descriptor.noDelay ? 1 : 0)
        case (Int32(IPPROTO_TCP), TCP_KEEPIDLE) where descriptor.transport == .tcp,
             (Int32(IPPROTO_TCP), TCP_KEEPINTVL) where descriptor.transport == .tcp,
             (Int32(IPPROTO_TCP), TCP_KEEPCNT) where descriptor.transport == .tcp:
            var timing = KeepaliveTiming()
            try apply { () throws(SocketError) in timing = try keepaliveTiming(descriptor.family, descriptor) }
            switch name {
            case TCP_KEEPIDLE: try integer(Int(timing.idle.components.seconds))
            case TCP_KEEPINTVL: try integer(Int(timing.interval.components.seconds))
            default: try integer(timing.probes)
            }
        case (Int32(IPPROTO_IPV6), IPV6_V6ONLY) where descriptor.family == IPv6.self:
            try integer(descriptor.v6Only ? 1 : 0)
        default:
            throw Errno(ENOPROTOOPT)
        }
    }

    private func receiveBufferSize<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor) throws(SocketError)
        -> Int {
        try stack.tcpReceiveBufferSize(I.self, descriptor.id)
    }

    /// SO_ERROR: a failed connect's error, once.
    private func pendingError(_ fd: Int32, _ descriptor: Descriptor) -> Int32 {
        guard descriptor.transport == .tcp, !descriptor.errorReported else { return 0 }
        guard case .failed(let error) = connectStatus(descriptor.family, descriptor) else { return 0 }
        descriptors[fd]?.errorReported = true
        return error.errno
    }

    private func connectStatus<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor) -> TCPConnectStatus {
        stack.tcpConnectStatus(I.self, descriptor.id)
    }

    func setOption(_ fd: Int32, level: Int32, name: Int32, _ value: UnsafeRawPointer?,
                   _ length: socklen_t) throws(Errno) {
        let descriptor = try self.descriptor(fd)
        guard let value else { throw Errno(EFAULT) }
        func integer() throws(Errno) -> Int {
            guard length >= 4 else { throw Errno(EINVAL) }
            return Int(value.loadUnaligned(as: Int32.self))
        }
        switch (level, name) {
        case (SOL_SOCKET, SO_REUSEADDR), (SOL_SOCKET, SO_REUSEPORT):
            let on = try integer() != 0
            descriptors[fd]?.reuseAddress = on
            if descriptor.transport == .udp { try apply { () throws(SocketError) in try setReuse(descriptor.family, descriptor, on) } }
        case (SOL_SOCKET, SO_KEEPALIVE):
            let on = try integer() != 0
            descriptors[fd]?.keepalive = on
            if descriptor.transport == .tcp {
                try apply { () throws(SocketError) in try setKeepalive(descriptor.family, descriptor, on) }
            }
        case (SOL_SOCKET, SO_RCVBUF), (SOL_SOCKET, SO_SNDBUF):
            let size = try integer()
            guard size > 0 else { throw Errno(EINVAL) }
            let receive = name == SO_RCVBUF
            try apply { () throws(SocketError) in
                try setBuffer(descriptor.family, descriptor, size: size, receive: receive)
            }
            if receive { descriptors[fd]?.receiveBuffer = size } else { descriptors[fd]?.sendBuffer = size }
        case (SOL_SOCKET, SO_LINGER):
            guard length >= MemoryLayout<linger>.size else { throw Errno(EINVAL) }
            let setting = value.loadUnaligned(as: linger.self)
            descriptors[fd]?.linger = (setting.l_onoff != 0, setting.l_linger)
        case (Int32(IPPROTO_TCP), TCP_NODELAY) where descriptor.transport == .tcp:
            let on = try integer() != 0
            descriptors[fd]?.noDelay = on
            try apply { () throws(SocketError) in try setNoDelay(descriptor.family, descriptor, on) }
        case (Int32(IPPROTO_TCP), TCP_KEEPIDLE) where descriptor.transport == .tcp,
             (Int32(IPPROTO_TCP), TCP_KEEPINTVL) where descriptor.transport == .tcp,
             (Int32(IPPROTO_TCP), TCP_KEEPCNT) where descriptor.transport == .tcp:
            let number = try integer()
            try apply { () throws(SocketError) in
                switch name {
                case TCP_KEEPIDLE: try setKeepaliveTiming(descriptor.family, descriptor, idle: .seconds(number))
                case TCP_KEEPINTVL: try setKeepaliveTiming(descriptor.family, descriptor, interval: .seconds(number))
                default: try setKeepaliveTiming(descriptor.family, descriptor, probes: number)
                }
            }
        case (Int32(IPPROTO_IPV6), IPV6_V6ONLY) where descriptor.family == IPv6.self:
            // The stack's IPv6 sockets never carry IPv4: on is what they are.
            descriptors[fd]?.v6Only = try integer() != 0
        default:
            throw Errno(ENOPROTOOPT)
        }
        collect()
    }

    private func apply(_ body: () throws(SocketError) -> Void) throws(Errno) {
        do {
            try body()
        } catch {
            throw Errno(error)
        }
    }

    private func setReuse<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor, _ on: Bool) throws(SocketError) {
        try stack.udpSetReuseAddress(I.self, descriptor.id, on)
    }

    private func setKeepalive<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor,
                                               _ on: Bool) throws(SocketError) {
        try stack.tcpSetKeepalive(I.self, descriptor.id, on)
    }

    private func keepaliveTiming<I: SocketFamily>(_ version: I.Type,
                                                  _ descriptor: Descriptor) throws(SocketError) -> KeepaliveTiming {
        try stack.tcpKeepaliveTiming(I.self, descriptor.id)
    }

    private func setKeepaliveTiming<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor,
                                                     idle: Duration? = nil, interval: Duration? = nil,
                                                     probes: Int? = nil) throws(SocketError) {
        try stack.tcpSetKeepaliveTiming(I.self, descriptor.id, idle: idle, interval: interval, probes: probes)
    }

    private func setNoDelay<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor,
                                             _ on: Bool) throws(SocketError) {
        try stack.tcpSetNoDelay(I.self, descriptor.id, on)
    }

    /// Sizes below the stack's minimum are raised to it, above its maximum
    /// lowered to it, as Linux clamps SO_RCVBUF and SO_SNDBUF.
    private func setBuffer<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor, size: Int,
                                            receive: Bool) throws(SocketError) {
        let size = min(max(size, 1024), stack.configuration.tcp.maximumBuffer)
        switch descriptor.transport {
        case .tcp:
            try stack.tcpSetBufferSizes(I.self, descriptor.id, send: receive ? nil : size, receive: receive ? size : nil)
        case .udp:
            if receive { try stack.udpSetReceiveBufferSize(I.self, descriptor.id, size) }
        }
    }

    // MARK: Descriptor flags

    func control(_ fd: Int32, command: Int32, argument: Int) throws(Errno) -> Int32 {
        let descriptor = try self.descriptor(fd)
        switch command {
        case F_GETFL: return O_RDWR | (descriptor.nonBlocking ? O_NONBLOCK : 0)
        case F_SETFL:
            descriptors[fd]?.nonBlocking = Int32(truncatingIfNeeded: argument) & O_NONBLOCK != 0
            return 0
        case F_GETFD, F_SETFD: return 0
        default: throw Errno(EINVAL)
        }
    }

    func ioControl(_ fd: Int32, request: UInt, argument: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
        let descriptor = try self.descriptor(fd)
        guard let argument else { throw Errno(EFAULT) }
        switch request {
        case UInt(FIONBIO):
            descriptors[fd]?.nonBlocking = argument.load(as: Int32.self) != 0
        case UInt(FIONREAD):
            argument.storeBytes(of: Int32(clamping: readable(descriptor.family, descriptor)), as: Int32.self)
        case UInt(SIOCATMARK):
            argument.storeBytes(of: atUrgentMark(descriptor.family, descriptor) ? 1 : 0, as: Int32.self)
        default:
            throw Errno(ENOTTY)
        }
        return 0
    }

    private func atUrgentMark<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor) -> Bool {
        descriptor.transport == .tcp && stack.tcpUrgentMark(I.self, descriptor.id) == 0
    }

    private func readable<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor) -> Int {
        descriptor.transport == .tcp ? stack.tcpReadable(I.self, descriptor.id) : 0
    }

    // MARK: Readiness

    func poll(_ fds: UnsafeMutableBufferPointer<pollfd>, timeout: Int32) throws(Errno) -> Int32 {
        let deadline: Instant? = timeout < 0 ? nil : now + .milliseconds(Int(timeout))
        let ready = try wait(nonBlocking: timeout == 0, deadline: deadline) { () -> Int32? in
            var count: Int32 = 0
            for index in fds.indices {
                let events = fds[index].events
                let happened: Int16
                if let descriptor = descriptors[fds[index].fd] {
                    happened = readiness(descriptor.family, descriptor)
                } else {
                    happened = Int16(POLLNVAL)
                }
                // Errors and hang-ups are reported whether asked for or not.
                fds[index].revents = happened & (events | Int16(POLLERR | POLLHUP | POLLNVAL))
                if fds[index].revents != 0 { count += 1 }
            }
            return count > 0 ? count : nil
        }
        return ready ?? 0
    }

    /// What poll reports for a socket now, as Linux's tcp_poll and
    /// datagram_poll do.
    private func readiness<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor) -> Int16 {
        let pollIn = Int16(POLLIN | POLLRDNORM), pollOut = Int16(POLLOUT | POLLWRNORM)
        guard descriptor.transport == .tcp else {
            return (stack.udpIsReadable(I.self, descriptor.id) ? pollIn : 0) | pollOut
        }
        guard let info = stack.tcpSockets(I.self).first(where: { $0.id == descriptor.id }) else {
            return Int16(POLLHUP)
        }
        switch info.state {
        case .listen:
            return info.receiveQueue > 0 ? pollIn : 0
        case .closed where !descriptor.connecting:
            return pollOut | Int16(POLLHUP)
        case .synSent, .synReceived:
            return 0
        default:
            break
        }
        // Urgent data pending: POLLPRI, as Linux's tcp_poll says.
        var events: Int16 = stack.tcpUrgentMark(I.self, descriptor.id) != nil ? Int16(POLLPRI) : 0
        if stack.tcpReadable(I.self, descriptor.id) > 0 {
            events |= pollIn
        } else {
            do {
                // Nothing to read: at the end of the stream (0) it is readable.
                if try stack.tcpReceive(I.self, descriptor.id, consuming: { _ in 0 }) == 0 {
                    events |= pollIn | Int16(0x2000)  // POLLRDHUP
                }
            } catch {
                events |= pollIn | Int16(POLLERR)
            }
        }
        if stack.tcpIsWritable(I.self, descriptor.id) { events |= pollOut }
        if info.state == .closed || info.state == .timeWait { events |= Int16(POLLHUP) }
        return events
    }
}
