import Glibc

/// A stream descriptor read and written by a task without blocking a
/// thread: on EAGAIN it waits for the engine's epoll to say it may go on
/// (`SocketRuntime.watch` must have been called for it).
public struct AsyncDescriptor: Sendable {
    public let descriptor: Int32
    let runtime: SocketRuntime

    public init(_ descriptor: Int32, runtime: SocketRuntime) {
        self.descriptor = descriptor
        self.runtime = runtime
    }

    /// Up to `maximum` bytes; empty at the end of the stream or on an error.
    public func read(maximum: Int) async -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maximum)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { return Array(buffer[0..<n]) }
            if n == 0 { return [] }
            switch errno {
            case EINTR: continue
            case EAGAIN: if !(await runtime.waitReadable(descriptor)) { return [] }
            default: return []
            }
        }
    }

    /// Writes all of `bytes`; false once the peer is gone.
    public func write(_ bytes: [UInt8]) async -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes {
                send(descriptor, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n > 0 {
                offset += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN {
                if !(await runtime.waitWritable(descriptor)) { return false }
                continue
            }
            return false
        }
        return true
    }
}
