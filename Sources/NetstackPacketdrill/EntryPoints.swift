import Glibc
import NetstackCore

// What the C table (Sources/CNetstackPacketdrill/shim.c) calls: each takes
// the backend's lock, and a failure sets errno and returns -1.

/// Runs `body` under the lock; a thrown errno becomes -1 with errno set.
private func call<R: BinaryInteger>(_ body: (Backend) throws(Errno) -> R) -> R {
    do {
        return try Backend.shared.withLock { backend throws(Errno) in
            defer { backend.publishSockets() }
            return try body(backend)
        }
    } catch {
        errno = error.code
        return -1
    }
}

/// `call` for the calls that return 0 on success.
private func succeed(_ body: (Backend) throws(Errno) -> Void) -> Int32 {
    call { backend throws(Errno) in
        try body(backend)
        return 0
    }
}

@_cdecl("nspd_init")
func nspdInit(_ flags: UnsafePointer<CChar>?) {
    Backend.shared.start()
}

@_cdecl("nspd_free")
func nspdFree() {}

@_cdecl("nspd_socket")
func nspdSocket(_ domain: Int32, _ type: Int32, _ number: Int32) -> Int32 {
    call { backend throws(Errno) in try backend.socket(domain: domain, type: type, protocol: number) }
}

@_cdecl("nspd_bind")
func nspdBind(_ fd: Int32, _ address: UnsafeRawPointer?, _ length: socklen_t) -> Int32 {
    succeed { backend throws(Errno) in try backend.bind(fd, address, length) }
}

@_cdecl("nspd_listen")
func nspdListen(_ fd: Int32, _ backlog: Int32) -> Int32 {
    succeed { backend throws(Errno) in try backend.listen(fd, backlog: backlog) }
}

@_cdecl("nspd_accept")
func nspdAccept(_ fd: Int32, _ address: UnsafeMutableRawPointer?, _ length: UnsafeMutablePointer<socklen_t>?) -> Int32 {
    call { backend throws(Errno) in try backend.accept(fd, address, length) }
}

@_cdecl("nspd_connect")
func nspdConnect(_ fd: Int32, _ address: UnsafeRawPointer?, _ length: socklen_t) -> Int32 {
    succeed { backend throws(Errno) in try backend.connect(fd, address, length) }
}

@_cdecl("nspd_recvmsg")
func nspdReceiveMessage(_ fd: Int32, _ message: UnsafeMutablePointer<msghdr>?, _ flags: Int32) -> Int {
    call { backend throws(Errno) in
        guard let message else { throw Errno(EFAULT) }
        return try backend.receive(fd, message, flags: flags)
    }
}

@_cdecl("nspd_sendmsg")
func nspdSendMessage(_ fd: Int32, _ message: UnsafePointer<msghdr>?, _ flags: Int32) -> Int {
    call { backend throws(Errno) in
        guard let message else { throw Errno(EFAULT) }
        return try backend.send(fd, message, flags: flags)
    }
}

@_cdecl("nspd_fcntl")
func nspdControl(_ fd: Int32, _ command: Int32, _ argument: Int) -> Int32 {
    call { backend throws(Errno) in try backend.control(fd, command: command, argument: argument) }
}

@_cdecl("nspd_ioctl")
func nspdIOControl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer?) -> Int32 {
    call { backend throws(Errno) in try backend.ioControl(fd, request: request, argument: argument) }
}

@_cdecl("nspd_close")
func nspdClose(_ fd: Int32) -> Int32 {
    succeed { backend throws(Errno) in try backend.close(fd) }
}

@_cdecl("nspd_shutdown")
func nspdShutdown(_ fd: Int32, _ how: Int32) -> Int32 {
    succeed { backend throws(Errno) in try backend.shutdown(fd, how: how) }
}

@_cdecl("nspd_getsockopt")
func nspdGetOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: UnsafeMutableRawPointer?,
                   _ length: UnsafeMutablePointer<socklen_t>?) -> Int32 {
    succeed { backend throws(Errno) in try backend.getOption(fd, level: level, name: name, value, length) }
}

@_cdecl("nspd_setsockopt")
func nspdSetOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: UnsafeRawPointer?, _ length: socklen_t) -> Int32 {
    succeed { backend throws(Errno) in try backend.setOption(fd, level: level, name: name, value, length) }
}

@_cdecl("nspd_poll")
func nspdPoll(_ fds: UnsafeMutablePointer<pollfd>?, _ count: nfds_t, _ timeout: Int32) -> Int32 {
    call { backend throws(Errno) in
        try backend.poll(UnsafeMutableBufferPointer(start: fds, count: Int(count)), timeout: timeout)
    }
}

@_cdecl("nspd_netdev_send")
func nspdNetdevSend(_ buffer: UnsafeRawPointer?, _ count: Int) -> Int32 {
    succeed { backend throws(Errno) in try backend.receive(UnsafeRawBufferPointer(start: buffer, count: count)) }
}

@_cdecl("nspd_netdev_receive")
func nspdNetdevReceive(_ buffer: UnsafeMutableRawPointer?, _ count: UnsafeMutablePointer<Int>?,
                       _ time: UnsafeMutablePointer<Int64>?) -> Int32 {
    call { backend throws(Errno) in
        guard let buffer, let count else { throw Errno(EFAULT) }
        let packet = backend.nextPacket()
        let length = min(packet.bytes.count, count.pointee)
        packet.bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: length) }
        count.pointee = length
        time?.pointee = Int64(Backend.epochSeconds) * 1_000_000 + packet.time.nanoseconds / 1000
        return 0
    }
}

@_cdecl("nspd_usleep")
func nspdSleep(_ microseconds: UInt64) -> Int32 {
    call { backend in
        backend.advance(to: backend.now + .microseconds(Int64(microseconds)))
        return 0
    }
}

@_cdecl("nspd_gettimeofday")
func nspdTimeOfDay(_ time: UnsafeMutablePointer<timeval>?) -> Int32 {
    call { backend throws(Errno) in
        guard let time else { throw Errno(EFAULT) }
        // packetdrill sleeps to just before an event and then spins on the
        // clock: on the main thread each reading lets a microsecond pass.
        backend.tick()
        let microseconds = backend.now.nanoseconds / 1000
        time.pointee = timeval(tv_sec: Backend.epochSeconds + Int(microseconds / 1_000_000),
                               tv_usec: Int(microseconds % 1_000_000))
        return 0
    }
}
