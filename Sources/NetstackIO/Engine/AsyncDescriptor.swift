import CTap
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

    /// Writes all of `bytes` with `descriptor` attached to the first of
    /// them (SCM_RIGHTS; a Unix socket only); false once the peer is gone.
    /// The caller still owns `descriptor` and closes its copy.
    public func write(_ bytes: [UInt8], passing descriptor: Int32) async -> Bool {
        precondition(!bytes.isEmpty, "a descriptor travels with a byte")
        while true {
            let n = bytes.withUnsafeBytes { ctap_send_with_descriptor(self.descriptor, $0.baseAddress, UInt($0.count), descriptor) }
            if n > 0 { return await write(bytes, from: n) }
            if n == -Int(EINTR) { continue }
            if n == -Int(EAGAIN) {
                if !(await runtime.waitWritable(self.descriptor)) { return false }
                continue
            }
            return false
        }
    }

    /// Writes all of `bytes`; false once the peer is gone.
    public func write(_ bytes: [UInt8]) async -> Bool {
        await write(bytes, from: 0)
    }

    private func write(_ bytes: [UInt8], from start: Int) async -> Bool {
        var offset = start
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
