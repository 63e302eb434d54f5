/// Frames to bytes and back. Decoding never traps: anything that does not
/// parse is a `ControlError` (`malformed`, `unknownType`, `tooLarge`).
public enum ControlCodec {
    /// The whole frame for `message`, length prefix included.
    public static func encode(_ message: ControlMessage) -> [UInt8] {
        var body = Writer()
        body.u8(message.type)
        switch message {
        case .hello(let version), .welcome(let version): body.u16(version)
        case .query(let kind): body.u8(kind.rawValue)
        case .capture(let filter, let format):
            body.u8(format.rawValue)
            body.text(filter)
        case .openSocket(let family, let kind):
            body.u8(family.rawValue)
            body.u8(kind.rawValue)
        case .join(let token): body.u64(token)
        case .bind(let endpoint), .connect(let endpoint): body.endpoint(endpoint)
        case .listen(let backlog): body.u32(backlog)
        case .accept, .clone, .close, .getEndpoints, .stream, .acceptStream: break
        case .send(let bytes, let to):
            body.optionalEndpoint(to)
            body.data(bytes)
        case .receive(let maximum): body.u32(maximum)
        case .shutdown(let read, let write): body.u8((read ? 1 : 0) | (write ? 2 : 0))
        case .setOption(let option, let value):
            body.u8(option.rawValue)
            body.u64(value)
        case .streamOption(let key, let option, let value):
            body.u64(key)
            body.u8(option.rawValue)
            body.u64(value)
        case .queryResult(let json): body.data(json)
        case .done(let value): body.u64(value)
        case .endpoints(let local, let remote):
            body.optionalEndpoint(local)
            body.optionalEndpoint(remote)
        case .data(let bytes, let from):
            body.optionalEndpoint(from)
            body.data(bytes)
        case .token(let token, let peer):
            body.u64(token)
            body.optionalEndpoint(peer)
        case .acceptedStream(let key, let local, let remote):
            body.u64(key)
            body.optionalEndpoint(local)
            body.optionalEndpoint(remote)
        case .failure(let error):
            body.u16(error.code.rawValue)
            body.u32(UInt32(bitPattern: error.errno))
            body.text(error.message)
        }
        var frame = Writer()
        frame.u32(UInt32(body.bytes.count))
        frame.bytes += body.bytes
        return frame.bytes
    }

    /// The body length a 4-byte prefix announces, if acceptable.
    public static func frameLength(_ prefix: some Collection<UInt8>) throws(ControlError) -> Int {
        let length = prefix.reduce(0) { $0 << 8 | Int($1) }
        guard length >= 1 else { throw ControlError(.malformed, "empty frame") }
        guard length <= ControlProtocol.maximumFrame else {
            throw ControlError(.tooLarge, "frame of \(length) bytes is over the \(ControlProtocol.maximumFrame)-byte limit")
        }
        return length
    }

    /// Decodes a frame's body (type and fields, without the length prefix).
    public static func decode(_ frame: [UInt8]) throws(ControlError) -> ControlMessage {
        var reader = Reader(frame)
        let type = try reader.u8()
        let message: ControlMessage
        switch type {
        case 0x01: message = .hello(version: try reader.u16())
        case 0x02:
            let raw = try reader.u8()
            guard let kind = QueryKind(rawValue: raw) else { throw ControlError(.malformed, "unknown query \(raw)") }
            message = .query(kind)
        case 0x03:
            let family = try reader.family()
            let raw = try reader.u8()
            guard let kind = SocketKind(rawValue: raw) else { throw ControlError(.malformed, "unknown socket kind \(raw)") }
            message = .openSocket(family, kind)
        case 0x04: message = .join(token: try reader.u64())
        case 0x10: message = .bind(try reader.endpoint())
        case 0x11: message = .listen(backlog: try reader.u32())
        case 0x12: message = .accept
        case 0x13: message = .connect(try reader.endpoint())
        case 0x14:
            let to = try reader.optionalEndpoint()
            message = .send(try reader.data(), to: to)
        case 0x15: message = .receive(maximum: try reader.u32())
        case 0x16:
            let how = try reader.u8()
            guard how & ~3 == 0 else { throw ControlError(.malformed, "shutdown flags \(how)") }
            message = .shutdown(read: how & 1 != 0, write: how & 2 != 0)
        case 0x17: message = .clone
        case 0x18: message = .close
        case 0x19: message = .getEndpoints
        case 0x1A:
            message = .setOption(try reader.option(), try reader.u64())
        case 0x1B: message = .stream
        case 0x1C: message = .acceptStream
        case 0x1D:
            let raw = try reader.u8()
            guard let format = CaptureFileFormat(rawValue: raw) else {
                throw ControlError(.malformed, "unknown capture format \(raw)")
            }
            message = .capture(filter: try reader.text(), format: format)
        case 0x1E:
            let key = try reader.u64()
            message = .streamOption(key: key, try reader.option(), try reader.u64())
        case 0x80: message = .done(try reader.u64())
        case 0x81: message = .welcome(version: try reader.u16())
        case 0x82: message = .queryResult(try reader.data())
        case 0x90: message = .endpoints(local: try reader.optionalEndpoint(), remote: try reader.optionalEndpoint())
        case 0x91:
            let from = try reader.optionalEndpoint()
            message = .data(try reader.data(), from: from)
        case 0x93: message = .token(try reader.u64(), peer: try reader.optionalEndpoint())
        case 0x94:
            let key = try reader.u64()
            message = .acceptedStream(key: key, local: try reader.optionalEndpoint(), remote: try reader.optionalEndpoint())
        case 0xFF:
            let raw = try reader.u16()
            let errno = Int32(bitPattern: try reader.u32())
            let text = try reader.text()
            message = .failure(ControlError(ControlError.Code(rawValue: raw) ?? .internalError, errno: errno, text))
        default:
            throw ControlError(.unknownType, "unknown message type 0x\(String(type, radix: 16))")
        }
        guard reader.atEnd else { throw ControlError(.malformed, "\(frame.count - reader.offset) bytes after the message") }
        return message
    }

    struct Writer {
        var bytes: [UInt8] = []
        mutating func u8(_ value: UInt8) { bytes.append(value) }
        mutating func u16(_ value: UInt16) { bytes += [UInt8(value >> 8), UInt8(value & 0xFF)] }
        mutating func u32(_ value: UInt32) { for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) } }
        mutating func u64(_ value: UInt64) { for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) } }
        mutating func data(_ data: [UInt8]) {
            u32(UInt32(data.count))
            bytes += data
        }
        mutating func text(_ text: String) {
            let utf8 = Array(text.utf8.prefix(Int(UInt16.max)))
            u16(UInt16(utf8.count))
            bytes += utf8
        }
        mutating func endpoint(_ endpoint: ControlEndpoint) {
            u8(endpoint.family.rawValue)
            bytes += endpoint.address
            u16(endpoint.port)
        }
        mutating func optionalEndpoint(_ endpoint: ControlEndpoint?) {
            if let endpoint { self.endpoint(endpoint) } else { u8(0) }
        }
    }

    struct Reader {
        let bytes: [UInt8]
        var offset = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        var atEnd: Bool { offset == bytes.count }

        mutating func take(_ count: Int) throws(ControlError) -> ArraySlice<UInt8> {
            guard count >= 0, bytes.count - offset >= count else {
                throw ControlError(.malformed, "truncated: \(count) bytes wanted at offset \(offset) of \(bytes.count)")
            }
            defer { offset += count }
            return bytes[offset..<offset + count]
        }
        mutating func integer(_ size: Int) throws(ControlError) -> UInt64 {
            try take(size).reduce(0) { $0 << 8 | UInt64($1) }
        }
        mutating func u8() throws(ControlError) -> UInt8 { UInt8(try integer(1)) }
        mutating func u16() throws(ControlError) -> UInt16 { UInt16(try integer(2)) }
        mutating func u32() throws(ControlError) -> UInt32 { UInt32(try integer(4)) }
        mutating func u64() throws(ControlError) -> UInt64 { try integer(8) }
        mutating func data() throws(ControlError) -> [UInt8] {
            let count = Int(try u32())
            guard count <= ControlProtocol.maximumData else { throw ControlError(.malformed, "data of \(count) bytes") }
            return Array(try take(count))
        }
        mutating func text() throws(ControlError) -> String {
            String(decoding: try take(Int(try u16())), as: UTF8.self)
        }
        mutating func family() throws(ControlError) -> IPFamily {
            let raw = try u8()
            guard let family = IPFamily(rawValue: raw) else { throw ControlError(.malformed, "address family \(raw)") }
            return family
        }
        mutating func option() throws(ControlError) -> SocketOption {
            let raw = try u8()
            guard let option = SocketOption(rawValue: raw) else { throw ControlError(.malformed, "unknown option \(raw)") }
            return option
        }
        mutating func endpoint() throws(ControlError) -> ControlEndpoint {
            let family = try family()
            let address = Array(try take(family == .ipv4 ? 4 : 16))
            return ControlEndpoint(family: family, address: address, port: try u16())
        }
        mutating func optionalEndpoint() throws(ControlError) -> ControlEndpoint? {
            guard offset < bytes.count else { throw ControlError(.malformed, "truncated endpoint") }
            if bytes[offset] == 0 {
                offset += 1
                return nil
            }
            return try endpoint()
        }
    }
}
