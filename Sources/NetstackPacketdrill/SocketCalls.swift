import Glibc
import NetstackCore
import NetstackWire

/// The socket calls, as Linux answers them (packetdrill is built on Linux
/// and compares errno by name): each runs with the backend's lock held and
/// throws the errno of a failure. The IP version comes from the
/// descriptor, so each call is one generic function.
extension Backend {
    func socket(domain: Int32, type: Int32, protocol number: Int32) throws(Errno) -> Int32 {
        let family: any SocketFamily.Type
        switch domain {
        case AF_INET: family = IPv4.self
        case AF_INET6: family = IPv6.self
        default: throw Errno(EAFNOSUPPORT)
        }
        let nonBlocking = type & Int32(SOCK_NONBLOCK.rawValue) != 0
        let transport: Descriptor.Transport
        switch (type & ~Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), number) {
        case (Int32(SOCK_STREAM.rawValue), 0), (Int32(SOCK_STREAM.rawValue), Int32(IPPROTO_TCP)): transport = .tcp
        case (Int32(SOCK_DGRAM.rawValue), 0), (Int32(SOCK_DGRAM.rawValue), Int32(IPPROTO_UDP)): transport = .udp
        case (Int32(SOCK_STREAM.rawValue), _), (Int32(SOCK_DGRAM.rawValue), _): throw Errno(EPROTONOSUPPORT)
        default: throw Errno(ESOCKTNOSUPPORT)
        }
        let fd = freeDescriptor()
        let settings = stack.configuration
        descriptors[fd] = Descriptor(transport: transport, family: family, id: open(family, transport),
                                     nonBlocking: nonBlocking,
                                     receiveBuffer: transport == .tcp ? settings.tcp.receiveBuffer : settings.udpReceiveBuffer,
                                     sendBuffer: transport == .tcp ? settings.tcp.sendBuffer : settings.udpReceiveBuffer)
        if transport == .tcp, let id = descriptors[fd]?.id { applyLaterSysctls(family, id) }
        return fd
    }

    private func open<I: SocketFamily>(_ version: I.Type, _ transport: Descriptor.Transport) -> SocketID {
        transport == .tcp ? stack.tcpOpen(I.self) : stack.udpOpen(I.self)
    }

    /// A sysctl set after the stack was made applies to sockets made after
    /// it, as on FreeBSD: the keepalive timing is set on the new socket.
    private func applyLaterSysctls<I: SocketFamily>(_ version: I.Type, _ id: SocketID) {
        let timing = ScriptConfiguration.stack(settings: ScriptConfiguration.recordedSettings()).tcp.keepalive
        guard timing != stack.configuration.tcp.keepalive else { return }
        try? stack.tcpSetKeepaliveTiming(I.self, id, idle: timing.idle, interval: timing.interval,
                                         probes: timing.probes)
    }

    func bind(_ fd: Int32, _ address: UnsafeRawPointer?, _ length: socklen_t) throws(Errno) {
        let descriptor = try self.descriptor(fd)
        try bind(descriptor.family, descriptor, address, length)
    }

    private func bind<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor, _ address: UnsafeRawPointer?,
                                       _ length: socklen_t) throws(Errno) {
        guard let address else { throw Errno(EFAULT) }
        guard let local = I.endpoint(address, length: length) else { throw Errno(EINVAL) }
        do {
            switch descriptor.transport {
            case .tcp: try stack.tcpBind(I.self, descriptor.id, to: local)
            case .udp: try stack.udpBind(I.self, descriptor.id, to: local)
            }
        } catch {
            throw Errno(error)
        }
    }

    func listen(_ fd: Int32, backlog: Int32) throws(Errno) {
        let descriptor = try self.descriptor(fd)
        guard descriptor.transport == .tcp else { throw Errno(EOPNOTSUPP) }
        try listen(descriptor.family, descriptor, backlog: Int(backlog))
    }

    private func listen<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor, backlog: Int) throws(Errno) {
        do {
            try stack.tcpListen(I.self, descriptor.id, backlog: backlog)
        } catch {
            throw Errno(error)
        }
    }

    func accept(_ fd: Int32, _ address: UnsafeMutableRawPointer?,
                _ length: UnsafeMutablePointer<socklen_t>?) throws(Errno) -> Int32 {
        let descriptor = try self.descriptor(fd)
        guard descriptor.transport == .tcp else { throw Errno(EOPNOTSUPP) }
        return try accept(descriptor.family, fd, descriptor, address, length)
    }

    private func accept<I: SocketFamily>(_ version: I.Type, _ fd: Int32, _ listener: Descriptor,
                                         _ address: UnsafeMutableRawPointer?,
                                         _ length: UnsafeMutablePointer<socklen_t>?) throws(Errno) -> Int32 {
        let accepted = try wait(nonBlocking: listener.nonBlocking) { () throws(Errno) -> SocketID? in
            do {
                return try stack.tcpAccept(I.self, listener.id)
            } catch {
                throw Errno(error)
            }
        }
        guard let accepted else { throw Errno(EAGAIN) }
        let child = freeDescriptor()
        var descriptor = Descriptor(transport: .tcp, family: I.self, id: accepted, receiveBuffer: listener.receiveBuffer,
                                    sendBuffer: listener.sendBuffer)
        descriptor.noDelay = listener.noDelay
        descriptor.keepalive = listener.keepalive
        descriptor.connecting = true
        descriptors[child] = descriptor
        if let remote = try? stack.tcpRemoteEndpoint(I.self, accepted) { I.store(remote, into: address, length: length) }
        return child
    }

    func connect(_ fd: Int32, _ address: UnsafeRawPointer?, _ length: socklen_t) throws(Errno) {
        let descriptor = try self.descriptor(fd)
        try connect(descriptor.family, fd, descriptor, address, length)
    }

    private func connect<I: SocketFamily>(_ version: I.Type, _ fd: Int32, _ descriptor: Descriptor,
                                          _ address: UnsafeRawPointer?, _ length: socklen_t) throws(Errno) {
        guard let address else { throw Errno(EFAULT) }
        guard let remote = I.endpoint(address, length: length) else { throw Errno(EINVAL) }
        do {
            if descriptor.transport == .udp { return try stack.udpConnect(I.self, descriptor.id, to: remote) }
            if descriptor.connecting {
                switch stack.tcpConnectStatus(I.self, descriptor.id) {
                case .inProgress: throw Errno(EALREADY)
                case .established: throw Errno(EISCONN)
                case .failed(let error):
                    descriptors[fd]?.errorReported = true
                    throw Errno(error)
                }
            }
            try stack.tcpConnect(I.self, descriptor.id, to: remote)
        } catch {
            throw Errno(error)
        }
        descriptors[fd]?.connecting = true
        collect()
        let outcome = try wait(nonBlocking: descriptor.nonBlocking) { () -> TCPConnectStatus? in
            let status = stack.tcpConnectStatus(I.self, descriptor.id)
            return status == .inProgress ? nil : status
        }
        switch outcome {
        case nil: throw Errno(descriptor.nonBlocking ? EINPROGRESS : ETIMEDOUT)
        case .established?, .inProgress?: return
        case .failed(let error)?:
            descriptors[fd]?.errorReported = true
            throw Errno(error)
        }
    }

    // MARK: Data

    func receive(_ fd: Int32, _ message: UnsafeMutablePointer<msghdr>, flags: Int32) throws(Errno) -> Int {
        let descriptor = try self.descriptor(fd)
        let peek = flags & Int32(MSG_PEEK) != 0
        if peek && descriptor.transport == .udp { throw Errno(EOPNOTSUPP) }
        // No urgent data is kept out of band (RFC 6093: it is read inline).
        if flags & Int32(MSG_OOB) != 0 { throw Errno(EINVAL) }
        let nonBlocking = descriptor.nonBlocking || flags & Int32(MSG_DONTWAIT) != 0
        let pieces = UnsafeMutableBufferPointer(start: message.pointee.msg_iov, count: Int(message.pointee.msg_iovlen))
        message.pointee.msg_flags = 0
        let count = try peek
            ? self.peek(descriptor.family, descriptor, pieces, nonBlocking: nonBlocking)
            : receive(descriptor.family, descriptor, pieces, message, nonBlocking: nonBlocking)
        collect()
        return count
    }

    private func receive<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor,
                                          _ pieces: UnsafeMutableBufferPointer<iovec>,
                                          _ message: UnsafeMutablePointer<msghdr>,
                                          nonBlocking: Bool) throws(Errno) -> Int {
        switch descriptor.transport {
        case .tcp:
            message.pointee.msg_namelen = 0
            let count = try wait(nonBlocking: nonBlocking) { () throws(Errno) -> Int? in
                var total = 0
                for piece in pieces where piece.iov_len > 0 {
                    let buffer = UnsafeMutableRawBufferPointer(start: piece.iov_base, count: piece.iov_len)
                    let got: Int?
                    do {
                        got = try stack.tcpReceive(I.self, descriptor.id, into: buffer)
                    } catch {
                        if total > 0 { return total }
                        throw Errno(error)
                    }
                    guard let got else { return total > 0 ? total : nil }
                    if got == 0 { return total }
                    total += got
                    if got < piece.iov_len { break }
                }
                return total
            }
            guard let count else { throw Errno(EAGAIN) }
            return count
        case .udp:
            let received = try wait(nonBlocking: nonBlocking) { () throws(Errno) -> (Endpoint<I>, Int, Bool)? in
                do {
                    return try stack.udpReceive(I.self, descriptor.id) { metadata, payload in
                        var copied = 0
                        for piece in pieces where copied < payload.byteCount {
                            let length = min(piece.iov_len, payload.byteCount - copied)
                            payload.extracting(copied..<(copied + length)).withUnsafeBytes { bytes in
                                piece.iov_base?.copyMemory(from: bytes.baseAddress!, byteCount: length)
                            }
                            copied += length
                        }
                        return (metadata.source, copied, copied < payload.byteCount)
                    }
                } catch {
                    throw Errno(error)
                }
            }
            guard let (source, count, truncated) = received else { throw Errno(EAGAIN) }
            if message.pointee.msg_name != nil {
                var length = message.pointee.msg_namelen
                I.store(source, into: message.pointee.msg_name, length: &length)
                message.pointee.msg_namelen = length
            }
            if truncated { message.pointee.msg_flags |= Int32(MSG_TRUNC) }
            return count
        }
    }

    /// MSG_PEEK on a stream: a copy of what is readable (its first
    /// contiguous piece in the ring), which stays to be read.
    private func peek<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor,
                                       _ pieces: UnsafeMutableBufferPointer<iovec>,
                                       nonBlocking: Bool) throws(Errno) -> Int {
        let count = try wait(nonBlocking: nonBlocking) { () throws(Errno) -> Int? in
            var copied = 0
            let result: Int?
            do {
                result = try stack.tcpReceive(I.self, descriptor.id) { (bytes: UnsafeRawBufferPointer) -> Int in
                    var offset = 0
                    for piece in pieces where offset < bytes.count {
                        let length = min(piece.iov_len, bytes.count - offset)
                        piece.iov_base?.copyMemory(from: bytes.baseAddress! + offset, byteCount: length)
                        offset += length
                    }
                    copied = offset
                    return 0
                }
            } catch {
                throw Errno(error)
            }
            guard result != nil else { return nil }
            return copied
        }
        guard let count else { throw Errno(EAGAIN) }
        return count
    }

    func send(_ fd: Int32, _ message: UnsafePointer<msghdr>, flags: Int32) throws(Errno) -> Int {
        let descriptor = try self.descriptor(fd)
        let nonBlocking = descriptor.nonBlocking || flags & Int32(MSG_DONTWAIT) != 0
        var bytes: [UInt8] = []
        for piece in UnsafeBufferPointer(start: message.pointee.msg_iov, count: Int(message.pointee.msg_iovlen)) {
            bytes += UnsafeRawBufferPointer(start: piece.iov_base, count: piece.iov_len)
        }
        let count = try send(descriptor.family, descriptor, bytes, to: message.pointee.msg_name,
                             length: message.pointee.msg_namelen, nonBlocking: nonBlocking,
                             urgent: flags & Int32(MSG_OOB) != 0)
        collect()
        return count
    }

    private func send<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor, _ bytes: [UInt8],
                                       to address: UnsafeMutableRawPointer?, length: socklen_t,
                                       nonBlocking: Bool, urgent: Bool) throws(Errno) -> Int {
        switch descriptor.transport {
        case .tcp:
            var sent = 0
            let done = try wait(nonBlocking: nonBlocking) { () throws(Errno) -> Int? in
                do {
                    let accepted = try Array(bytes[sent...]).withSpan { span throws(SocketError) in
                        try stack.tcpSend(I.self, descriptor.id, span, urgent: urgent)
                    }
                    sent += accepted
                } catch {
                    if sent > 0 { return sent }
                    // Linux's send on a connection shut down for writing is EPIPE.
                    throw Errno(error)
                }
                if sent == bytes.count || (nonBlocking && sent > 0) { return sent }
                return nil
            }
            guard let done else { throw Errno(EAGAIN) }
            return done
        case .udp:
            var destination: Endpoint<I>?
            if let address {
                guard let endpoint = I.endpoint(address, length: length) else { throw Errno(EINVAL) }
                destination = endpoint
            }
            do {
                return try bytes.withSpan { span throws(SocketError) in
                    try stack.udpSend(I.self, descriptor.id, to: destination, payload: span)
                }
            } catch {
                // No destination and not connected: Linux says EDESTADDRREQ.
                throw Errno(error == .notConnected ? EDESTADDRREQ : error.errno)
            }
        }
    }

    // MARK: Ending

    func close(_ fd: Int32) throws(Errno) {
        let descriptor = try self.descriptor(fd)
        descriptors.removeValue(forKey: fd)
        close(descriptor.family, descriptor)
        collect()
    }

    private func close<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor) {
        switch descriptor.transport {
        case .tcp:
            // SO_LINGER with a zero time: a reset, not a FIN (as Linux does).
            if descriptor.linger.on && descriptor.linger.seconds == 0 {
                stack.tcpAbort(I.self, descriptor.id)
            } else {
                stack.tcpClose(I.self, descriptor.id)
            }
        case .udp:
            stack.udpClose(I.self, descriptor.id)
        }
    }

    func shutdown(_ fd: Int32, how: Int32) throws(Errno) {
        let descriptor = try self.descriptor(fd)
        guard descriptor.transport == .tcp else { throw Errno(ENOTCONN) }
        let read = how == Int32(SHUT_RD) || how == Int32(SHUT_RDWR)
        let write = how == Int32(SHUT_WR) || how == Int32(SHUT_RDWR)
        guard read || write else { throw Errno(EINVAL) }
        try shutdown(descriptor.family, descriptor, read: read, write: write)
        collect()
    }

    private func shutdown<I: SocketFamily>(_ version: I.Type, _ descriptor: Descriptor, read: Bool,
                                           write: Bool) throws(Errno) {
        do {
            try stack.tcpShutdown(I.self, descriptor.id, read: read, write: write)
        } catch {
            throw Errno(error)
        }
    }
}
