import Glibc

/// Runs shell commands for tests (`ip`, `tcpdump`, ...), capturing output.
public enum TestShell {
    public struct Failure: Error, CustomStringConvertible {
        public let command: String
        public let status: Int32
        public let output: String
        public var description: String { "`\(command)` exited with \(status): \(output)" }
        public init(command: String, status: Int32, output: String) {
            self.command = command
            self.status = status
            self.output = output
        }
    }

    /// Runs `command` with `/bin/sh -c` and returns its standard output and
    /// error; throws when it exits with a status other than 0.
    @discardableResult
    public static func run(_ command: String) throws -> String {
        let (status, output) = execute(command)
        guard status == 0 else { throw Failure(command: command, status: status, output: output) }
        return output
    }

    /// Runs `command` and returns its exit status and output, whatever they are.
    public static func execute(_ command: String) -> (status: Int32, output: String) {
        guard let pipe = popen("\(command) 2>&1", "r") else { return (-1, "popen failed") }
        var output = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, pipe)
            if n <= 0 { break }
            output += buffer[..<n]
        }
        let raw = pclose(pipe)
        let status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        return (status, String(decoding: output, as: UTF8.self))
    }
}
