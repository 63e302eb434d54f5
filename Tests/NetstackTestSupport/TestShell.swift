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
        var ends: [Int32] = [0, 0]
        // Close-on-exec from the start (Glibc's module has no pipe2), or a
        // child another test spawns meanwhile would keep the writer open.
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            return (-1, "socketpair failed")
        }
        let spawned = spawnShell(command, output: ends[1])
        close(ends[1])
        defer { close(ends[0]) }
        guard case .success(let pid) = spawned else { return (-1, "posix_spawn failed") }
        var output = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(ends[0], &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output += buffer[..<n]
        }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        let status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        return (status, String(decoding: output, as: UTF8.self))
    }

    /// Starts `/bin/sh -c COMMAND` with standard output and error on
    /// `output`. The child starts with no signal blocked and every handler
    /// at its default: test threads (libdispatch's) block signals, and a
    /// child inheriting that mask ignores SIGTERM, so `timeout` and a
    /// test's stop could not end it. With `ownGroup` it leads a process
    /// group of its own (its pid), which `kill(-pid, ...)` ends whole.
    public static func spawnShell(_ command: String, output: Int32, ownGroup: Bool = false,
                                  program: String = "/bin/sh", arguments: [String]? = nil) -> Result<pid_t, SpawnError> {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if ownGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, output, 2)
        let words = arguments ?? [program, "-c", command]
        var argv = words.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, program, &actions, &attributes, &argv, environ)
        return result == 0 ? .success(pid) : .failure(SpawnError(code: result))
    }

    public struct SpawnError: Error {
        public let code: Int32
    }
}
