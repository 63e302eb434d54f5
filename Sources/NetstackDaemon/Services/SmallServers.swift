import Glibc

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
}
